"""The qstat attribute object (`qstat -f -F json` shape) for one normalised job.

Whatever the backend, GET /api/scheduler/job answers with these keys (docs/reference/pbs-facts.md).
"""
from __future__ import annotations

from datetime import datetime

PBS_TIME = "%a %b %e %H:%M:%S %Y"  # "Tue Oct  4 21:23:20 2022": local time, day space-padded


def pbs_time(moment: datetime | None, memo: dict | None = None) -> str | None:
    """Aware times are shown in this host's local time, as qstat does; naive ones as given.

    `memo` (one per answer) keeps each conversion: a job's ctime, qtime and etime are
    usually one moment, and a listing's jobs share many."""
    if moment is None:
        return None
    if memo is not None:
        shown = memo.get(moment)
        if shown is None:
            shown = memo[moment] = pbs_time(moment)
        return shown
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime(PBS_TIME)


def qstat_attributes(info, memo: dict | None = None) -> dict[str, object]:
    """`memo`: shared by the jobs of one listing (see pbs_time); never across answers,
    so a change of the host's time zone shows at once."""
    host = info.submit_host or info.server
    memo = {} if memo is None else memo
    attributes: dict[str, object] = {
        "Job_Name": info.name,
        "Job_Owner": f"{info.owner}@{host}",
        "job_state": info.state,
        "queue": info.queue,
        "server": info.server,
        "Checkpoint": "u",
        "ctime": pbs_time(info.created, memo),
        "Error_Path": f"{host}:{info.error_path}" if info.error_path else None,
        "Hold_Types": info.hold_types,
        "Join_Path": info.join,
        "Keep_Files": info.keep_files,
        "Mail_Points": info.mail_points,
        "mtime": pbs_time(info.modified or info.created, memo),
        "Output_Path": f"{host}:{info.output_path}" if info.output_path else None,
        "Priority": info.priority,
        "qtime": pbs_time(info.queued or info.created, memo),
        "Rerunable": "True" if info.rerunable else "False",
        "Resource_List": dict(info.resource_list),
        "substate": info.substate,
        "Variable_List": dict(info.variables),
        "etime": pbs_time(info.eligible, memo),
        "project": info.project,
        "Submit_Host": host,
    }
    optional = {
        "comment": info.comment,
        "Mail_Users": info.mail_users,
        "Account_Name": info.account,
        "depend": info.depend,
        "array_indices_submitted": info.array_indices,
        "exec_host": info.exec_host,
        "stime": pbs_time(info.started, memo),
        "resources_used": dict(info.resources_used) if info.resources_used else None,
        "Exit_status": info.exit_status,
        "obittime": pbs_time(info.finished, memo) if info.is_finished else None,
        "jobdir": info.workdir,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    if info.array_indices:
        attributes["array"] = "True"
    return {key: value for key, value in attributes.items() if value is not None}
