"""The PBS adapter: OpenPBS / PBS Pro (`qstat -F json`), Torque and Slurm's Torque
wrappers (`qstat -f` text), through their command-line tools.

Every command is an argument list run by `run_command` with a timeout and an explicit
working directory; there is no shell. Job status comes from one shared snapshot of all
jobs, refreshed at most every `cache_seconds` (docs/reference/soca-contract.md defect 7: one qstat per
API request overloads the PBS server, which also throttles itself to ~5 qstat/s per
user, docs/reference/pbs-facts.md).
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field, replace

from soca_api.schedulers import jobfiles
from soca_api.schedulers.base import Capabilities, SchedulerAdapter
from soca_api.schedulers.commands import SAFE_PATH, CommandResult, RunAs, clean_environment, run_command
from soca_api.schedulers.errors import (
    JobNotFound,
    JobRejected,
    PermissionDenied,
    SchedulerError,
    SchedulerUnavailable,
)
from soca_api.schedulers.pbs import qmgr
from soca_api.schedulers.pbs.ids import api_short_id, is_subjob, parse_qsub_output
from soca_api.schedulers.pbs.qstat import (
    QstatParseError,
    job_info_from_attributes,
    owner_of,
    parse_qstat_json,
    parse_qstat_queues,
    parse_qstat_text,
    short_job_id,
)
from soca_api.schedulers.pbs.translate import added_options, script_file_name
from soca_api.schedulers.snapshot import BackgroundSnapshot, SingleFlight
from soca_api.schedulers.values import JobInfo, JobRequest, SubmitContext

DIALECTS = ("auto", "json", "text")

# Messages users recognise from SOCA (docs/reference/soca-contract.md).
SUBMIT_REJECTED = (
    "Unable to submit the job. Please verify your script file (eg: malformed inputs, syntax "
    "error, extra space in the PBS variables ...) or refer to the 'stderr' message."
)
JOB_GONE = "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"

DETAIL_LIMIT = 300
# A finished job's record no longer changes: keep a direct lookup's answer this long.
FINISHED_TTL_SECONDS = 60.0
LOOKUP_CACHE_LIMIT = 4096

# PBS exit codes (docs/reference/pbs-facts.md "Command results").
EXIT_UNKNOWN_JOB = 153
EXIT_JOB_FINISHED = 35
EXIT_USAGE = 2
QSUB_REJECTION_CODES = frozenset({166, 170, 173, 174, 187, 188, 206})
# qsub's own words for a script or request the scheduler refuses (OpenPBS, Torque, and
# sbatch behind Slurm's wrapper). Anything else failing is the service's problem (502).
QSUB_REJECTION_TEXT = (
    "unknown queue", "unknown resource", "illegal attribute or resource value",
    "violates queue and/or server resource limits", "queue is not enabled",
    "access to queue is denied", "invalid job dependency", "directive error",
    "script contains cr, lf", "job name is too long", "illegal -n value",
    "cannot be used with select or place", "invalid option", "requires an argument",
    "batch job submission failed", "sbatch: error",
)
UNAVAILABLE_TEXT = (
    "cannot connect to server", "problem loading", "unable to contact slurm controller",
    "connection refused", "communication failure", "no server specified",
)
NOT_FOUND_TEXT = ("unknown job id", "job has finished", "invalid job id", "already completing or completed")
DENIED_TEXT = ("unauthorized request", "access/permission denied", "permission denied")




@dataclass
class _Snapshot:
    """All jobs as one qstat run saw them (finished ones and subjobs included)."""

    jobs: dict[str, dict] = field(default_factory=dict)  # full id -> attributes
    by_short_id: dict[str, str] = field(default_factory=dict)  # "16[]" -> "16[].pbshost"

    @classmethod
    def build(cls, jobs: dict[str, dict]) -> _Snapshot:
        return cls(jobs, {short_job_id(full): full for full in jobs})

    def find(self, short_id: str) -> tuple[str, dict] | None:
        full = self.by_short_id.get(short_id)
        return (full, self.jobs[full]) if full is not None else None


@dataclass
class _Lookup:
    """The answer of one direct `qstat <id>`: the job, or None when it is gone."""

    taken_at: float
    ttl: float
    found: tuple[str, dict] | None

    def fresh(self, now: float) -> bool:
        return now - self.taken_at < self.ttl


class PbsAdapter(SchedulerAdapter):
    name = "pbs"
    # Jobs run as real accounts known on every node. PBS's queues are its own; the API
    # creates and deletes them too only where the site asks for it (manage_queues).
    capabilities = Capabilities(needs_posix_account=True)

    def __init__(self, bin_dir: str = "", timeout: float = 10.0, dialect: str = "auto",
                 cache_seconds: float = 2.0):
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._dialect: str | None = None if dialect == "auto" else dialect
        self._dialect_lock = threading.Lock()
        self._flights = SingleFlight()
        self._snapshot: BackgroundSnapshot[_Snapshot] = BackgroundSnapshot(self._query_all, cache_seconds)
        self._queues: tuple[float, list[str]] = (float("-inf"), [])
        self._lookups: dict[str, _Lookup] = {}
        self._lookups_lock = threading.Lock()

    # -- commands ---------------------------------------------------------------------
    def _command(self, name: str) -> str:
        """Absolute path of a PBS command: in bin_dir, or found on the service's PATH."""
        if self.bin_dir:
            return os.path.join(self.bin_dir, name)
        found = shutil.which(name)
        if found is None:
            raise SchedulerUnavailable(f"Scheduler command not found: {name}")
        return found

    def _environment(self, command: str, run_as: RunAs | None) -> dict[str, str]:
        # The command's own directory first: wrappers call their siblings (Slurm's qsub
        # runs sbatch from its own directory, OpenPBS tools call pbs_iff).
        path = os.path.dirname(command) + ":" + SAFE_PATH
        return clean_environment(run_as, path=path)

    def _run(self, name: str, args: list[str], *, cwd: str = "/", run_as: RunAs | None = None) -> CommandResult:
        """Run a PBS command as the service (or `run_as`), in an explicit directory (never
        the service's own: it may not exist or be readable for `run_as`)."""
        command = self._command(name)
        return run_command([command, *args], timeout=self.timeout, cwd=cwd, run_as=run_as,
                           env=self._environment(command, run_as))

    # -- dialect ----------------------------------------------------------------------
    @property
    def dialect(self) -> str:
        """"json" or "text"; detected once, on first use, when configured as "auto"."""
        if self._dialect is None:
            with self._dialect_lock:
                if self._dialect is None:
                    self._dialect = self._detect_dialect()
        return self._dialect

    def _detect_dialect(self) -> str:
        # OpenPBS / PBS Pro answer `pbs_version = 23.06.06`; Torque prints "Version: ..."
        # and Slurm's wrapper a usage error (exit 2). Neither of those has -F json.
        result = self._run("qstat", ["--version"])
        if result.ok and "pbs_version" in result.stdout:
            return "json"
        return "text"

    # -- snapshot ---------------------------------------------------------------------
    def invalidate(self) -> None:
        """A job changed: the next read starts a refresh and direct lookups are asked again."""
        self._snapshot.mark_stale()
        with self._lookups_lock:
            self._lookups.clear()

    def _snapshot_args(self) -> list[str]:
        # -x: finished jobs from the history (when the server keeps one); -t: array
        # subjobs. Slurm's wrapper and Torque know neither in this sense (Torque's -x is XML).
        return ["-x", "-t", "-f", "-F", "json"] if self.dialect == "json" else ["-f"]

    def _query_all(self) -> _Snapshot:
        """One qstat of every job."""
        result = self._run("qstat", self._snapshot_args())
        if not result.ok and not (result.returncode == EXIT_UNKNOWN_JOB and not result.stdout.strip()):
            # Slurm's wrapper exits 153 with no output when there are no jobs at all.
            raise _command_error("qstat", result)
        return _Snapshot.build(self._parse(result.stdout))

    def snapshot(self) -> list[JobInfo]:
        """Every job the server shows, finished ones and subjobs included, from one qstat
        run now (the reconciler's input); this process's readers reuse it."""
        current = self._query_all()
        self._snapshot.put(current)
        return [job_info_from_attributes(full, attrs) for full, attrs in current.jobs.items()]

    @property
    def snapshot_loads(self) -> int:
        return self._snapshot.loads

    def _parse(self, text: str) -> dict[str, dict]:
        try:
            return parse_qstat_json(text) if self.dialect == "json" else parse_qstat_text(text)
        except QstatParseError as exc:
            raise SchedulerError("The scheduler returned an unreadable job list", detail=str(exc)) from exc

    # -- read -------------------------------------------------------------------------
    def info(self, job_id: str) -> JobInfo:
        short_id = api_short_id(job_id)
        found = self._snapshot.get().find(short_id)
        if found is None:
            found = self._lookup(short_id)
        return job_info_from_attributes(*found)

    def query(self, job_id: str) -> JobInfo | None:
        """One job asked for directly (shared by concurrent callers, remembered briefly)."""
        try:
            found = self._lookup(api_short_id(job_id))
        except JobNotFound:
            return None
        return job_info_from_attributes(*found)

    def info_all(self, owner: str | None = None) -> list[JobInfo]:
        """Plain jobs and array parents, like qstat without -t."""
        jobs = self._snapshot.get().jobs
        return [job_info_from_attributes(full_id, attrs) for full_id, attrs in jobs.items()
                if not is_subjob(short_job_id(full_id)) and (owner is None or owner_of(attrs) == owner)]

    def _lookup(self, short_id: str) -> tuple[str, dict]:
        """A job absent from the snapshot: one direct query (shared by concurrent
        callers, and remembered) to tell a new or finished job from an unknown one."""
        cached = self._cached_lookup(short_id)
        if cached is None:
            cached = self._flights.run("job:" + short_id, lambda: self._query_job(short_id))
        if cached.found is None:
            raise JobNotFound(JOB_GONE)
        return cached.found

    def _cached_lookup(self, short_id: str) -> _Lookup | None:
        with self._lookups_lock:
            cached = self._lookups.get(short_id)
        return cached if cached is not None and cached.fresh(time.monotonic()) else None

    def _query_job(self, short_id: str) -> _Lookup:
        cached = self._cached_lookup(short_id)
        if cached is not None:  # answered by the flight that just ended
            return cached
        found = self._query_one(short_id)
        finished = found is not None and found[1].get("job_state") in ("F", "C")
        ttl = FINISHED_TTL_SECONDS if finished else self.cache_seconds
        lookup = _Lookup(time.monotonic(), ttl, found)
        with self._lookups_lock:
            if len(self._lookups) >= LOOKUP_CACHE_LIMIT:
                now = time.monotonic()
                self._lookups = {k: v for k, v in self._lookups.items() if v.fresh(now)}
            self._lookups[short_id] = lookup
        return lookup

    def _query_one(self, short_id: str, history: bool = False) -> tuple[str, dict] | None:
        # One id per call: recent OpenPBS answers only the first of several ids. With -x
        # one call answers for a queued, running or finished job alike (qstat sleeps
        # 200 ms on a second call in the same second).
        if self.dialect == "json":
            args = ["-x", "-f", "-F", "json", short_id]
        else:
            args = ["-x", "-f", short_id] if history else ["-f", short_id]
        result = self._run("qstat", args)
        if result.ok:
            jobs = self._parse(result.stdout)
            return next(((full, attrs) for full, attrs in jobs.items() if short_job_id(full) == short_id), None)
        error = _command_error("qstat", result)
        if not isinstance(error, JobNotFound):
            raise error
        if not history and self.dialect == "text" and _says_finished(result):
            # OpenPBS text: "Job has finished, use -x" (Torque never says so: its -x is XML).
            return self._query_one(short_id, history=True)
        return None

    # -- act --------------------------------------------------------------------------
    def delete(self, job_id: str) -> None:
        self._job_command("qdel", job_id)

    def hold(self, job_id: str) -> None:
        self._job_command("qhold", job_id)

    def release(self, job_id: str) -> None:
        self._job_command("qrls", job_id)

    def _job_command(self, name: str, job_id: str) -> None:
        result = self._run(name, [api_short_id(job_id)])
        if not result.ok:
            if name == "qdel" and not result.stdout.strip() and not result.stderr.strip():
                # Slurm's wrapper: a finished or unknown job is a silent exit 1.
                raise JobNotFound(JOB_GONE)
            raise _command_error(name, result)
        self.invalidate()  # the job's state changed: the next read must see it

    # -- queues -----------------------------------------------------------------------
    def _fresh(self, taken_at: float) -> bool:
        return time.monotonic() - taken_at < self.cache_seconds

    def queues(self) -> list[str]:
        taken_at, names = self._queues
        if self._fresh(taken_at):
            return list(names)
        return list(self._flights.run("queues", self._refresh_queues))

    def _refresh_queues(self) -> list[str]:
        taken_at, names = self._queues
        if self._fresh(taken_at):
            return names
        result = self._run("qstat", ["-Q"])
        if result.ok:
            names = parse_qstat_queues(result.stdout)
        elif result.returncode == EXIT_USAGE:
            # No `qstat -Q` here: the queues the current jobs sit in are the best we know.
            jobs = self._snapshot.get().jobs.values()
            names = sorted({str(attrs["queue"]) for attrs in jobs if attrs.get("queue")})
        else:
            raise _command_error("qstat", result)
        self._queues = (time.monotonic(), names)
        return names

    # -- submit -----------------------------------------------------------------------
    def submit(self, request: JobRequest, context: SubmitContext) -> str:
        run_as = _run_as(context)
        job_dir = os.path.normpath(context.job_dir)
        script_name = script_file_name(request.name)
        owner = (context.run_as_uid, _gid(context)) if context.run_as_uid is not None else None
        dir_fd = jobfiles.open_or_create_job_dir(job_dir, owner)
        try:
            # The job folder is new for every job: anything already at the script's name
            # (a link the user planted) makes the write fail instead of following it.
            jobfiles.write_new_file(dir_fd, script_name, request.script, owner, 0o600)
        finally:
            os.close(dir_fd)
        # A relative script path: Slurm's qsub wrapper pastes it into a shell command line.
        options = added_options(request, openpbs=self.dialect == "json")
        result = self._run("qsub", [*options, script_name], cwd=job_dir, run_as=run_as)
        if not result.ok:
            raise _qsub_error(result)
        return parse_qsub_output(result.stdout)

    # -- queue management (SOCA_PBS_MANAGE_QUEUES) ------------------------------------
    def manage_queues(self, enabled: bool = True) -> None:
        """Whether creating and deleting a queue through the API also does so in PBS (qmgr)."""
        self.capabilities = replace(self.capabilities, manages_queues=enabled)

    def apply_queue(self, name: str) -> None:
        if self.capabilities.manages_queues:
            qmgr.create_queue(self._run, name, self.known_queues())
            self._queues = (float("-inf"), [])  # the next listing asks PBS again

    def remove_queue(self, name: str) -> None:
        if self.capabilities.manages_queues:
            qmgr.delete_queue(self._run, name, self.known_queues())
            self._queues = (float("-inf"), [])


