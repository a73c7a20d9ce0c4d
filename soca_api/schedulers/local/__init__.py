"""The embedded local scheduler: jobs queue in the database, one runner executes them.

This adapter is the API's side: it queues, reads, deletes, holds and releases job rows.
The runner (`soca_api.schedulers.local.runner`) is the only place that starts or kills
processes; the two meet only through the database, with conditional UPDATEs so that a
row is never claimed twice.
"""
from __future__ import annotations

import os
import time
from datetime import datetime

import sqlalchemy as sa

from soca_api.extensions import db
from soca_api.models import Job, Queue, utcnow
from soca_api.schedulers.base import Capabilities, SchedulerAdapter
from soca_api.schedulers.errors import JobNotFound
from soca_api.schedulers.records import record_info
from soca_api.schedulers.values import (
    EXIT_KILLED_BY_SIGNAL_BASE,
    SUBSTATE_DELETED,
    SUBSTATES,
    JobInfo,
    JobRequest,
    SubmitContext,
)

BACKEND = "local"
SIGTERM = 15
WAITING_STATES = ("Q", "H", "W")


def subjob_path(path: str | None, index: int) -> str | None:
    """PBS names subjob files with ^array_index^ where given, else `<file>.<index>`."""
    if path is None:
        return None
    if "^array_index^" in path:
        return path.replace("^array_index^", str(index))
    return f"{path}.{index}"


