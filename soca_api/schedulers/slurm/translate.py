"""PBS directives -> sbatch options (docs/slurm-translation.md).

sbatch reads `#PBS` lines itself and refuses the ones it does not know, so every
directive of a JobRequest is translated here and sbatch always gets `--ignore-pbs`.
Pure functions: no subprocess, no I/O.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime

from soca_api.schedulers.slurm.ids import slurm_job_id
from soca_api.schedulers.values import JobRequest
from soca_api.validation import INSTANCE_TYPE

INSTANCE_TYPE_MODES = ("constraint", "ignore")
# PBS -m letters -> Slurm --mail-type names (read back by the parsers).
MAIL_TYPES = {"b": "BEGIN", "e": "END", "a": "FAIL", "j": "ARRAY_TASKS"}

_DEPENDENCY_KINDS = ("after", "afterok", "afternotok", "afterany")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TranslationError(ValueError):
    """A directive that has no faithful sbatch form; the submit refuses the job."""


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
    types = ["NONE"] if "n" in points else [MAIL_TYPES[p] for p in "beaj" if p in points]
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
