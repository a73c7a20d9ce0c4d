"""What Slurm prints, read back in PBS terms: `scontrol show job` (text) and
`squeue --json` (22.05, openapi v0.0.38) -> JobInfo, Slurm states -> PBS letters and
Exit_status. Pure functions: no subprocess, no I/O (captured outputs in
tests/fixtures/slurm/).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from soca_api.schedulers.errors import SchedulerError
from soca_api.schedulers.slurm.arrays import array_task_ids, indices_text
from soca_api.schedulers.slurm.ids import pbs_job_id
from soca_api.schedulers.slurm.translate import MAIL_TYPES
from soca_api.schedulers.values import (
    EXIT_ABORTED_ON_RESTART,
    EXIT_KILLED_BY_SIGNAL_BASE,
    EXIT_WALLTIME,
    SUBSTATE_DELETED,
    SUBSTATES,
    JobInfo,
)

DEFAULT_PROJECT = "_pbs_project_default"  # what PBS shows when no -P was given
EXIT_EXEC_FAILED = -1  # PBS JOB_EXEC_FAIL1: the job could not be started
SIGKILL, SIGTERM = 9, 15


# Keys that scontrol prints alone on their line and whose values may hold spaces.
_WHOLE_LINE_KEYS = ("Command", "WorkDir", "StdErr", "StdIn", "StdOut", "Comment",
                    "AdminComment", "SystemComment", "Power", "Reservation")
_TOKEN_SPLIT = re.compile(r"\s+(?=[A-Za-z][A-Za-z0-9_:/]*=)")


def parse_scontrol_job(text: str) -> dict[str, str]:
    """The `Key=Value` fields of one `scontrol show job` record."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, rest = line.partition("=")
        if sep and key in _WHOLE_LINE_KEYS:
            fields[key] = rest.rstrip()
            continue
        for token in _TOKEN_SPLIT.split(line):
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value.rstrip()
    return fields


def parse_scontrol_jobs(text: str) -> list[dict[str, str]]:
    """Every record of `scontrol show job` (an array job id shows all its tasks)."""
    records: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("JobId="):
            records.append([])
        if records:
            records[-1].append(line)
    return [parse_scontrol_job("\n".join(lines)) for lines in records]


def _null(value: str | None) -> str | None:
    return None if value in (None, "", "(null)", "None", "N/A", "Unknown") else value


def _scontrol_time(value: str | None) -> datetime | None:
    value = _null(value)
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def _duration_seconds(value: str | None) -> int | None:
    """Slurm durations: [D-][[H:]M:]S, or UNLIMITED / Partition_Limit / N/A."""
    value = _null(value)
    if value is None or not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", value):
        return None
    days = 0
    if "-" in value:
        day_text, value = value.split("-", 1)
        days = int(day_text)
    seconds = 0
    for part in value.split(":"):
        seconds = seconds * 60 + int(part)
    if value.count(":") == 0 and days:  # "D-H"
        seconds *= 3600
    return days * 86400 + seconds


def format_hms(seconds: int) -> str:
    """PBS durations: HH:MM:SS with unbounded hours."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _leading_int(value: str | None, default: int = 0) -> int:
    match = re.match(r"\d+", value or "")
    return int(match.group()) if match else default


def _memory_mb(value: str | None) -> int | None:
    """"100M", "2G", "0" -> megabytes (None when unset)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", _null(value) or "")
    if not match or match.group(1) == "0":
        return None
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[match.group(2)]
    return math.ceil(int(match.group(1)) * scale)


def _user_name(value: str | None) -> str:
    """"socatest(1001)" -> "socatest"."""
    return (value or "").split("(", 1)[0]


@dataclass(frozen=True)
class PbsState:
    """A PBS job_state letter with its Hold_Types, and whether the job is over."""

    letter: str
    hold_types: str = "n"
    finished: bool = False


_PENDING_HOLDS = {"JobHeldUser": "u", "JobHeldAdmin": "o", "Dependency": "s"}
_FINISHED_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
})
_ACTIVE_LETTERS = {
    "RUNNING": "R", "CONFIGURING": "R", "RESIZING": "R", "SIGNALING": "R",
    "COMPLETING": "E", "STAGE_OUT": "E",
    "SUSPENDED": "S", "STOPPED": "S",
    "REQUEUED": "Q", "REQUEUE_FED": "Q",
    "REQUEUE_HOLD": "H", "RESV_DEL_HOLD": "H",
}


def _base_state(slurm_state: str) -> str:
    """"CANCELLED by 0" / "COMPLETING+..." -> the state word."""
    words = (slurm_state or "").split()
    return words[0].split("+")[0].upper() if words else ""