# -- helpers --------------------------------------------------------------------------------

def _run_as(context: SubmitContext) -> RunAs | None:
    if context.run_as_uid is None:
        return None
    gid = context.run_as_gid if context.run_as_gid is not None else context.run_as_uid
    return RunAs(user=context.user, uid=context.run_as_uid, gid=gid,
                 groups=tuple(context.run_as_groups), home=context.home or context.job_dir)


def _gid(context: SubmitContext) -> int:
    return context.run_as_gid if context.run_as_gid is not None else context.run_as_uid  # type: ignore[return-value]


def _first_line(result: CommandResult) -> str:
    """qsub's own first error line (trimmed), for the client to read beside our message."""
    for line in result.stderr.splitlines():
        if line.strip():
            return line.strip()[:DETAIL_LIMIT]
    # Slurm's qsub wrapper reports sbatch's failure on stdout, after the command it ran
    # (never show that command line: it holds paths; sbatch's own words are enough).
    for line in result.stdout.splitlines():
        if "sbatch: error" in line or "sbatch: invalid" in line:
            return line.strip().strip("'")[:DETAIL_LIMIT]
    return ""


def _contains(result: CommandResult, needles: tuple[str, ...]) -> bool:
    text = (result.stderr + "\n" + result.stdout).lower()
    return any(needle in text for needle in needles)


