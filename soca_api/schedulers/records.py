"""A job row of the service's own record, as the normalised job value.

The local scheduler's rows are its queue; for PBS and Slurm the same rows keep what the
service knows once the scheduler has forgotten a job (final state, paths, times).
"""
from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime
from typing import Any, Protocol

from soca_api.models import utcnow
from soca_api.schedulers.values import JobInfo

_HOST = socket.gethostname()


def _aware(moment: datetime | None) -> datetime | None:
    """Rows keep naive UTC; JobInfo carries aware times so views can show local time."""
    return moment.replace(tzinfo=UTC) if moment is not None else None


class JobColumns(Protocol):
    """The columns of a job row that `record_info` reads: a `Job`, or a plain row of just
    these columns (listings select only those, without an ORM instance per job)."""

    @property
    def scheduler_id(self) -> str | None: ...
    @property
    def owner(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def substate(self) -> int | None: ...
    @property
    def request(self) -> dict[str, Any]: ...
    @property
    def job_dir(self) -> str | None: ...
    @property
    def output_path(self) -> str | None: ...
    @property
    def error_path(self) -> str | None: ...
    @property
    def ncpus(self) -> int: ...
    @property
    def nodes(self) -> int: ...
    @property
    def rerunable(self) -> bool: ...
    @property
    def hold(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def modified_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def exit_status(self) -> int | None: ...
    @property
    def exec_host(self) -> str | None: ...
    @property
    def comment(self) -> str | None: ...
    @property
    def scheduler_record(self) -> dict[str, Any] | None: ...


_TIME_FIELDS = ("created", "queued", "modified", "eligible", "started", "finished")
_STORED_FIELDS = tuple(f.name for f in dataclasses.fields(JobInfo) if f.name != "native")


def info_to_record(info: JobInfo) -> dict[str, object]:
    """A JobInfo as JSON for `Job.scheduler_record` (without the raw scheduler record)."""
    stored: dict[str, object] = {}
    for name in _STORED_FIELDS:
        value = getattr(info, name)
        stored[name] = value.isoformat() if isinstance(value, datetime) else value
    return stored


def info_from_record(stored: dict) -> JobInfo:
    """`info_to_record`'s inverse; unknown keys (an older or newer layout) are ignored."""
    values = {name: stored[name] for name in _STORED_FIELDS if name in stored}
    for name in _TIME_FIELDS:
        if isinstance(values.get(name), str):
            try:
                values[name] = datetime.fromisoformat(values[name])
            except ValueError:
                values[name] = None
    for name in ("resource_list", "resources_used", "variables"):
        values[name] = dict(values.get(name) or {})
    return JobInfo(**values)


def record_info(job: JobColumns) -> JobInfo:
    """The normalised value of one job row: what the scheduler last reported when the
    reconciler has seen the job, else the service's own record. `job` may also be a plain
    row of the columns read here (listings select only those)."""
    if job.scheduler_record:
        info = info_from_record(job.scheduler_record)
        info.owner = job.owner  # whose job it is, even when it ran under a fallback account
        if job.state == "F" and not info.is_finished:
            # The scheduler forgot the job (or it was deleted): the service's own end.
            info.state, info.substate = "F", job.substate or 92
            info.finished = info.finished or _aware(job.finished_at)
            info.exit_status = job.exit_status if job.exit_status is not None else info.exit_status
            info.comment = job.comment or info.comment
        return info
    if job.scheduler_id is None:  # callers read rows by their scheduler id
        raise ValueError("record_info needs a submitted job: this row has no scheduler id yet")
    request = job.request or {}
    host = _HOST
    variables = {
        "PBS_O_HOME": request.get("home") or "",
        "PBS_O_LOGNAME": job.owner,
        "PBS_O_WORKDIR": job.job_dir or "",
        "PBS_O_HOST": host,
        "PBS_O_QUEUE": job.queue,
        "PBS_O_SYSTEM": "Linux",
    }
    variables.update(request.get("variables", {}))
    created = _aware(job.created_at)
    return JobInfo(
        id=job.scheduler_id,
        name=job.name,
        owner=job.owner,
        state=job.state,
        queue=job.queue,
        submit_host=host,
        server=host,
        substate=job.substate,
        created=created,
        queued=created,
        modified=_aware(job.modified_at),
        eligible=created,
        started=_aware(job.started_at),
        finished=_aware(job.finished_at),
        exit_status=job.exit_status,
        output_path=job.output_path,
        error_path=job.error_path,
        join=request.get("join", "n"),
        hold_types="u" if job.hold else "n",
        keep_files=request.get("keep_files", "n"),
        mail_points=request.get("mail_points", "a"),
        mail_users=request.get("mail_users"),
        priority=int(request.get("priority", 0)),
        rerunable=job.rerunable,
        resource_list=dict(request.get("resource_list", {})),
        resources_used=_resources_used(job),
        variables=variables,
        project=request.get("project") or "_pbs_project_default",
        account=request.get("account"),
        comment=job.comment,
        exec_host=job.exec_host,
        ncpus=job.ncpus,
        nodes=job.nodes,
        array_indices=request.get("array"),
        depend=request.get("depend"),
        workdir=job.job_dir,
    )

def _resources_used(job: JobColumns) -> dict[str, object]:
    if job.started_at is None:
        return {}
    end = job.finished_at or utcnow()
    seconds = max(0, int((end - job.started_at).total_seconds()))
    return {"walltime": f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}",
            "ncpus": job.ncpus}
