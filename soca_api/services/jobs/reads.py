"""Reading, deleting, holding and listing jobs, the same way on every backend.

On a backend whose job rows are its queue (capabilities.rows_are_queue) the record is the
job; on the others it holds the owner, the script and what the reconciler last read from
the scheduler, and the scheduler is asked directly only when no reconciler keeps the rows
current or the job has no record yet.
"""
from __future__ import annotations

import contextlib
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from soca_api.errors import JOB_GONE, ApiError
from soca_api.extensions import db
from soca_api.models import Job, User, utcnow
from soca_api.schedulers import get_adapter
from soca_api.schedulers.base import SchedulerAdapter
from soca_api.schedulers.errors import JobNotFound, SchedulerError
from soca_api.schedulers.reconciler import apply_info, subjob_row
from soca_api.schedulers.records import JobColumns, record_info
from soca_api.schedulers.values import ACTIVE_STATES, JobInfo
from soca_api.services import accounts, audit
from soca_api.services.jobs.records import (
    PENDING_STATE,
    ROW_COLUMNS,
    array_id,
    array_record,
    find_record,
    find_row,
    history_expired,
    rows_current,
    visible,
)
from soca_api.services.qstat_view import qstat_attributes
from soca_api.validation import QUEUE_NAME, USER_NAME, is_valid

MAX_PAGE = 1000


def job_info(user: User, job_id: str) -> JobInfo:
    """The job as the scheduler reports it, for its owner or an admin only.

    Anyone else gets the same answer as for an unknown job, so ids cannot be probed.
    """
    adapter = get_adapter()
    if not _rows_are_current(adapter):
        accounts.confirm(user)  # before a read that may write (or ask the scheduler)
        return _lookup(user, job_id)[0]  # the read may bring the record in step: the ORM's
    # The hottest path: plain rows, no ORM session, the caller's check in the same query.
    row = find_row(job_id, user)
    parent = array_id(job_id) if row is None else None
    owner_row = find_row(parent) if parent is not None else row
    return _resolve(user, job_id, adapter, row, owner_row, rows_are_current=True)


def _lookup(user: User, job_id: str) -> tuple[JobInfo, Job | None]:
    """The job's normalised value and the service's record of it (None: not ours), to change it."""
    adapter = get_adapter()
    record = find_record(job_id)
    owner_record = record if record is not None else array_record(job_id)
    return _resolve(user, job_id, adapter, record, owner_record, rows_are_current=_rows_are_current(adapter)), record


def _rows_are_current(adapter: SchedulerAdapter) -> bool:
    """The job rows say what the scheduler does: they are its queue, or a reconciler keeps them."""
    return adapter.capabilities.rows_are_queue or rows_current(adapter)


def _resolve(user: User, job_id: str, adapter: SchedulerAdapter, record: JobColumns | None,
             owner_record: JobColumns | None, *, rows_are_current: bool) -> JobInfo:
    """What `user` may see of the job, given its record and its array's (None: none).

    On PBS and Slurm the record holds what the reconciler last read from the scheduler's
    snapshot, so a read runs no scheduler command; only a job without a record (an
    admin's view of a job submitted outside the service, a subjob not yet seen) gets one
    direct query, shared by concurrent readers. When no reconciler keeps the rows
    current (`rows_are_current` false, and `record` then a Job), this process's own
    snapshot of the scheduler is used instead and the record kept in step with it.
    """
    if record is None and owner_record is not None and find_record(job_id, include_deleted=True) is not None:
        raise ApiError(404, JOB_GONE)  # a deleted subjob stays out of view, as other jobs do
    if owner_record is not None and not visible(user, owner_record.owner):
        raise ApiError(404, JOB_GONE)
    if owner_record is None and (not user.is_admin or adapter.capabilities.rows_are_queue):
        raise ApiError(404, JOB_GONE)
    if adapter.capabilities.rows_are_queue:
        # The record is the queue itself: no second read of the same row. A subjob id
        # past the end of a local array has no row (only its array's): unknown, like any.
        if record is None:
            raise ApiError(404, JOB_GONE)
        queued = record_info(record)
        if queued.is_finished and history_expired(record):
            raise ApiError(404, JOB_GONE)
        return queued
    info: JobInfo | None
    if record is not None and record.scheduler_id and rows_are_current:
        info = record_info(record)
    else:
        try:
            info = adapter.info(job_id) if record is not None else adapter.query(job_id)
        except JobNotFound:
            info = None
        except SchedulerError as exc:
            raise ApiError(exc.status, exc.message) from None
        if record is not None and not rows_are_current:
            assert isinstance(record, Job)  # _lookup's: only it reads without a reconciler
            if info is not None:
                _sync_record(record, info)
                info = record_info(record)
            else:
                info = _finished_from_record(record)
    if info is None:
        raise ApiError(404, JOB_GONE)
    if owner_record is not None:
        # The record says whose job it is, even when it ran under a fallback account.
        info.owner = owner_record.owner
    elif not visible(user, info.owner):
        raise ApiError(404, JOB_GONE)
    if info.is_finished and record is not None and history_expired(record):
        raise ApiError(404, JOB_GONE)
    return info