def _qsub_error(result: CommandResult) -> SchedulerError:
    detail = _first_line(result)
    if _contains(result, UNAVAILABLE_TEXT):
        return SchedulerUnavailable("The scheduler is not reachable", detail=detail or None)
    if result.returncode in QSUB_REJECTION_CODES or _contains(result, QSUB_REJECTION_TEXT):
        return JobRejected(SUBMIT_REJECTED, detail=detail or None)
    return SchedulerError(f"qsub failed unexpectedly (exit {result.returncode})", detail=detail or None)


def _says_finished(result: CommandResult) -> bool:
    return result.returncode == EXIT_JOB_FINISHED or "job has finished" in result.stderr.lower()


def _command_error(name: str, result: CommandResult) -> SchedulerError:
    """qstat / qdel / qhold / qrls failures -> the SchedulerError family."""
    detail = _first_line(result) or None
    if _contains(result, UNAVAILABLE_TEXT):
        return SchedulerUnavailable("The scheduler is not reachable", detail=detail)
    if result.returncode in (EXIT_UNKNOWN_JOB, EXIT_JOB_FINISHED) or _contains(result, NOT_FOUND_TEXT):
        return JobNotFound(JOB_GONE)
    if _contains(result, DENIED_TEXT):
        return PermissionDenied("You are not the owner of this resource")
    return SchedulerError(f"{name} failed unexpectedly (exit {result.returncode})", detail=detail)
