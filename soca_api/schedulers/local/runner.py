"""The local runner: the one process that starts, watches and kills local jobs.

Exactly one runner works on a data folder at a time (an exclusive flock); a second one
waits as a hot standby. It claims a queued row with a conditional UPDATE before it
starts the job, so a row is never run twice. On start (or when it takes over) it kills
what a dead runner left behind and requeues rerunable jobs.

It must stay single-threaded: it briefly takes the job owner's identity (seteuid) to
open output files, as PBS's MOM does, so that root never writes where the user cannot.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from soca_api.extensions import db
from soca_api.models import Job, utcnow
from soca_api.schedulers.local import BACKEND, blocked_path, heartbeat_path, sandbox, wake_path
from soca_api.schedulers.local.launch import JobLauncher, start_failure
from soca_api.schedulers.values import (
    EXIT_ABORTED_ON_RESTART,
    EXIT_KILLED_BY_SIGNAL_BASE,
    EXIT_WALLTIME,
    SUBSTATES,
)

log = logging.getLogger("soca_api.runner")

EXIT_START_FAILED = -1  # PBS JOB_EXEC_FAIL1: the job could not be started
SUBSTATE_RUNNING = 42
SUBSTATE_FINISHED = 92


@dataclass
class RunningJob:
    job_id: int
    scheduler_id: str
    process: subprocess.Popen
    ncpus: int
    started: float  # monotonic
    walltime: int | None
    files: list[str] = field(default_factory=list)  # spool files to remove at the end
    kill_reason: str | None = None  # "delete" or "walltime"
    kill_deadline: float | None = None  # when SIGKILL follows SIGTERM


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): guards against pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read().decode(errors="replace")
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[19]


def exit_status_from_returncode(returncode: int) -> int:
    """PBS convention: the exit code, or 256+N for a job killed by signal N."""
    return returncode if returncode >= 0 else EXIT_KILLED_BY_SIGNAL_BASE - returncode


class Runner:
    def __init__(self, app, *, cpus: int, poll_seconds: float = 0.05, kill_delay: float = 5.0):
        self.app = app
        self.cpus = max(1, cpus)
        self.poll_seconds = poll_seconds
        self.kill_delay = kill_delay
        self.data_dir = app.config["SOCA_DATA_DIR"]
        self.spool = os.path.join(self.data_dir, "spool")
        self.host = socket.gethostname()
        self.running: dict[int, RunningJob] = {}
        self.stopping = False
        self._lock_fd: int | None = None
        self._last_beat = 0.0
        self._last_full_pass = 0.0
        self._last_wake: float | None = None
        # Without a wake-up (API on another host, start times, dependencies) a full pass
        # still runs this often.
        self.full_pass_seconds = 1.0
        self.use_sandbox = sandbox.sandbox_wanted(app.config["SOCA_LOCAL_SANDBOX"])
        # Why no job may start now (sandbox or data folder unusable), or None.
        self.blocked: str | None = None
        self._last_check = 0.0
        self.check_seconds = 10.0
        self.launcher = JobLauncher(data_dir=self.data_dir, spool=self.spool, host=self.host,
                                    use_sandbox=self.use_sandbox, hidden_paths=self.hidden_paths)

    # -- life cycle -------------------------------------------------------------------
    def acquire_lock(self, wait: bool = True) -> bool:
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.data_dir, "runner.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not wait or self.stopping:
                    return False
                time.sleep(0.5)  # hot standby: take over when the active runner dies

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        if not self.acquire_lock():
            return
        os.makedirs(self.spool, exist_ok=True)
        with self.app.app_context():
            self.check_ready()
            self.recover()
            log.info("local runner started with %d cpus", self.cpus)
            while not self.stopping:
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:  # keep running: one bad row must not stop every job
                    log.exception("runner tick failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
                time.sleep(max(0.0, self.poll_seconds - (time.monotonic() - started)))
            self.shutdown()

    def _request_stop(self, _signum, _frame) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Leave nothing behind: kill running jobs and requeue the rerunable ones."""
        for job in list(self.running.values()):
            self._kill_group(job.process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                job.process.wait(timeout=5)
        self.running.clear()
        self.recover()

    def recover(self) -> None:
        """Jobs a previous runner left in R or E: kill any survivor, requeue or fail them."""
        rows = db.session.execute(
            sa.select(Job).where(Job.backend == BACKEND, Job.state.in_(("R", "E")),
                                 Job.scheduler_id.not_like("%[]"))
        ).scalars().all()
        now = utcnow()
        for job in rows:
            if job.pid and job.proc_start and proc_start_time(job.pid) == job.proc_start:
                self._kill_group(job.pid, signal.SIGKILL)
            job.pid, job.proc_start, job.modified_at = None, None, now
            if job.rerunable and not job.delete_requested:
                job.state, job.substate, job.started_at, job.exec_host = "Q", SUBSTATES["Q"], None, None
                job.comment = "Requeued: the local runner restarted while the job ran"
            else:
                job.state, job.substate, job.finished_at = "F", SUBSTATE_FINISHED, now
                job.exit_status = EXIT_ABORTED_ON_RESTART
                job.comment = "Aborted: the local runner restarted while the job ran (not rerunable)"
        db.session.commit()
        self.update_array_parents()

    # -- one pass ---------------------------------------------------------------------
    def tick(self) -> None:
        """Cheap when idle: the database is read only when woken, when a job ended, or
        once every full_pass_seconds."""
        self.beat()
        finished = self.reap()
        self.enforce_walltime()
        now = time.monotonic()
        if not (finished or self._woken() or now - self._last_full_pass >= self.full_pass_seconds):
            return
        self._last_full_pass = now
        self.enforce_deletions()
        changed = self.resolve_waiting() or finished
        if changed:
            self.update_array_parents()
        self.start_queued()

    # -- start-up checks ---------------------------------------------------------------
    def hidden_paths(self) -> list[str]:
        """Folders of the service no sandboxed job may see."""
        paths = [self.data_dir]
        uri = self.app.config.get("SQLALCHEMY_DATABASE_URI", "")
        if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
            paths.append(os.path.dirname(uri.removeprefix("sqlite:///").split("?", 1)[0]))
        home = os.path.expanduser("~")
        if home not in ("/", ""):
            paths.append(home)
        return paths

    def check_ready(self) -> None:
        """Whether jobs can start here; the reason goes to the log, /api/health (through
        runner.blocked) and the comment of every job left waiting."""
        self._last_check = time.monotonic()
        try:
            problem = sandbox.secure_data_dir(self.data_dir, os.geteuid() == 0, log)
            if problem is None and self.use_sandbox:
                problem = sandbox.probe(self.hidden_paths(), os.path.join(self.spool, "sandbox-probe"))
        except OSError as exc:
            problem = f"the data folder {self.data_dir} cannot be checked: {exc}"
        if problem != self.blocked:
            if problem:
                log.error("local runner cannot start jobs: %s", problem)
            elif self.blocked:
                log.info("local runner can start jobs again")
        self.blocked = problem
        path = blocked_path(self.data_dir)
        if problem:
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(problem)
            os.replace(path + ".new", path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _woken(self) -> bool:
        try:
            mtime = os.stat(wake_path(self.data_dir)).st_mtime
        except FileNotFoundError:
            return False
        woken = mtime != self._last_wake
        self._last_wake = mtime
        return woken

    def beat(self) -> None:
        now = time.time()
        if now - self._last_beat >= 1.0:
            path = heartbeat_path(self.data_dir)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            os.utime(path)
            self._last_beat = now

    def reap(self) -> bool:
        finished = False
        for job in list(self.running.values()):
            returncode = job.process.poll()
            if returncode is None:
                continue
            # The job's session ends with its script: nothing it started may outlive it.
            self._kill_group(job.process.pid, signal.SIGKILL)
            if job.kill_reason == "walltime":
                exit_status, comment = EXIT_WALLTIME, "Job exceeded its walltime and was killed"
            else:
                exit_status = exit_status_from_returncode(returncode)
                comment = "Job deleted by request" if job.kill_reason == "delete" else "Job run at " + self.host
            now = utcnow()
            db.session.execute(
                sa.update(Job).where(Job.id == job.job_id).values(
                    state="F", substate=SUBSTATE_FINISHED, exit_status=exit_status, finished_at=now,
                    modified_at=now, pid=None, proc_start=None, comment=comment)
            )
            db.session.commit()
            for path in job.files:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            del self.running[job.job_id]
            finished = True
        return finished

    def enforce_deletions(self) -> None:
        """Jobs deleted through the API: SIGTERM their process group."""
        if not self.running:
            return
        wanted = set(db.session.execute(
            sa.select(Job.id).where(Job.id.in_(list(self.running)), Job.delete_requested.is_(True))
        ).scalars())
        for job in self.running.values():
            if job.kill_reason is None and job.job_id in wanted:
                self._terminate(job, "delete")

    def enforce_walltime(self) -> None:
        """Walltime over: SIGTERM; any kill: SIGKILL once the kill delay has passed."""
        now = time.monotonic()
        for job in self.running.values():
            if job.kill_reason is None and job.walltime is not None and now - job.started > job.walltime:
                self._terminate(job, "walltime")
            elif job.kill_deadline is not None and now >= job.kill_deadline:
                self._kill_group(job.process.pid, signal.SIGKILL)
                job.kill_deadline = None

    def _terminate(self, job: RunningJob, reason: str) -> None:
        job.kill_reason = reason
        self._kill_group(job.process.pid, signal.SIGTERM)
        job.kill_deadline = time.monotonic() + self.kill_delay
        db.session.execute(sa.update(Job).where(Job.id == job.job_id).values(
            state="E", substate=SUBSTATES["E"], modified_at=utcnow()))
        db.session.commit()

    def resolve_waiting(self) -> bool:
        """H jobs whose dependencies are met become Q; W jobs whose start time came, too."""
        changed = False
        now = utcnow()
        local_now = datetime.now()
        rows = db.session.execute(
            sa.select(Job).where(Job.backend == BACKEND, Job.state.in_(("H", "W")),
                                 Job.hold.is_(False), Job.deleted_at.is_(None))
        ).scalars().all()
        for job in rows:
            verdict = self._dependencies_verdict(job)
            if verdict == "never":
                job.state, job.substate, job.finished_at, job.modified_at = "F", SUBSTATE_FINISHED, now, now
                job.comment = "Job deleted: its dependency can never be satisfied"
                changed = True
            elif verdict == "met":
                new_state = "W" if job.start_after is not None and job.start_after > local_now else "Q"
                if new_state != job.state:
                    job.state, job.substate, job.modified_at = new_state, SUBSTATES[new_state], now
                    changed = True
        if changed:
            db.session.commit()
        else:
            db.session.rollback()
        return changed

    def _dependencies_verdict(self, job: Job) -> str:
        """'met', 'wait' or 'never' for the job's -W depend clauses."""
        # Subjobs carry their parent's request, so they wait on the same dependencies.
        dependencies = (job.request or {}).get("dependencies") or []
        for dependency in dependencies:
            for dep_id in dependency["ids"]:
                dep = db.session.execute(
                    sa.select(Job.state, Job.exit_status, Job.comment).where(
                        Job.backend == BACKEND, Job.scheduler_id == dep_id)
                ).first()
                if dep is None:
                    return "never"
                state, exit_status, _comment = dep
                kind = dependency["kind"]
                if kind == "after":
                    if state in ("Q", "H", "W"):
                        return "wait"
                    continue
                if state != "F":
                    return "wait"
                if kind == "afterok" and exit_status != 0:
                    return "never"
                if kind == "afternotok" and exit_status == 0:
                    return "never"
        return "met"

    def update_array_parents(self) -> None:
        """An array parent shows Q, H, B or F from its subjobs."""
        parents = db.session.execute(
            sa.select(Job).where(Job.backend == BACKEND, Job.scheduler_id.like("%[]"), Job.state != "F")
        ).scalars().all()
        now = utcnow()
        for parent in parents:
            children = db.session.execute(
                sa.select(Job.state, Job.exit_status, Job.finished_at).where(Job.parent_id == parent.id)
            ).all()
            states = {state for state, _status, _finished in children}
            if states == {"F"}:
                statuses = [status for _s, status, _f in children]
                parent.state, parent.substate = "F", SUBSTATE_FINISHED
                parent.exit_status = 0 if all(s == 0 for s in statuses) else 1
                parent.finished_at = max((f for _s, _e, f in children if f), default=now)
            elif states <= {"Q", "W"}:
                parent.state, parent.substate = "Q", SUBSTATES["Q"]
            elif states <= {"H"}:
                continue
            else:
                parent.state, parent.substate = "B", SUBSTATES["B"]
                parent.started_at = parent.started_at or now
            parent.modified_at = now
        db.session.commit()

    def start_queued(self) -> None:
        if self.blocked and time.monotonic() - self._last_check >= self.check_seconds:
            self.check_ready()  # an admin may have fixed it meanwhile
        free = self.cpus - sum(job.ncpus for job in self.running.values())
        if free <= 0:
            return
        rows = db.session.execute(
            sa.select(Job).where(Job.backend == BACKEND, Job.state == "Q", Job.deleted_at.is_(None),
                                 Job.scheduler_id.not_like("%[]"))
            .order_by(Job.id).limit(64)
        ).scalars().all()
        for job in rows:
            if self.blocked:
                note = f"Not Running: the local runner cannot start jobs: {self.blocked}"
                if job.comment != note:
                    job.comment = note
                    db.session.commit()
                continue
            if job.ncpus > self.cpus:
                note = f"Not Running: the job asks for {job.ncpus} cpus, this host has {self.cpus}"
                if job.comment != note:
                    job.comment = note
                    db.session.commit()
                continue
            if job.ncpus > free:
                break  # first come, first served: no small job overtakes a waiting big one
            if self.start(job):
                free -= job.ncpus
        db.session.rollback()

    # -- starting a job ---------------------------------------------------------------
    def start(self, job: Job) -> bool:
        now = utcnow()
        result = db.session.execute(
            sa.update(Job).where(Job.id == job.id, Job.state == "Q", Job.delete_requested.is_(False))
            .values(state="R", substate=SUBSTATE_RUNNING, started_at=now, modified_at=now,
                    run_count=Job.run_count + 1, exec_host=f"{self.host}/0*{job.ncpus}", comment=None)
        )
        assert isinstance(result, CursorResult)  # an UPDATE's result, which counts its rows
        claimed = result.rowcount
        db.session.commit()
        if claimed != 1:
            return False
        db.session.refresh(job)
        try:
            running = self.launch(job)
        except Exception as exc:  # a job that cannot start finishes at once, with the reason
            log.warning("job %s could not start: %s", job.scheduler_id, exc)
            db.session.execute(sa.update(Job).where(Job.id == job.id).values(
                state="F", substate=SUBSTATE_FINISHED, exit_status=EXIT_START_FAILED, finished_at=utcnow(),
                modified_at=utcnow(), comment=f"Job could not start: {start_failure(exc)}"))
            db.session.commit()
            return False
        self.running[job.id] = running
        db.session.execute(sa.update(Job).where(Job.id == job.id).values(
            pid=running.process.pid, proc_start=proc_start_time(running.process.pid)))
        db.session.commit()
        return True

    def launch(self, job: Job) -> RunningJob:
        process, files = self.launcher.launch(job)
        assert job.scheduler_id is not None  # launch() refuses a row without one
        return RunningJob(job.id, job.scheduler_id, process, job.ncpus, time.monotonic(), job.walltime_seconds,
                          files=files)

    @staticmethod
    def _kill_group(pgid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def exit_with_parent() -> None:
    """Linux: end this runner with SIGTERM when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