def pbs_state(slurm_state: str, reason: str | None = None,
              eligible: datetime | None = None, now: datetime | None = None) -> PbsState:
    """Slurm JobState (+ Reason) -> PBS letter and Hold_Types. A pending job whose
    eligible time is still ahead waits for its start time (W) even when Slurm's reason
    was reset (a released --begin job says Reason=None until the next evaluation)."""
    state = _base_state(slurm_state)
    if state == "PENDING":
        if reason in _PENDING_HOLDS:
            return PbsState("H", _PENDING_HOLDS[reason])
        if reason == "BeginTime" or (eligible is not None and eligible > (now or datetime.now())):
            return PbsState("W")
        return PbsState("Q")
    if state in _FINISHED_STATES:
        return PbsState("F", finished=True)
    if state in _ACTIVE_LETTERS:
        letter = _ACTIVE_LETTERS[state]
        return PbsState(letter, "o" if letter == "H" else "n")
    return PbsState("Q")  # unknown future states: still in the queue as far as we know


def pbs_exit_status(slurm_state: str, exit_code: int, signal: int) -> int:
    """A finished job's PBS Exit_status from its Slurm state and ExitCode=<code>:<signal>."""
    state = _base_state(slurm_state)
    if state in ("CANCELLED", "PREEMPTED"):
        return EXIT_KILLED_BY_SIGNAL_BASE + SIGTERM  # 271, as PBS reports a qdel'd job
    if state in ("TIMEOUT", "DEADLINE"):
        return EXIT_WALLTIME
    if state == "OUT_OF_MEMORY":
        return EXIT_KILLED_BY_SIGNAL_BASE + SIGKILL  # the OOM killer's SIGKILL
    if state == "NODE_FAIL":
        return EXIT_ABORTED_ON_RESTART
    if state == "BOOT_FAIL":
        return EXIT_EXEC_FAILED
    if signal:
        return EXIT_KILLED_BY_SIGNAL_BASE + signal
    if state == "FAILED" and exit_code == 0:
        return EXIT_EXEC_FAILED  # e.g. the output file could not be opened
    return exit_code


def _pbs_dependency(value: str | None) -> str | None:
    """"afterok:63(unfulfilled),afterany:13_*" -> "afterok:63,afterany:13[]"."""
    value = _null(value)
    if value is None:
        return None
    value = re.sub(r"\([^)]*\)", "", value)
    value = re.sub(r"(\d+)_\*", r"\1[]", value)
    return re.sub(r"(\d+)_(\d+)", r"\1[\2]", value)


def _mail_points(mail_type: str | None) -> str:
    mail_type = _null(mail_type)
    if mail_type is None:
        return "a"
    names = set(mail_type.split(","))
    if "NONE" in names:
        return "n"
    letters = [p for p, name in MAIL_TYPES.items() if name in names or "ALL" in names]
    return "".join(sorted(letters, key="beaj".index)) or "a"


# A job without --time in a MaxTime=INFINITE partition shows 365 days once the backfill
# scheduler started it (UNLIMITED / null when the main scheduler did): both mean no limit.
_NO_LIMIT_SECONDS = 365 * 86400


def _resource_list(ncpus: int, nodes: int, tasks: int, cpus_per_task: int,
                   walltime: int | None, mem_mb: int | None, features: str | None) -> dict[str, object]:
    if walltime == _NO_LIMIT_SECONDS:
        walltime = None
    resources: dict[str, object] = {
        "ncpus": ncpus,
        "nodect": nodes,
        "select": f"{tasks}:ncpus={cpus_per_task}",
    }
    if walltime is not None:
        resources["walltime"] = format_hms(walltime)
    if mem_mb is not None:
        resources["mem"] = f"{mem_mb}mb"
    if features:
        resources["instance_type"] = features.replace("|", "+")
    return dict(sorted(resources.items()))


def _finish(info: JobInfo, slurm_state: str, state: PbsState, exit_code: int, signal: int,
            started: datetime | None, ended: datetime | None) -> JobInfo:
    """Fill what depends on the state: times, exit status, substate."""
    info.substate = SUBSTATES.get(state.letter)
    if state.letter not in ("Q", "H", "W"):
        info.started = started  # for pending jobs Slurm's StartTime is only an estimate
    if state.finished:
        info.finished = ended
        info.exit_status = pbs_exit_status(slurm_state, exit_code, signal)
        if _base_state(slurm_state) == "CANCELLED":
            info.substate = SUBSTATE_DELETED
    return info


