"""Starting one local job: its script and node file in the spool, its environment, its
output files opened as its account, and its process (sandboxed when the service is not
root). The runner (runner.py) decides when; this module only does it, in the runner's
process: it briefly takes the job account's identity (seteuid, process-wide) to open the
output files, which is why the runner stays single-threaded.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from typing import NamedTuple

from soca_api.models import Job
from soca_api.schedulers import job_accounts, jobfiles
from soca_api.schedulers.commands import SAFE_PATH, RunAs
from soca_api.schedulers.job_accounts import IdentityRefused, JobIdentity
from soca_api.schedulers.local import BACKEND, LocalAdapter, sandbox


class JobLauncher:
    def __init__(self, *, data_dir: str, spool: str, host: str, use_sandbox: bool,
                 hidden_paths: Callable[[], list[str]]):
        self.data_dir = data_dir
        self.spool = spool
        self.host = host
        self.use_sandbox = use_sandbox
        self.hidden_paths = hidden_paths  # folders of the service no sandboxed job may see

    def launch(self, job: Job) -> tuple[subprocess.Popen, list[str]]:
        """Start the claimed job as its account: its process and the spool files to remove
        when it ends. Raises when it cannot start (start_failure says why)."""
        placed = _placement(job)
        ident = job_accounts.resolve(
            job.owner, self.data_dir, needs_posix_account=LocalAdapter.capabilities.needs_posix_account,
            scheduler_label=BACKEND)  # the uid the submission recorded: never a new one
        run_as = ident.run_as
        script_path = os.path.join(self.spool, f"{job.id}.SC")
        nodes_path = os.path.join(self.spool, f"{job.id}.nodes")
        self._write_private(script_path, job.script, 0o500, run_as)
        self._write_private(nodes_path, "".join(f"{self.host}\n" for _ in range(job.ncpus)), 0o400, run_as)
        env = self.job_environment(job, run_as, nodes_path)
        if self.use_sandbox:
            env["HOME"] = env["PBS_O_HOME"] = placed.job_dir  # the only folder the job sees
        with self._identity(run_as):
            stdout_fd = self._open_output(placed.job_dir, ident, placed.output_path)
            try:
                stderr_fd = (stdout_fd if placed.error_path == placed.output_path
                             else self._open_output(placed.job_dir, ident, placed.error_path))
            except BaseException:
                os.close(stdout_fd)
                raise
        args = self.command(job, script_path)
        if self.use_sandbox:
            args = sandbox.bwrap_command(args, job_dir=placed.job_dir, read_only_files=[script_path, nodes_path],
                                         hidden=self.hidden_paths())
        try:
            # user/group/extra_groups None (Popen's defaults): the service's own identity.
            process = subprocess.Popen(
                args, cwd=placed.job_dir, env=env, stdin=subprocess.DEVNULL, stdout=stdout_fd, stderr=stderr_fd,
                start_new_session=True, close_fds=True, user=run_as.uid if run_as is not None else None,
                group=run_as.gid if run_as is not None else None,
                extra_groups=list(run_as.groups) if run_as is not None else None)
        except OSError as exc:
            raise JobStartError(f"cannot run {args[0]} in {placed.job_dir}: {exc.strerror or exc}") from exc
        finally:
            os.close(stdout_fd)
            if stderr_fd != stdout_fd:
                os.close(stderr_fd)
        return process, [script_path, nodes_path]

    @staticmethod
    def command(job: Job, script_path: str) -> list[str]:
        shell = (job.request or {}).get("shell")
        if shell:
            return [shell, script_path]
        if job.script.startswith("#!"):
            return [script_path]  # the kernel honours the script's own interpreter line
        return ["/bin/sh", script_path]

    def job_environment(self, job: Job, run_as: RunAs | None, nodes_path: str) -> dict[str, str]:
        """What PBS gives a job, plus its -v variables; never the service's own environment."""
        placed = _placement(job)
        request = job.request or {}
        home = run_as.home if run_as is not None else (request.get("home") or placed.job_dir)
        user = run_as.user if run_as is not None and run_as.user == job.owner else job.owner
        env = {
            "PATH": SAFE_PATH,
            "HOME": home,
            "USER": user,
            "LOGNAME": user,
            "SHELL": request.get("shell") or "/bin/sh",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "PBS_ENVIRONMENT": "PBS_BATCH",
            "PBS_JOBID": placed.scheduler_id,
            "PBS_JOBNAME": job.name,
            "PBS_JOBDIR": placed.job_dir,
            "PBS_QUEUE": job.queue,
            "PBS_O_QUEUE": job.queue,
            "PBS_O_WORKDIR": placed.job_dir,
            "PBS_O_LOGNAME": job.owner,
            "PBS_O_HOME": home,
            "PBS_O_HOST": self.host,
            "PBS_O_PATH": SAFE_PATH,
            "PBS_O_SHELL": request.get("shell") or "/bin/sh",
            "PBS_O_SYSTEM": "Linux",
            "PBS_NODEFILE": nodes_path,
            "PBS_TASKNUM": "1",
            "NCPUS": str(job.ncpus),
            "OMP_NUM_THREADS": str(job.ncpus),
        }
        if job.parent_id is not None and job.array_index is not None:
            env["PBS_ARRAY_INDEX"] = str(job.array_index)
            env["PBS_ARRAY_ID"] = placed.scheduler_id.split("[", 1)[0] + "[]"
        if request.get("project"):
            env["PBS_O_PROJECT"] = str(request["project"])
        env.update({str(k): str(v) for k, v in (request.get("variables") or {}).items()})
        return env

    # -- identity and files -----------------------------------------------------------
    @contextlib.contextmanager
    def _identity(self, run_as: RunAs | None):
        if run_as is None or os.geteuid() != 0:
            yield
            return
        saved_groups = os.getgroups()
        os.setgroups(list(run_as.groups))
        os.setegid(run_as.gid)
        os.seteuid(run_as.uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(saved_groups)

    @staticmethod
    def _open_output(job_dir: str, ident: JobIdentity, path: str) -> int:
        """The job's stdout/stderr, opened as its account. Inside the job folder no link is
        followed at any step: the job itself may have planted one there on an earlier run."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            if ident.confined or path.startswith(job_dir.rstrip("/") + "/"):
                owner_uid = ident.run_as.uid if ident.run_as is not None else None
                return jobfiles.open_in_job_dir(job_dir, path, flags, 0o600, owner_uid=owner_uid)
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except jobfiles.JobFileError as exc:
            raise JobStartError(f"cannot open {path}: {exc.message}") from exc
        except OSError as exc:
            raise JobStartError(f"cannot open {path} as {ident.run_as.user if ident.run_as else 'the service'}: "
                                f"{exc.strerror or exc}") from exc

    @staticmethod
    def _write_private(path: str, text: str, mode: int, run_as: RunAs | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise JobStartError(f"cannot write {path}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            if run_as is not None and os.geteuid() == 0:
                os.fchown(handle.fileno(), run_as.uid, run_as.gid)
            os.fchmod(handle.fileno(), mode)


class JobStartError(Exception):
    """A job cannot start; the message names the path and why (it becomes the job's comment)."""


class _Placement(NamedTuple):
    """What the service gives every local job row when it queues it."""

    scheduler_id: str
    job_dir: str
    output_path: str
    error_path: str


def _placement(job: Job) -> _Placement:
    if job.scheduler_id is None or job.job_dir is None or job.output_path is None or job.error_path is None:
        raise JobStartError(f"job row {job.id} has no scheduler id, job folder or output paths")
    return _Placement(job.scheduler_id, job.job_dir, job.output_path, job.error_path)


def start_failure(exc: Exception) -> str:
    """What the job's comment says when it could not start: which path, and why."""
    if isinstance(exc, (JobStartError, IdentityRefused, jobfiles.JobFileError)):
        return str(exc)[:500]
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    return type(exc).__name__