def _sync_record(record: Job, info: JobInfo) -> None:
    """No reconciler runs: keep the record in step with what this reader saw."""
    if apply_info(record, info, utcnow()):
        db.session.commit()


def _finished_from_record(record: Job) -> JobInfo | None:
    """The scheduler no longer shows the job: it finished (we saw it, or we assume so now)."""
    if record.state in ACTIVE_STATES or record.state == PENDING_STATE:
        record.state, record.finished_at = "F", record.finished_at or utcnow()
        record.comment = record.comment or "Finished; the scheduler kept no history"
        db.session.commit()
    return record_info(record)


def get_attributes(user: User, job_id: str) -> dict[str, object]:
    return qstat_attributes(job_info(user, job_id))


# -- delete and hold --------------------------------------------------------------------------------
def delete(user: User, job_id: str, *, actor: audit.Actor | None = None) -> None:
    """qdel for the job's owner or an admin. With `actor`, audited as job.delete (an
    unknown id answers 404 unaudited, as every lookup does)."""
    info, record = _lookup(user, job_id)
    with audit.change(audit.JOB_DELETE, actor, job_id):
        _delete(job_id, info, record)


def _delete(job_id: str, info: JobInfo, record: Job | None) -> None:
    adapter = get_adapter()
    if info.is_finished:
        # Still visible from history: remove it from view, as SOCA clients expect.
        if record is not None:
            record.deleted_at = utcnow()
            db.session.commit()
        return
    try:
        adapter.delete(job_id)
    except JobNotFound:
        pass  # finished between the read and the delete: nothing left to stop
    except SchedulerError as exc:
        raise ApiError(exc.status, exc.message) from None
    if record is None and not adapter.capabilities.rows_are_queue:
        parent = array_record(job_id)
        if parent is not None:
            # A subjob the reconciler has not recorded yet: its row keeps the deletion
            # (and the scheduler's final values once the reconciler sees them).
            record = subjob_row(parent, job_id, info.state)
    if record is not None and record.deleted_at is None:
        record.deleted_at = utcnow()
        record.state, record.finished_at = "F", record.finished_at or utcnow()
        db.session.commit()


def hold_or_release(user: User, job_id: str, action: str, *, actor: audit.Actor | None = None) -> str:
    """qhold / qrls for the job's owner or an admin; answers the new state. With `actor`,
    audited as job.hold / job.release (an unknown id answers 404 unaudited)."""
    info, record = _lookup(user, job_id)
    with audit.change(audit.JOB_HOLD if action == "hold" else audit.JOB_RELEASE, actor, job_id):
        return _hold_or_release(job_id, action, info, record)


def _hold_or_release(job_id: str, action: str, info: JobInfo, record: Job | None) -> str:
    if info.is_finished:
        raise ApiError(409, f"Job {job_id} has finished")
    if action == "hold" and info.state not in ("Q", "H", "W"):
        raise ApiError(409, f"Job {job_id} cannot be held in state {info.state}: only waiting jobs can")
    adapter = get_adapter()
    try:
        if action == "hold":
            adapter.hold(job_id)
        else:
            adapter.release(job_id)
    except JobNotFound:
        raise ApiError(404, JOB_GONE) from None
    except SchedulerError as exc:
        raise ApiError(exc.status, exc.message) from None
    if record is not None and not adapter.capabilities.rows_are_queue:
        record.hold = action == "hold"
        # Shown at once; the reconciler's next pass brings the scheduler's own values.
        record.state = "H" if action == "hold" else "Q"
        if record.scheduler_record:
            record.scheduler_record = {**record.scheduler_record, "state": record.state,
                                       "hold_types": "u" if action == "hold" else "n"}
        db.session.commit()
    return "Job held" if action == "hold" else "Job released"