def job_info_from_scontrol(fields: Mapping[str, str]) -> JobInfo:
    """One `scontrol show job` record -> JobInfo. A pending array record (ArrayTaskId a
    range) becomes "<array>[]" with array_indices set."""
    task = fields.get("ArrayTaskId")
    job_id = pbs_job_id(fields.get("JobId", ""), fields.get("ArrayJobId"), task)
    slurm_state = fields.get("JobState", "")
    reason = _null(fields.get("Reason"))
    eligible = _scontrol_time(fields.get("EligibleTime"))
    state = pbs_state(slurm_state, reason, eligible)
    code_text, _, signal_text = (fields.get("ExitCode") or "0:0").partition(":")
    ncpus = _leading_int(fields.get("NumCPUs"), 1)
    nodes = _leading_int(fields.get("NumNodes"), 1)
    tasks = _leading_int(fields.get("NumTasks"), 1)
    cpus_per_task = _leading_int(fields.get("CPUs/Task"), 1)
    mem_mb = _memory_mb(fields.get("MinMemoryNode"))
    per_cpu_mb = _memory_mb(fields.get("MinMemoryCPU"))
    if mem_mb is None and per_cpu_mb is not None:
        mem_mb = per_cpu_mb * ncpus  # --mem-per-cpu: shown as the job total, like PBS mem
    run_time = _duration_seconds(fields.get("RunTime"))
    stdout, stderr = _null(fields.get("StdOut")), _null(fields.get("StdErr"))
    submitted = _scontrol_time(fields.get("SubmitTime"))
    nice = re.match(r"-?\d+", fields.get("Nice") or "")
    info = JobInfo(
        id=job_id,
        name=fields.get("JobName", ""),
        owner=_user_name(fields.get("UserId")),
        state=state.letter,
        queue=fields.get("Partition", ""),
        submit_host=(fields.get("AllocNode:Sid") or "").rsplit(":", 1)[0],
        created=submitted,
        queued=submitted,
        eligible=eligible,
        modified=_scontrol_time(fields.get("LastSchedEval")),
        output_path=stdout,
        error_path=stderr,
        join="oe" if stdout and stdout == stderr else "n",
        hold_types=state.hold_types,
        mail_points=_mail_points(fields.get("MailType")),
        mail_users=_null(fields.get("MailUser")),
        priority=-int(nice.group()) if nice else 0,  # PBS: higher runs first; Slurm nice: lower
        rerunable=fields.get("Requeue", "1") != "0",
        resource_list=_resource_list(ncpus, nodes, tasks, cpus_per_task,
                                     _duration_seconds(fields.get("TimeLimit")), mem_mb,
                                     _null(fields.get("Features"))),
        resources_used=({"walltime": format_hms(run_time)}
                        if run_time is not None and state.letter not in ("Q", "H", "W") else {}),
        project=_null(fields.get("Comment")) or DEFAULT_PROJECT,
        account=_null(fields.get("Account")),
        comment=reason,
        exec_host=_null(fields.get("NodeList")) if state.letter not in ("Q", "H", "W") else None,
        ncpus=ncpus,
        nodes=nodes,
        array_indices=indices_text(array_task_ids(task)) if task and job_id.endswith("[]") else None,
        depend=_pbs_dependency(fields.get("Dependency")),
        workdir=_null(fields.get("WorkDir")),
        native=dict(fields),
    )
    return _finish(info, slurm_state, state, _leading_int(code_text), _leading_int(signal_text),
                   _scontrol_time(fields.get("StartTime")), _scontrol_time(fields.get("EndTime")))


# --- squeue --json ----------------------------------------------------------------------


def _epoch(value: object) -> datetime | None:
    if not isinstance(value, (int, float)) or value <= 0:
        return None
    return datetime.fromtimestamp(value)  # local time without zone, like PBS's times


def _expand_pattern(pattern: str, job: Mapping[str, object]) -> str:
    """squeue --json shows --output as given (t1.o%j); expand the common patterns the
    way slurmd does so info and info_all agree."""
    values = {
        "j": str(job.get("job_id", "")),
        "A": str(job.get("array_job_id") or job.get("job_id", "")),
        "a": str(job.get("array_task_id") if job.get("array_task_id") is not None else "4294967294"),
        "x": str(job.get("name", "")),
        "u": str(job.get("user_name", "")),
        "%": "%",
    }
    return re.sub(r"%([jAaxu%])", lambda m: values[m.group(1)], pattern)


def _int(value: object) -> int:
    """`int()` of a squeue --json count: a JSON number (a numeric string is tolerated, as
    `int()` always did here); anything else raises the TypeError `int()` would."""
    if isinstance(value, (int, float, str)):
        return int(value)
    raise TypeError(f"squeue --json: expected a number, got {type(value).__name__}")


