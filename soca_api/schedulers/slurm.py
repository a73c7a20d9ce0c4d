"""Slurm backend: PBS job requests run through sbatch, answers read back in PBS terms.

Slurm 22.05 facts this module is written against (docs/slurm-translation.md, captured
outputs in tests/fixtures/slurm/):

- sbatch reads `#PBS` lines itself and refuses the ones it does not know, so every
  directive is translated here and sbatch always gets `--ignore-pbs`.
- `scontrol show job <id>` (text, about 4 ms) is the per-job query. `squeue --json`
  ignores its filters and returns the whole queue, so it runs at most once per
  `cache_seconds` for all callers together.
- `scancel` exits 0 even for unknown or finished jobs and says so only with `-v`.
- An array submitted as 123 has tasks `123_N` (PBS `123[N]`); the tasks still pending
  share one record whose ArrayTaskId is a range such as `2-4%1`.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import pwd
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from soca_api.pbs.request import JobRequest
from soca_api.schedulers import jobfiles
from soca_api.schedulers.base import (
    EXIT_ABORTED_ON_RESTART,
    EXIT_KILLED_BY_SIGNAL_BASE,
    EXIT_WALLTIME,
    SUBSTATE_DELETED,
    SUBSTATES,
    Capabilities,
    JobInfo,
    JobNotFound,
    JobRejected,
    PermissionDenied,
    QueueRejected,
    SchedulerAdapter,
    SchedulerError,
    SchedulerTimeout,
    SchedulerUnavailable,
    SubmitContext,
)
from soca_api.schedulers.commands import (
    CommandResult,
    RunAs,
    clean_environment,
    run_command,
)
from soca_api.schedulers.snapshot import BackgroundSnapshot, SingleFlight
from soca_api.validation import INSTANCE_TYPE, JOB_ID

SUBMIT_REJECTED = (
    "Unable to submit the job. Please verify your script file (eg: malformed inputs, syntax "
    "error, extra space in the PBS variables ...) or refer to the 'stderr' message."
)
JOB_NOT_FOUND = "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"

INSTANCE_TYPE_MODES = ("constraint", "ignore")
DEFAULT_PROJECT = "_pbs_project_default"  # what PBS shows when no -P was given
QUEUE_CACHE_SECONDS = 60.0
EXIT_EXEC_FAILED = -1  # PBS JOB_EXEC_FAIL1: the job could not be started
SIGKILL, SIGTERM = 9, 15

_DEPENDENCY_KINDS = ("after", "afterok", "afternotok", "afterany")
_MAIL_TYPES = {"b": "BEGIN", "e": "END", "a": "FAIL", "j": "ARRAY_TASKS"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TranslationError(ValueError):
    """A directive that has no faithful sbatch form; the submit refuses the job."""


# --- job ids ----------------------------------------------------------------------------


def _split_job_id(job_id: str) -> tuple[str, str | None]:
    """API id -> (numeric id, index): "12" -> ("12", None), "12[]" -> ("12", ""),
    "12[3].head" -> ("12", "3"). Raises ValueError when the id is not well formed."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ValueError(f"invalid job id: {job_id!r}")
    bare = job_id.split(".", 1)[0]
    if "[" not in bare:
        return bare, None
    number, index = bare[:-1].split("[", 1)
    return number, index


def slurm_job_id(job_id: str) -> str:
    """PBS/API id -> Slurm id: "12" -> "12", "12[]" -> "12" (the whole array), "12[3]" -> "12_3"."""
    number, index = _split_job_id(job_id)
    return f"{number}_{index}" if index else number


def pbs_job_id(job_id: str | int, array_job_id: str | int | None = None,
               array_task_id: str | int | None = None) -> str:
    """Slurm record -> API id: a task is "<array job id>[<task>]", a plain job its number."""
    if array_job_id not in (None, "", 0, "0") and array_task_id not in (None, ""):
        task = str(array_task_id)
        return f"{array_job_id}[{task}]" if task.isdigit() else f"{array_job_id}[]"
    return str(job_id)


# --- PBS directives -> sbatch options ---------------------------------------------------