def final_attributes(user: User, job_id: str) -> dict[str, object]:
    record = find_record(job_id, include_deleted=True)
    if record is None or not visible(user, record.owner):
        raise ApiError(404, JOB_GONE)
    adapter = get_adapter()
    if not adapter.capabilities.rows_are_queue and record.state != "F" and record.deleted_at is None \
            and not rows_current(adapter):
        with contextlib.suppress(ApiError):
            job_info(user, job_id)  # no reconciler: refresh the record from the scheduler
        db.session.refresh(record)
    if record.state != "F":
        raise ApiError(409, f"Job {job_id} has not finished yet (state {record.state})")
    # PBS / Slurm: the scheduler's own final record (Exit_status, stime, obittime,
    # exec_host, comment, resources_used) as the reconciler read it.
    attributes = qstat_attributes(record_info(record))
    attributes["deleted"] = record.deleted_at is not None
    return attributes


# -- list ----------------------------------------------------------------------------------
def list_jobs(user: User, *, owner: str | None, state: str | None, queue: str | None,
              limit: int, before: int | None) -> tuple[dict[str, dict], int | None]:
    """The caller's jobs (admins: everyone's, or `owner`'s), newest first, keyset-paged."""
    if owner is not None and not is_valid(USER_NAME, owner):
        raise ApiError(400, "user is invalid: it must match ^[a-z_][a-z0-9_.-]{0,31}$")
    if queue is not None and not is_valid(QUEUE_NAME, queue):
        raise ApiError(400, "queue is invalid")
    if state is not None and (len(state) != 1 or state not in "QHWRESBF"):
        raise ApiError(400, "state is invalid: one of Q, H, W, R, E, S, B, F")
    if not user.is_admin:
        if owner not in (None, user.name):
            raise ApiError(403, "You can only list your own jobs")
        owner = user.name
    limit = max(1, min(limit, MAX_PAGE))
    adapter = get_adapter()
    conditions = [Job.backend == adapter.backend_label, Job.deleted_at.is_(None), Job.scheduler_id.is_not(None),
                  Job.parent_id.is_(None)]
    if owner is not None:
        conditions.append(Job.owner == owner)
    if queue is not None:
        conditions.append(Job.queue == queue)
    if before is not None:
        conditions.append(Job.id < before)
    if state is not None:
        query = sa.select(*ROW_COLUMNS).where(*conditions, Job.state == state)
    else:
        # What qstat would show: active jobs and finished ones still in history. Each arm
        # of the union is an index range, so a long history of finished jobs is never
        # scanned (an OR here made SQLite walk every job of the user).
        cutoff = utcnow() - timedelta(seconds=current_app.config["SOCA_JOB_HISTORY_SECONDS"])
        active = sa.select(Job.id).where(*conditions, Job.state.in_(sorted(ACTIVE_STATES | {PENDING_STATE})))
        recent = sa.select(Job.id).where(*conditions, Job.state == "F", Job.finished_at >= cutoff)
        ids = sa.union_all(active, recent).subquery()
        query = sa.select(*ROW_COLUMNS).where(Job.id.in_(sa.select(ids.c.id)))
    # Plain rows of the columns a listing shows (never the scripts): record_info reads
    # them by the same names, without an ORM instance per job.
    rows = db.session.execute(query.order_by(Job.id.desc()).limit(limit + 1)).all()
    next_before = rows[limit - 1].id if len(rows) > limit else None
    rows = rows[:limit]
    # PBS / Slurm: the rows hold the reconciler's snapshot; without a reconciler, this
    # process's own snapshot of the scheduler is laid over them.
    live = _live_infos(adapter, owner) if not (adapter.capabilities.rows_are_queue or rows_current(adapter)) else {}
    jobs = {}
    times: dict = {}  # the listing's rendered times, shared by its jobs
    for row in rows:
        info = live.get(row.scheduler_id) or record_info(row)
        jobs[row.scheduler_id] = qstat_attributes(info, times)
    return jobs, next_before


def _live_infos(adapter: SchedulerAdapter, owner: str | None) -> dict[str, JobInfo]:
    try:
        return {info.id: info for info in adapter.info_all(owner)}
    except SchedulerError:
        return {}  # fall back to the service's records rather than failing the listing