def _wait_status(status: object) -> tuple[int, int]:
    """squeue --json's exit_code is the raw wait status: 768 = exit 3, 15 = signal 15."""
    if not isinstance(status, int):
        return 0, 0
    return (status >> 8) & 0xFF, status & 0x7F


def _job_info_from_squeue(job: Mapping[str, object]) -> JobInfo:
    task = job.get("array_task_id")
    if task is None and job.get("array_task_string"):
        task = str(job["array_task_string"])  # the pending part of an array
    job_id = pbs_job_id(str(job.get("job_id", "")), job.get("array_job_id"), task)  # type: ignore[arg-type]
    slurm_state = str(job.get("job_state") or "")
    reason = _null(str(job.get("state_reason") or ""))
    eligible = _epoch(job.get("eligible_time"))
    state = pbs_state(slurm_state, reason, eligible)
    ncpus = _int(job.get("cpus") or 1)
    nodes = _int(job.get("node_count") or 1)
    tasks = _int(job.get("tasks") or 1)
    cpus_per_task = _int(job.get("cpus_per_task") or max(1, ncpus // max(tasks, 1)))
    mem_mb = job.get("memory_per_node")
    if not mem_mb and job.get("memory_per_cpu"):
        mem_mb = _int(job["memory_per_cpu"]) * ncpus
    stdout_pattern = str(job.get("standard_output") or "")
    if not stdout_pattern and job.get("batch_flag") and job.get("current_working_directory"):
        # sbatch's default, which squeue leaves empty (scontrol shows it expanded)
        default = "slurm-%A_%a.out" if job.get("array_job_id") else "slurm-%j.out"
        stdout_pattern = os.path.join(str(job["current_working_directory"]), default)
    stdout = _expand_pattern(stdout_pattern, job) or None
    stderr = _expand_pattern(str(job.get("standard_error") or ""), job) or stdout  # "" = joined
    time_limit = job.get("time_limit")
    submitted = _epoch(job.get("submit_time"))
    started = _epoch(job.get("start_time"))
    ended = _epoch(job.get("end_time"))
    run_seconds = None
    if started and state.letter not in ("Q", "H", "W"):
        run_seconds = int(((ended if state.finished and ended else datetime.now()) - started).total_seconds())
    nice = job.get("nice")
    code, signal = _wait_status(job.get("exit_code"))
    info = JobInfo(
        id=job_id,
        name=str(job.get("name", "")),
        owner=str(job.get("user_name", "")),
        state=state.letter,
        queue=str(job.get("partition", "")),
        created=submitted,
        queued=submitted,
        eligible=eligible,
        modified=_epoch(job.get("last_sched_evaluation")),
        output_path=stdout,
        error_path=stderr,
        join="oe" if stdout and stdout == stderr else "n",
        hold_types=state.hold_types,
        priority=-int(nice) if isinstance(nice, int) else 0,
        rerunable=bool(job.get("requeue", True)),
        resource_list=_resource_list(ncpus, nodes, tasks, cpus_per_task,
                                     int(time_limit) * 60 if isinstance(time_limit, int) else None,
                                     int(mem_mb) if isinstance(mem_mb, int) and mem_mb else None,
                                     str(job.get("features") or "") or None),
        resources_used={"walltime": format_hms(max(run_seconds, 0))} if run_seconds is not None else {},
        project=str(job.get("comment") or "") or DEFAULT_PROJECT,
        account=str(job.get("account") or "") or None,
        comment=reason,
        exec_host=(str(job.get("nodes") or "") or None) if state.letter not in ("Q", "H", "W") else None,
        ncpus=ncpus,
        nodes=nodes,
        array_indices=indices_text(array_task_ids(str(task))) if job_id.endswith("[]") else None,
        depend=_pbs_dependency(str(job.get("dependency") or "")),
        workdir=str(job.get("current_working_directory") or "") or None,
        native=dict(job),
    )
    return _finish(info, slurm_state, state, code, signal, started, ended)


def job_infos_from_squeue_json(text: str) -> list[JobInfo]:
    """Every record of `squeue --json` (22.05, openapi v0.0.38) -> JobInfo, one per
    Slurm record: array tasks as "123[4]", the still-pending part of an array as "123[]"."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SchedulerError("Unexpected answer from squeue (not JSON)") from exc
    jobs = document.get("jobs") if isinstance(document, dict) else None
    if not isinstance(jobs, list):
        raise SchedulerError("Unexpected answer from squeue (no job list)")
    return [_job_info_from_squeue(job) for job in jobs if isinstance(job, dict)]