def sbatch_arguments(request: JobRequest, *, instance_type_mode: str = "constraint",
                     environment: Mapping[str, str] | None = None) -> list[str]:
    """The sbatch options for `request` (without --ignore-pbs/--parsable/--chdir and the
    script, which submit adds). `environment` holds extra variables for the job (the
    PBS_O_* values submit knows). Raises TranslationError for what sbatch cannot express."""
    if instance_type_mode not in INSTANCE_TYPE_MODES:
        raise ValueError(f"instance_type_mode must be one of {INSTANCE_TYPE_MODES}")
    args = [f"--job-name={request.name}"]
    if request.queue:
        args.append(f"--partition={request.queue}")
    args += _output_arguments(request)
    args += _placement_arguments(request)
    if request.walltime_seconds is not None:
        args.append(f"--time={slurm_time(request.walltime_seconds)}")
    args += _memory_arguments(request)
    if request.account:
        args.append(f"--account={request.account}")
    if request.project:
        # --comment is stored and shown by every Slurm; --wckey needs accounting set up.
        args.append(f"--comment={request.project}")
    if request.hold:
        args.append("--hold")
    if request.dependencies:
        args.append(f"--dependency={_dependency_expression(request)}")
    if request.array is not None:
        args.append(f"--array={request.array}")
    args.append(_export_argument(request, environment or {}))
    if request.start_after is not None:
        args.append(f"--begin={_slurm_datetime(request.start_after)}")
    args += _mail_arguments(request)
    if not request.rerunable:
        args.append("--no-requeue")
    if request.priority < 0:
        # PBS -p -N lowers the priority; a positive Slurm nice does the same. Raising it
        # (negative nice) is for Slurm operators only, so positive -p is not passed on.
        args.append(f"--nice={-request.priority}")
    if instance_type_mode == "constraint" and request.instance_types:
        args.append(f"--constraint={_constraint(request.instance_types)}")
    return args


def slurm_time(seconds: int) -> str:
    """Walltime seconds -> D-HH:MM:SS. Slurm rounds up to whole minutes, and 0 would mean
    "no limit" to it, so the shortest limit sent is one second (one minute in Slurm)."""
    seconds = max(int(seconds), 1)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _slurm_path(path: str) -> str:
    """A PBS path for --output/--error: a literal % is %% in Slurm's filename patterns,
    and PBS's ^array_index^ is Slurm's %a."""
    return path.replace("%", "%%").replace("^array_index^", "%a")


def _default_stream_path(request: JobRequest, letter: str) -> str:
    # PBS: <name>.o<seq> in the submission directory (= job dir = --chdir), and
    # <name>.o<seq>.<index> for array subjobs.
    suffix = "%A.%a" if request.array is not None else "%j"
    return f"{request.name}.{letter}{suffix}"


def _stream_path(request: JobRequest, given: str | None, letter: str) -> str:
    if not given:
        return _default_stream_path(request, letter)
    if given.endswith("/"):  # a directory: PBS puts the default file name in it
        return _slurm_path(given) + _default_stream_path(request, letter)
    return _slurm_path(given)


def _output_arguments(request: JobRequest) -> list[str]:
    """Slurm joins stderr into --output whenever --error is absent, so a joined stream is
    one --output: to the -o path for `-j oe`, to the -e path for `-j eo`."""
    if request.join == "oe":
        return [f"--output={_stream_path(request, request.output_path, 'o')}"]
    if request.join == "eo":
        return [f"--output={_stream_path(request, request.error_path, 'e')}"]
    return [
        f"--output={_stream_path(request, request.output_path, 'o')}",
        f"--error={_stream_path(request, request.error_path, 'e')}",
    ]


def _placement(request: JobRequest) -> set[str]:
    """The PBS place keywords: nodes= is scatter (one chunk per host), select defaults to
    free, job-wide resources alone to pack (pbs_resources(7B))."""
    if "nodes" in request.resources:
        words = {"scatter"}
        if "#excl" in request.resources["nodes"]:
            words.add("excl")
        return words
    if "select" in request.resources:
        return set(request.resources.get("place", "free").split(":"))
    return {"pack"}


def _cpus_per_chunk(request: JobRequest) -> int:
    # Uneven chunks (select=1:ncpus=4+2:ncpus=1) are rounded up to the largest share.
    return max(1, math.ceil(request.ncpus / max(request.nodes, 1)))


