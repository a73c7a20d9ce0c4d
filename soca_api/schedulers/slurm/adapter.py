"""The Slurm adapter: PBS job requests run through sbatch, answers read back in PBS terms.

Slurm 22.05 facts this module is written against (docs/slurm-translation.md, captured
outputs in tests/fixtures/slurm/):

- sbatch reads `#PBS` lines itself and refuses the ones it does not know, so every
  directive is translated (translate.py) and sbatch always gets `--ignore-pbs`.
- `scontrol show job <id>` (text, about 4 ms) is the per-job query. `squeue --json`
  ignores its filters and returns the whole queue, so it runs at most once per
  `cache_seconds` for all callers together.
- `scancel` exits 0 even for unknown or finished jobs and says so only with `-v`.
- An array submitted as 123 has tasks `123_N` (PBS `123[N]`), grouped back into the
  one "123[]" qstat shows (arrays.py).
"""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import threading
import time

from soca_api.schedulers import jobfiles
from soca_api.schedulers.base import Capabilities, SchedulerAdapter
from soca_api.schedulers.commands import CommandResult, RunAs, clean_environment, run_command
from soca_api.schedulers.errors import (
    JobNotFound,
    JobRejected,
    PermissionDenied,
    QueueRejected,
    SchedulerError,
    SchedulerTimeout,
    SchedulerUnavailable,
)
from soca_api.schedulers.slurm.arrays import array_job_id, array_parent, group_arrays
from soca_api.schedulers.slurm.ids import slurm_job_id, split_job_id
from soca_api.schedulers.slurm.parsers import (
    job_info_from_scontrol,
    job_infos_from_squeue_json,
    parse_scontrol_jobs,
)
from soca_api.schedulers.slurm.translate import INSTANCE_TYPE_MODES, TranslationError, sbatch_arguments
from soca_api.schedulers.snapshot import BackgroundSnapshot, SingleFlight
from soca_api.schedulers.values import JobInfo, JobRequest, SubmitContext

SUBMIT_REJECTED = (
    "Unable to submit the job. Please verify your script file (eg: malformed inputs, syntax "
    "error, extra space in the PBS variables ...) or refer to the 'stderr' message."
)
JOB_NOT_FOUND = "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"
QUEUE_CACHE_SECONDS = 60.0


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
    with contextlib.suppress(KeyError):
        entry = pwd.getpwuid(context.run_as_uid)
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
        _, index = split_job_id(job_id)
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
        _, index = split_job_id(job_id)
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
