"""The reconciler: the scheduler (PBS, Slurm) is the source of truth for the job rows.

One reconciler runs per deployment, whatever the number of workers and API instances:
it holds a lease row in the database (`scheduler_leases`), renewed every pass; another
one waits as a standby and takes over when the lease expires. Every `interval` it takes
ONE snapshot of the scheduler (`qstat -x -t -f -F json`; `squeue --json`) and writes
what changed into the job rows: state, times, exit status, exec_host, comment, output
paths and the whole normalised record (`Job.scheduler_record`). Readers (GET, listings,
/job/final) answer from the rows without running a scheduler command.

It also:
- creates a row for each array subjob the scheduler shows ("12[3]"), owned by the
  array's owner, so subjobs are read, deleted and followed like any job;
- resolves orphan "T" rows (the service died between recording a job and qsub's answer)
  by the job folder, which is unique per row and which the scheduler reports back
  (PBS_O_WORKDIR, Slurm's working directory);
- marks as finished the rows of jobs the scheduler no longer knows (no history, or past
  it): the service's own observation is the fallback only then.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from soca_api.extensions import db
from soca_api.models import Job, SchedulerLease, utcnow
from soca_api.schedulers.errors import SchedulerError
from soca_api.schedulers.records import info_to_record
from soca_api.schedulers.values import SUBSTATE_DELETED, SUBSTATES, JobInfo

log = logging.getLogger("soca_api.reconciler")

PENDING_STATE = "T"
FINAL_SUBSTATES = 90  # PBS substates 91 (terminated), 92 (finished), 93 (failed) and up
FORGOTTEN_COMMENT = "Finished; the scheduler kept no history"
NEVER_SUBMITTED = "Never reached the scheduler (the service stopped before the scheduler answered)"
# Rows older than this are not revisited (the scheduler's history is shorter anyway).
HORIZON = timedelta(days=7)


def to_utc(moment: datetime | None) -> datetime | None:
    """A scheduler time (naive local, or aware) as the rows keep it: naive UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None)


def apply_info(row: Job, info: JobInfo, now: datetime) -> bool:
    """Write the scheduler's view of one job into its row; False when nothing changed."""
    stored = info_to_record(info)
    stored["owner"] = row.owner  # the row says whose job it is (fallback accounts)
    if row.scheduler_record == stored:
        return False
    row.scheduler_record = stored
    row.synced_at = now
    finished = info.is_finished
    if row.deleted_at is None or finished:
        row.state = "F" if finished else info.state
    row.substate = info.substate if info.substate is not None else (SUBSTATES["F"] if finished else None)
    row.exit_status = info.exit_status
    row.started_at = to_utc(info.started) or row.started_at
    if finished:
        row.finished_at = to_utc(info.finished) or row.finished_at or now
    elif row.deleted_at is None:
        row.finished_at = None  # requeued or rerun
    row.exec_host = (info.exec_host or "")[:255] or row.exec_host
    row.comment = info.comment
    if info.output_path:
        row.output_path = info.output_path
    if info.error_path:
        row.error_path = info.error_path
    row.modified_at = now
    return True


def _parent_id(api_id: str) -> str | None:
    if "[" not in api_id or api_id.endswith("[]"):
        return None
    return api_id.split("[", 1)[0] + "[]"


def _index(api_id: str) -> int | None:
    text = api_id.split("[", 1)[1].rstrip("]")
    return int(text) if text.isdigit() else None


def _leases() -> sa.Table:
    table = SchedulerLease.__table__
    assert isinstance(table, sa.Table)  # (typed as any FromClause) a plain mapped table
    return table