def _placement_arguments(request: JobRequest) -> list[str]:
    """One Slurm task per PBS chunk with the chunk's cpus as --cpus-per-task; chunks that
    PBS puts on distinct hosts (scatter) get --nodes=<chunks>, pack gets --nodes=1, free
    lets Slurm choose."""
    chunks = max(request.nodes, 1)
    place = _placement(request)
    args: list[str] = []
    if place & {"scatter", "vscatter"}:
        args.append(f"--nodes={chunks}")
    elif "pack" in place:
        args.append("--nodes=1")
    args += [f"--ntasks={chunks}", f"--cpus-per-task={_cpus_per_chunk(request)}"]
    if place & {"excl", "exclhost"}:
        args.append("--exclusive")
    return args


def _memory_arguments(request: JobRequest) -> list[str]:
    """PBS mem is the job total; Slurm's --mem is per node. When the node count is fixed
    the total is shared per node, otherwise per cpu (--mem-per-cpu)."""
    if request.mem_bytes is None:
        return []
    total_mb = max(1, math.ceil(request.mem_bytes / 2**20))
    chunks = max(request.nodes, 1)
    place = _placement(request)
    if chunks == 1 or "pack" in place:
        return [f"--mem={total_mb}"]
    if place & {"scatter", "vscatter"}:
        return [f"--mem={math.ceil(total_mb / chunks)}"]
    return [f"--mem-per-cpu={math.ceil(total_mb / max(request.ncpus, 1))}"]


def _dependency_expression(request: JobRequest) -> str:
    clauses = []
    for dependency in request.dependencies:
        if dependency.kind not in _DEPENDENCY_KINDS:
            raise TranslationError(f"dependency type {dependency.kind!r} is not supported by Slurm")
        try:
            ids = [slurm_job_id(job_id) for job_id in dependency.job_ids]
        except ValueError as exc:
            raise TranslationError(str(exc)) from None
        if not ids:
            raise TranslationError(f"dependency {dependency.kind} names no job")
        clauses.append(":".join([dependency.kind, *ids]))
    return ",".join(clauses)  # "," = all clauses must hold, as in PBS


def _export_argument(request: JobRequest, environment: Mapping[str, str]) -> str:
    """--export=ALL[,NAME=value...]. ALL is the sbatch child's own environment, which
    run_command keeps clean (PATH, LANG, HOME, USER...), so -V adds nothing more. Slurm
    splits the list on commas and keeps quotes in values, so a comma cannot be sent."""
    parts = ["ALL"]
    for name, value in [*request.variables.items(), *environment.items()]:
        if not _ENV_NAME.fullmatch(name):
            raise TranslationError(f"invalid environment variable name {name!r}")
        if "," in value:
            raise TranslationError(f"the value of {name} contains a comma, which Slurm cannot pass")
        parts.append(f"{name}={value}")
    return "--export=" + ",".join(parts)


def _slurm_datetime(when: datetime) -> str:
    # Slurm reads --begin in the controller's local time; naive values are taken as local.
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _mail_arguments(request: JobRequest) -> list[str]:
    """-m/-M -> --mail-type/--mail-user; nothing when both are the PBS defaults (-m a)."""
    if request.mail_points == "a" and not request.mail_users:
        return []
    points = request.mail_points or "n"
    if "n" in points:
        types = ["NONE"]
    else:
        types = [_MAIL_TYPES[p] for p in "beaj" if p in points]
    args = [f"--mail-type={','.join(types)}"]
    if request.mail_users:
        args.append(f"--mail-user={request.mail_users}")
    return args


def _constraint(instance_types: list[str]) -> str:
    """SOCA's instance_type=a+b -> Slurm node features a|b (any of them)."""
    for name in instance_types:
        if not INSTANCE_TYPE.fullmatch(name):
            raise TranslationError(f"invalid instance_type {name!r}")
    return "|".join(instance_types)


# --- scontrol show job ------------------------------------------------------------------

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
    letters = [p for p, name in _MAIL_TYPES.items() if name in names or "ALL" in names]
    return "".join(sorted(letters, key="beaj".index)) or "a"