class LocalAdapter(SchedulerAdapter):
    name = BACKEND
    # The job rows are the queue and the queue rows the queues; a user without a POSIX
    # account of its own gets a dedicated uid on this host.
    capabilities = Capabilities(rows_are_queue=True)

    def __init__(self, data_dir: str, heartbeat_seconds: float = 10.0):
        self.data_dir = data_dir
        self.heartbeat_seconds = heartbeat_seconds

    # -- submit -----------------------------------------------------------------------
    def submit(self, request: JobRequest, context: SubmitContext) -> str:
        """Turn the service's pending row into queued work (committed by the caller)."""
        job = db.session.get(Job, context.record_id) if context.record_id is not None else None
        if job is None:  # the service creates the row before it calls any adapter
            raise RuntimeError(f"The local scheduler queues the service's own job row; "
                               f"row {context.record_id} does not exist")
        job.state = self.initial_state(request)
        job.substate = SUBSTATES[job.state]
        if request.array is None:
            job.scheduler_id = str(job.id)
            return job.scheduler_id
        job.scheduler_id = f"{job.id}[]"
        for index in request.array.indices:
            db.session.add(Job(
                backend=BACKEND, scheduler_id=f"{job.id}[{index}]", owner=job.owner, name=job.name,
                queue=job.queue, state=job.state, substate=job.substate, script=job.script,
                request=job.request, job_dir=job.job_dir, output_path=subjob_path(job.output_path, index),
                error_path=subjob_path(job.error_path, index), ncpus=job.ncpus, nodes=job.nodes,
                walltime_seconds=job.walltime_seconds, rerunable=job.rerunable, hold=job.hold,
                start_after=job.start_after, parent_id=job.id, array_index=index,
            ))
        return job.scheduler_id

    @staticmethod
    def initial_state(request: JobRequest) -> str:
        if request.hold or request.dependencies:
            return "H"  # a dependency not yet met shows as H, as in PBS
        if request.start_after is not None and request.start_after > datetime.now():
            return "W"
        return "Q"

    # -- read -------------------------------------------------------------------------
    def _row(self, job_id: str) -> Job:
        job = db.session.execute(
            sa.select(Job).where(Job.backend == BACKEND, Job.scheduler_id == job_id, Job.deleted_at.is_(None))
        ).scalar_one_or_none()
        if job is None:
            raise JobNotFound("Unable to retrieve Job ID (job may have terminated and is no longer in the queue)")
        return job

    def info(self, job_id: str) -> JobInfo:
        return record_info(self._row(job_id))

    def info_all(self, owner: str | None = None) -> list[JobInfo]:
        query = sa.select(Job).where(Job.backend == BACKEND, Job.deleted_at.is_(None),
                                     Job.state.in_(("Q", "H", "W", "R", "E", "B")))
        if owner is not None:
            query = query.where(Job.owner == owner)
        return [record_info(job) for job in db.session.execute(query.order_by(Job.id)).scalars()]

    # -- change -----------------------------------------------------------------------
    def delete(self, job_id: str) -> None:
        """Remove from view at once; a running job is killed by the runner."""
        job = self._row(job_id)
        targets = [job.id]
        if job_id.endswith("[]"):  # `_row` matched scheduler_id == job_id
            targets += list(db.session.execute(sa.select(Job.id).where(Job.parent_id == job.id)).scalars())
        now = utcnow()
        # Waiting rows finish here; a row the runner has claimed meanwhile is left to it.
        db.session.execute(
            sa.update(Job)
            .where(Job.id.in_(targets), Job.state.in_(WAITING_STATES))
            .values(state="F", substate=SUBSTATE_DELETED, finished_at=now, modified_at=now,
                    exit_status=EXIT_KILLED_BY_SIGNAL_BASE + SIGTERM, comment="Job deleted by request")
        )
        db.session.execute(
            sa.update(Job).where(Job.id.in_(targets))
            .values(deleted_at=now, delete_requested=True, modified_at=now)
        )
        db.session.commit()
        self.wake_runner()

    def hold(self, job_id: str) -> None:
        self._set_hold(job_id, True)

    def release(self, job_id: str) -> None:
        self._set_hold(job_id, False)

    def _set_hold(self, job_id: str, hold: bool) -> None:
        job = self._row(job_id)
        ids = [job.id] + list(db.session.execute(sa.select(Job.id).where(Job.parent_id == job.id)).scalars())
        now = utcnow()
        from_states, to_state = (("Q", "W"), "H") if hold else (("H",), "Q")
        db.session.execute(sa.update(Job).where(Job.id.in_(ids)).values(hold=hold, modified_at=now))
        # Released jobs still waiting on a dependency are put back to H by the runner.
        db.session.execute(
            sa.update(Job).where(Job.id.in_(ids), Job.state.in_(from_states))
            .values(state=to_state, substate=SUBSTATES[to_state], modified_at=now)
        )
        db.session.commit()
        self.wake_runner()

    def queues(self) -> list[str]:
        names = list(db.session.execute(sa.select(Queue.name).order_by(Queue.name)).scalars())
        return names

    def rows_committed(self) -> None:
        self.wake_runner()

    def wake_runner(self) -> None:
        """Tell the runner (same host) that the queue changed, so it need not poll the database."""
        path = wake_path(self.data_dir)
        try:
            os.utime(path)
        except FileNotFoundError:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))

    def health(self) -> tuple[bool, str]:
        """Healthy while the runner has beaten within the last few seconds."""
        try:
            age = time.time() - os.stat(heartbeat_path(self.data_dir)).st_mtime
        except FileNotFoundError:
            return False, "the local runner is not running: queued jobs wait"
        if age > self.heartbeat_seconds:
            return False, f"the local runner has not answered for {int(age)} seconds"
        try:
            with open(blocked_path(self.data_dir), encoding="utf-8", errors="replace") as handle:
                return False, "the local runner cannot start jobs: " + handle.read(1000).strip()
        except FileNotFoundError:
            return True, "ok"


def heartbeat_path(data_dir: str) -> str:
    return os.path.join(data_dir, "runner.heartbeat")


def blocked_path(data_dir: str) -> str:
    """Written by the runner while it cannot start jobs: why (read by /api/health)."""
    return os.path.join(data_dir, "runner.blocked")


def wake_path(data_dir: str) -> str:
    return os.path.join(data_dir, "runner.wake")