class Reconciler:
    def __init__(self, app, *, interval: float, lease_seconds: float, grace_seconds: float):
        self.app = app
        self.interval = max(0.2, interval)
        self.lease_seconds = max(lease_seconds, 3 * self.interval)
        self.grace = timedelta(seconds=grace_seconds)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = False
        self.passes = 0
        self.data_dir = app.config["SOCA_DATA_DIR"]

    # -- lease ------------------------------------------------------------------------
    def backend(self) -> str:
        return self.app.config["SOCA_SCHEDULER"]

    def acquire_lease(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = utcnow()
        expires = now + timedelta(seconds=self.lease_seconds)
        table = _leases()
        result = db.session.execute(
            sa.update(table)
            .where(table.c.name == self.backend(),
                   sa.or_(table.c.holder == self.holder, table.c.expires_at < now))
            .values(holder=self.holder, expires_at=expires)
        )
        assert isinstance(result, CursorResult)  # an UPDATE's result, which counts its rows
        if result.rowcount == 1:
            db.session.commit()
            return True
        db.session.rollback()
        if db.session.get(SchedulerLease, self.backend()) is not None:
            return False
        try:
            db.session.add(SchedulerLease(name=self.backend(), holder=self.holder, expires_at=expires))
            db.session.commit()
            return True
        except IntegrityError:  # another reconciler inserted it first
            db.session.rollback()
            return False

    def release_lease(self) -> None:
        table = _leases()
        db.session.execute(sa.update(table).where(table.c.name == self.backend(), table.c.holder == self.holder)
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    # -- loop -------------------------------------------------------------------------
    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        with self.app.app_context():
            log.info("reconciler for %s started (every %.1f s)", self.backend(), self.interval)
            while not self.stopping:
                started = time.monotonic()
                try:
                    if self.acquire_lease():
                        self.reconcile()
                except Exception:  # keep running: a scheduler or database hiccup passes
                    log.exception("reconciler pass failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
                self._beat()
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
            try:
                self.release_lease()
            finally:
                db.session.remove()

    def _request_stop(self, _signum, _frame) -> None:
        self.stopping = True

    def _beat(self) -> None:
        """The local runner's heartbeat file: the process is alive (standby or active)."""
        path = os.path.join(self.data_dir, "runner.heartbeat")
        try:
            with open(path, "a"):
                os.utime(path)
        except OSError:
            pass

    # -- one pass ---------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """One snapshot -> the job rows. Returns counts of what was done."""
        from soca_api.schedulers import get_adapter

        adapter = get_adapter()
        taken_at = utcnow()
        try:
            infos = adapter.snapshot()
        except SchedulerError as exc:
            log.warning("scheduler snapshot failed: %s", exc.message)
            db.session.rollback()
            return {}
        counts = {"updated": 0, "subjobs": 0, "orphans": 0, "forgotten": 0}
        by_id = {info.id: info for info in infos}
        backend = adapter.name
        now = utcnow()
        horizon = now - HORIZON
        rows = db.session.execute(
            sa.select(Job).where(Job.backend == backend, Job.scheduler_id.is_not(None), Job.created_at >= horizon,
                                 # not final yet: a deleted row (F) waits for the scheduler's end
                                 sa.or_(Job.state != "F", Job.substate.is_(None), Job.substate < FINAL_SUBSTATES))
        ).scalars().all()
        # The query leaves out rows without a scheduler id; (backend, scheduler_id) is unique.
        known = {row.scheduler_id: row for row in rows if row.scheduler_id is not None}
        for scheduler_id, row in known.items():
            info = by_id.get(scheduler_id)
            if info is not None:
                counts["updated"] += apply_info(row, info, now)
            elif row.created_at < taken_at - self.grace:
                counts["forgotten"] += self._forgotten(row, now)
        counts["subjobs"] = self._subjobs(backend, infos, known, now)
        counts["orphans"] = self._orphans(backend, infos, taken_at, now)
        table = _leases()
        db.session.execute(sa.update(table).where(table.c.name == backend, table.c.holder == self.holder)
                           .values(refreshed_at=now))
        db.session.commit()
        self.passes += 1
        return counts

    @staticmethod
    def _forgotten(row: Job, now: datetime) -> bool:
        """The scheduler no longer shows the job: it ended (deleted, or past the history)."""
        if row.state == "F":
            row.substate = SUBSTATE_DELETED if row.deleted_at is not None else SUBSTATES["F"]
            return True
        if row.state == PENDING_STATE:
            return False  # an orphan: resolved below
        row.state, row.substate = "F", SUBSTATES["F"]
        row.finished_at = row.finished_at or now
        row.comment = row.comment or FORGOTTEN_COMMENT
        row.modified_at = now
        if row.scheduler_record:
            row.scheduler_record = {**row.scheduler_record, "state": "F", "substate": SUBSTATES["F"],
                                    "comment": row.comment}
        return True

    def _subjobs(self, backend: str, infos: list[JobInfo], known: dict[str, Job], now: datetime) -> int:
        """A row per array subjob, owned by the array's owner."""
        recent = datetime.now() - HORIZON
        # (subjob info, its array's id) for the subjobs worth a row
        subjobs = [(i, parent_id) for i in infos if (parent_id := _parent_id(i.id))
                   and (not i.is_finished or (i.finished or recent) >= recent)]
        if not subjobs:
            return 0
        wanted = {i.id for i, _ in subjobs} - set(known)
        existing: dict[str, Job] = {}
        parent_ids = {parent_id for _, parent_id in subjobs}
        for chunk in _chunks(sorted(wanted | parent_ids)):
            for found in db.session.execute(sa.select(Job).where(Job.backend == backend, Job.scheduler_id.in_(chunk))
                                            ).scalars():
                if found.scheduler_id is not None:  # always: it matched one of the ids
                    existing[found.scheduler_id] = found
        existing.update(known)
        changed = 0
        for info, parent_id in subjobs:
            parent = existing.get(parent_id)
            if parent is None:
                continue  # an array submitted outside the service
            row = existing.get(info.id)
            if row is None:
                row = existing[info.id] = subjob_row(parent, info.id, info.state)
            elif row.state == "F" and row.substate is not None and row.substate >= FINAL_SUBSTATES:
                continue
            changed += apply_info(row, info, now)
        return changed

    def _orphans(self, backend: str, infos: list[JobInfo], taken_at: datetime, now: datetime) -> int:
        """T rows older than a submission can take: find their job by its folder."""
        rows = db.session.execute(
            sa.select(Job).where(Job.backend == backend, Job.state == PENDING_STATE, Job.scheduler_id.is_(None),
                                 Job.created_at < taken_at - self.grace)
        ).scalars().all()
        if not rows:
            return 0
        by_dir: dict[str, JobInfo] = {}
        for info in infos:
            if info.workdir and not _parent_id(info.id):
                by_dir.setdefault(os.path.normpath(info.workdir), info)
        resolved = 0
        for row in rows:
            match = by_dir.get(os.path.normpath(row.job_dir)) if row.job_dir else None
            if match is not None:  # the folder is unique to the row: it names the record id
                row.scheduler_id = match.id
                apply_info(row, match, now)
                log.info("orphan record %s is job %s", row.id, match.id)
            else:
                row.state, row.substate, row.finished_at, row.modified_at = "F", SUBSTATE_DELETED, now, now
                row.deleted_at = now
                row.comment = NEVER_SUBMITTED
            resolved += 1
        return resolved


def subjob_row(parent: Job, api_id: str, state: str) -> Job:
    """A new row for subjob `api_id` ("12[3]") of the array recorded as `parent`."""
    row = Job(backend=parent.backend, scheduler_id=api_id, owner=parent.owner, name=parent.name,
              queue=parent.queue, state=state, script="", request=dict(parent.request or {}),
              job_dir=parent.job_dir, ncpus=parent.ncpus, nodes=parent.nodes,
              walltime_seconds=parent.walltime_seconds, rerunable=parent.rerunable,
              parent_id=parent.id, array_index=_index(api_id), created_at=parent.created_at,
              deleted_at=parent.deleted_at)
    db.session.add(row)
    return row


def _chunks(items: list[str], size: int = 500):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- readers' side -------------------------------------------------------------------------
_fresh_cache: dict[tuple[str, str], tuple[float, bool]] = {}


def snapshot_is_current(backend: str, interval: float) -> bool:
    """True while a reconciler keeps the job rows up to date (it finished a pass within a
    few intervals). Asked at most twice a second per process and database."""
    key = (str(db.engine.url), backend)
    cached = _fresh_cache.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[0] < 0.5:
        return cached[1]
    refreshed = db.session.execute(
        sa.select(SchedulerLease.refreshed_at).where(SchedulerLease.name == backend)).scalar_one_or_none()
    current = refreshed is not None and utcnow() - refreshed < timedelta(seconds=max(10.0, 5 * interval))
    _fresh_cache[key] = (now, current)
    return current