def _array_task_ids(text: str) -> list[int]:
    """"2-4%1", "3,5%1", "1-9:2", "7" -> the task numbers."""
    ids: list[int] = []
    for part in text.split("%", 1)[0].split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not match:
            continue
        start = int(match.group(1))
        end = int(match.group(2) or start)
        ids += range(start, end + 1, int(match.group(3) or 1))
    return ids


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
        array_indices=_indices_text(_array_task_ids(task)) if task and job_id.endswith("[]") else None,
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
    ncpus = int(job.get("cpus") or 1)
    nodes = int(job.get("node_count") or 1)
    tasks = int(job.get("tasks") or 1)
    cpus_per_task = int(job.get("cpus_per_task") or max(1, ncpus // max(tasks, 1)))
    mem_mb = job.get("memory_per_node")
    if not mem_mb and job.get("memory_per_cpu"):
        mem_mb = int(job["memory_per_cpu"]) * ncpus  # type: ignore[call-overload]
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
        array_indices=_indices_text(_array_task_ids(str(task))) if job_id.endswith("[]") else None,
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


# --- arrays -----------------------------------------------------------------------------


def _indices_text(ids: Iterable[int]) -> str | None:
    """[1, 3, 5] -> "1-5:2"; irregular sets as comma-separated runs."""
    ordered = sorted(set(ids))
    if not ordered:
        return None
    if len(ordered) == 1:
        return str(ordered[0])
    steps = {b - a for a, b in itertools.pairwise(ordered)}
    if len(steps) == 1:
        step = steps.pop()
        return f"{ordered[0]}-{ordered[-1]}" + (f":{step}" if step != 1 else "")
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def array_job_id(info: JobInfo) -> str | None:
    """"123[4]" / "123[]" -> "123"; None for a plain job."""
    return info.id.split("[", 1)[0] if "[" in info.id else None


def _task_ids(info: JobInfo) -> list[int]:
    index = info.id.split("[", 1)[1].rstrip("]")
    return [int(index)] if index else _array_task_ids(info.array_indices or "")


def _array_exit_status(tasks: list[JobInfo]) -> int:
    """PBS: 0 when every subjob exited 0, 2 when one was deleted or aborted (negative
    status), 1 when one exited non-zero."""
    if any(task.substate == SUBSTATE_DELETED or (task.exit_status or 0) < 0 for task in tasks):
        return 2
    return 1 if any(task.exit_status for task in tasks) else 0


def array_parent(parent_id: str, tasks: list[JobInfo]) -> JobInfo:
    """The PBS view of an array ("123[]") from its task records: F when all finished, B
    once any task has started, H when every pending task is held, else Q."""
    first = min(tasks, key=lambda t: (_task_ids(t) or [0])[0])
    states = [task.state for task in tasks]
    if all(task.is_finished for task in tasks):
        letter = "F"
    elif any(s in ("R", "E", "S") or s == "F" for s in states):
        letter = "B"
    elif all(s == "H" for s in states):
        letter = "H"
    else:
        letter = "Q"
    started = [task.started for task in tasks if task.started]
    finished = [task.finished for task in tasks if task.finished]
    parent = JobInfo(
        id=f"{parent_id}[]",
        name=first.name,
        owner=first.owner,
        state=letter,
        queue=first.queue,
        submit_host=first.submit_host,
        substate=SUBSTATES.get(letter),
        created=first.created,
        queued=first.queued,
        eligible=first.eligible,
        modified=max((t.modified for t in tasks if t.modified), default=None),
        started=min(started) if started else None,
        finished=max(finished) if letter == "F" and finished else None,
        exit_status=_array_exit_status(tasks) if letter == "F" else None,
        output_path=first.output_path,
        error_path=first.error_path,
        join=first.join,
        hold_types=first.hold_types if letter == "H" else "n",
        mail_points=first.mail_points,
        mail_users=first.mail_users,
        priority=first.priority,
        rerunable=first.rerunable,
        resource_list=dict(first.resource_list),
        project=first.project,
        account=first.account,
        ncpus=first.ncpus,
        nodes=first.nodes,
        array_indices=_indices_text(i for task in tasks for i in _task_ids(task)),
        depend=first.depend,
        workdir=first.workdir,
        native={"tasks": [task.native for task in tasks]},
    )
    return parent


def group_arrays(infos: list[JobInfo]) -> list[JobInfo]:
    """Per-record infos -> what `qstat` shows: plain jobs and one "123[]" per array (in
    the order first seen); subjobs are asked for one by one with info("123[4]")."""
    result: list[JobInfo | str] = []
    arrays: dict[str, list[JobInfo]] = {}
    for info in infos:
        parent = array_job_id(info)
        if parent is None:
            result.append(info)
            continue
        if parent not in arrays:
            arrays[parent] = []
            result.append(parent)
        arrays[parent].append(info)
    return [array_parent(item, arrays[item]) if isinstance(item, str) else item for item in result]


# --- the adapter ------------------------------------------------------------------------


def _is_subjob(api_id: str) -> bool:
    return "[" in api_id and not api_id.endswith("[]")



def _first_error_line(stderr: str) -> str:
    """The line that explains a refusal: the first error line, else the first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[0] if lines else ""


_OUTAGE_SIGNS = (
    "Unable to contact slurm controller",
    "Unable to establish controller machine",
    "Zero Bytes were transmitted or received",
    "Munge encode failed",
    "Munge decode failed",
    "Invalid authentication credential",
)


def _raise_for_outage(result: CommandResult) -> None:
    """Controller or authentication down: 503 (or 504 on a Slurm-side timeout). Checked
    whatever the exit code: scancel reports errors with exit 0."""
    text = result.stderr
    if not text:
        return
    if "Socket timed out" in text:
        raise SchedulerTimeout("The Slurm controller did not answer in time", _first_error_line(text))
    if any(sign in text for sign in _OUTAGE_SIGNS):
        raise SchedulerUnavailable("The Slurm controller cannot be reached", _first_error_line(text))


def _run_as(context: SubmitContext) -> RunAs | None:
    if context.run_as_uid is None:
        return None
    entry = None
    try:
        entry = pwd.getpwuid(context.run_as_uid)
    except KeyError:
        pass
    gid = context.run_as_gid if context.run_as_gid is not None else (entry.pw_gid if entry else context.run_as_uid)
    home = context.home or (entry.pw_dir if entry else context.job_dir)
    return RunAs(context.user, context.run_as_uid, gid, tuple(context.run_as_groups), home)


def write_job_script(script: str, job_dir: str, run_as: RunAs | None) -> str:
    """Write the script into the job dir under a fresh name (never over an existing file
    or through a link) and return its absolute path."""
    owner = (run_as.uid, run_as.gid) if run_as is not None else None
    dir_fd = jobfiles.open_or_create_job_dir(job_dir, owner)
    try:
        name = f"soca-job-{secrets.token_hex(6)}.sh"
        jobfiles.write_new_file(dir_fd, name, script, owner, 0o700)
    finally:
        os.close(dir_fd)
    return os.path.join(job_dir, name)


class SlurmAdapter(SchedulerAdapter):
    """PBS jobs on Slurm through its command-line tools (no shell, no slurmrestd)."""

    name = "slurm"
    # Jobs run as real accounts known on every node; a queue is an existing partition
    # (the service does not administer Slurm: apply_queue only checks it exists).
    capabilities = Capabilities(needs_posix_account=True)

    def __init__(self, bin_dir: str = "", timeout: float = 10.0,
                 instance_type_mode: str = "constraint", cache_seconds: float = 2.0):
        if instance_type_mode not in INSTANCE_TYPE_MODES:
            raise ValueError(f"instance_type_mode must be one of {INSTANCE_TYPE_MODES}")
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.instance_type_mode = instance_type_mode
        self.cache_seconds = cache_seconds
        # {api id: info} of every squeue record: plain jobs, array parents "123[]" (as
        # qstat shows them) and the tasks that have a record of their own "123[4]".
        self._jobs: BackgroundSnapshot[dict[str, JobInfo]] = BackgroundSnapshot(self._query_all, cache_seconds)
        self._flights = SingleFlight()
        self._lookups_lock = threading.Lock()
        self._lookups: dict[str, tuple[float, JobInfo | None]] = {}
        self._queues_lock = threading.Lock()
        self._queues: tuple[float, list[str]] | None = None

    # -- plumbing

    def _command(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def _run(self, args: list[str], *, run_as: RunAs | None = None, cwd: str | None = None) -> CommandResult:
        result = run_command([self._command(args[0]), *args[1:]], timeout=self.timeout, cwd=cwd,
                             run_as=run_as, env=clean_environment(run_as))
        _raise_for_outage(result)
        return result

    def _invalidate_jobs(self) -> None:
        # The next read starts a refresh (without waiting for it); direct answers are stale.
        self._jobs.mark_stale()
        with self._lookups_lock:
            self._lookups.clear()

    @staticmethod
    def _slurm_id(job_id: str) -> str:
        try:
            return slurm_job_id(job_id)
        except ValueError:
            raise JobNotFound(JOB_NOT_FOUND, detail="invalid job id") from None

    # -- SchedulerAdapter

    def submit(self, request: JobRequest, context: SubmitContext) -> str:
        run_as = _run_as(context)
        environment = {
            "PBS_O_WORKDIR": context.job_dir,
            "PBS_O_HOME": run_as.home if run_as else (context.home or context.job_dir),
            "PBS_O_LOGNAME": context.user,
            "PBS_JOBNAME": request.name,
        }
        try:
            options = sbatch_arguments(request, instance_type_mode=self.instance_type_mode,
                                       environment=environment)
        except TranslationError as exc:
            raise JobRejected(SUBMIT_REJECTED, detail=str(exc)) from None
        try:
            script_path = write_job_script(request.script, context.job_dir, run_as)
        except OSError as exc:
            raise SchedulerError("Unable to write the job script", detail=exc.strerror) from None
        args = ["sbatch", "--ignore-pbs", "--parsable", f"--chdir={context.job_dir}", *options, script_path]
        result = self._run(args, run_as=run_as, cwd=context.job_dir)
        if not result.ok:
            raise JobRejected(SUBMIT_REJECTED, detail=_first_error_line(result.stderr))
        job_id = result.stdout.strip().split(";", 1)[0]  # "123" or "123;cluster"
        if not job_id.isdigit():
            raise SchedulerError("Unexpected answer from sbatch", detail=result.stdout.strip()[:200])
        self._invalidate_jobs()
        return f"{job_id}[]" if request.array is not None else job_id

    def info(self, job_id: str) -> JobInfo:
        """From the shared snapshot; a job absent from it gets one direct query."""
        slurm_id = self._slurm_id(job_id)
        _, index = _split_job_id(job_id)
        key = f"{slurm_id.split('_')[0]}[{index}]" if index is not None else slurm_id
        found = self._jobs.get().get(key)
        if found is None and index is None:
            found = self._jobs.get().get(f"{slurm_id}[]")  # "123" that is an array's own id
        if found is not None:
            return found
        info = self.query(job_id)
        if info is None:
            raise JobNotFound(JOB_NOT_FOUND)
        return info

    def query(self, job_id: str) -> JobInfo | None:
        """One `scontrol show job`, shared by concurrent callers and remembered for
        cache_seconds: never one process per request."""
        key = self._slurm_id(job_id) + ("[]" if job_id.split(".", 1)[0].endswith("[]") else "")
        with self._lookups_lock:
            cached = self._lookups.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]

        def ask() -> JobInfo | None:
            try:
                info = self._scontrol_job(job_id)
            except JobNotFound:
                info = None
            with self._lookups_lock:
                if len(self._lookups) > 4096:
                    self._lookups.clear()
                self._lookups[key] = (time.monotonic(), info)
            return info

        return self._flights.run(key, ask)

    def _scontrol_job(self, job_id: str) -> JobInfo:
        slurm_id = self._slurm_id(job_id)
        _, index = _split_job_id(job_id)
        result = self._run(["scontrol", "show", "job", slurm_id])
        if not result.ok:
            # "Invalid job id specified" (stderr); "Job 12_7 not found" (stdout)
            words = f"{result.stderr}\n{result.stdout}"
            if "Invalid job id" in words or "not found" in words:
                raise JobNotFound(JOB_NOT_FOUND, detail=_first_error_line(words))
            raise SchedulerError("Unable to query the job", detail=_first_error_line(words))
        infos = [job_info_from_scontrol(fields) for fields in parse_scontrol_jobs(result.stdout)]
        if not infos:
            raise JobNotFound(JOB_NOT_FOUND)
        if index:  # one subjob; a pending one is shown through the shared pending record
            info = infos[0]
            info.id = f"{slurm_id.split('_')[0]}[{index}]"
            info.array_indices = None
            return info
        # "123" that is an array's own id shows all its tasks: answer as for "123[]".
        array_tasks = [i for i in infos if array_job_id(i) == slurm_id]
        if array_tasks:
            return array_parent(slurm_id, array_tasks)
        if index == "":
            raise JobNotFound(JOB_NOT_FOUND, detail="not an array job")
        return infos[0]

    def info_all(self, owner: str | None = None) -> list[JobInfo]:
        """Plain jobs and array parents ("123[]"), like qstat without -t. The JobInfo
        objects are shared by every caller within cache_seconds: treat them as read-only."""
        return [job for job in self._jobs.get().values()
                if not _is_subjob(job.id) and (owner is None or job.owner == owner)]

    def snapshot(self) -> list[JobInfo]:
        """Every job squeue shows (finished ones until MinJobAge), array parents and the
        tasks with a record of their own, from one squeue run now (the reconciler's
        input); this process's readers reuse it."""
        jobs = self._query_all()
        self._jobs.put(jobs)
        return list(jobs.values())

    @property
    def snapshot_loads(self) -> int:
        return self._jobs.loads

    def _query_all(self) -> dict[str, JobInfo]:
        result = self._run(["squeue", "--json", "--all"])
        if not result.ok:
            raise SchedulerError("Unable to list the jobs", detail=_first_error_line(result.stderr))
        records = job_infos_from_squeue_json(result.stdout)
        jobs = {info.id: info for info in group_arrays(records)}
        for info in records:
            if _is_subjob(info.id):
                jobs[info.id] = info
        return jobs

    def delete(self, job_id: str) -> None:
        # Without -v scancel says nothing, and it exits 0 either way: read its words.
        result = self._run(["scancel", "-v", self._slurm_id(job_id)])
        self._raise_for_job_error(result, "Unable to delete the job")
        self._invalidate_jobs()

    def hold(self, job_id: str) -> None:
        # uhold is a user hold (PBS qhold's default -h u): the owner may release it.
        result = self._run(["scontrol", "uhold", self._slurm_id(job_id)])
        self._raise_for_job_error(result, "Unable to hold the job")
        self._invalidate_jobs()

    def release(self, job_id: str) -> None:
        result = self._run(["scontrol", "release", self._slurm_id(job_id)])
        self._raise_for_job_error(result, "Unable to release the job")
        self._invalidate_jobs()

    @staticmethod
    def _raise_for_job_error(result: CommandResult, message: str) -> None:
        text = result.stderr
        if "Invalid job id" in text or "already completing or completed" in text \
                or "already finished" in text or "not found" in text:
            raise JobNotFound(JOB_NOT_FOUND, detail=_first_error_line(text))
        if "Access/permission denied" in text or "Invalid user id" in text:
            raise PermissionDenied("You are not allowed to change this job", detail=_first_error_line(text))
        if not result.ok or "error:" in text:
            raise JobRejected(message, detail=_first_error_line(text))

    def queues(self) -> list[str]:
        with self._queues_lock:
            now = time.monotonic()
            if self._queues is not None and now - self._queues[0] < QUEUE_CACHE_SECONDS:
                return list(self._queues[1])
            names = self._load_queues()
            self._queues = (now, names)
            return list(names)

    def _load_queues(self) -> list[str]:
        result = self._run(["sinfo", "-h", "-o", "%P"])
        if not result.ok:
            raise SchedulerError("Unable to list the queues", detail=_first_error_line(result.stderr))
        names: list[str] = []
        for line in result.stdout.splitlines():
            name = line.strip().rstrip("*")  # "normal*" marks the default partition
            if name and name not in names:
                names.append(name)
        return names

    def health(self) -> tuple[bool, str]:
        """Asks the controller every time (the queue cache would hide an outage)."""
        try:
            names = self._load_queues()
        except SchedulerError as exc:
            return False, exc.message
        with self._queues_lock:
            self._queues = (time.monotonic(), names)
        return True, "ok"

    def apply_queue(self, name: str) -> None:
        """A queue is an existing partition: the service does not administer Slurm."""
        if name not in self.known_queues():
            raise QueueRejected(f"Slurm has no partition {name}: create the partition first (slurm.conf)")
