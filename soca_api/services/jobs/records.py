"""The service's record of a job: finding it, who may see it, how long it stays in view.

Shared by submission, reads and output. Each job row is labelled with the backend that
runs it (adapter.backend_label): rows of another backend are never found.
"""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from soca_api.errors import ApiError
from soca_api.extensions import db, read_row
from soca_api.models import Job, User, utcnow
from soca_api.schedulers import get_adapter
from soca_api.schedulers.base import SchedulerAdapter
from soca_api.schedulers.reconciler import snapshot_is_current
from soca_api.schedulers.records import JobColumns
from soca_api.services import accounts
from soca_api.validation import JOB_ID, is_valid, strip_server_suffix

PENDING_STATE = "T"  # "in transit": recorded, not yet acknowledged by an external scheduler


def clean_job_id(job_id: str | None) -> str:
    """Validate before anything else happens; the API's ids carry no server suffix."""
    if not job_id:
        raise ApiError(400, "Client input malformed. job_id (str) parameter is required")
    if not is_valid(JOB_ID, job_id):
        raise ApiError(400, "job_id is invalid: it must look like 123, 123[], 123[4] or 123.server")
    return strip_server_suffix(job_id)


_RECORD = sa.select(Job).where(Job.backend == sa.bindparam("backend"), Job.scheduler_id == sa.bindparam("job_id"))
_LIVE_RECORD = _RECORD.where(Job.deleted_at.is_(None))  # built once: GET is the hottest path


# What record_info reads of a row (never the script), and the id listings page by.
ROW_COLUMNS = (Job.id, Job.scheduler_id, Job.owner, Job.name, Job.queue, Job.state, Job.substate, Job.request,
               Job.job_dir, Job.output_path, Job.error_path, Job.ncpus, Job.nodes, Job.rerunable, Job.hold,
               Job.created_at, Job.modified_at, Job.started_at, Job.finished_at, Job.exit_status,
               Job.exec_host, Job.comment, Job.scheduler_record)
_IS_LIVE_ROW = sa.and_(Job.backend == sa.bindparam("backend"), Job.scheduler_id == sa.bindparam("job_id"),
                       Job.deleted_at.is_(None))
_LIVE_ROW = sa.select(*ROW_COLUMNS).where(_IS_LIVE_ROW)
# The same row, and the caller's deferred check in the same query (accounts.CallerCheck).
_LIVE_ROW_CHECKING_CALLER = accounts.with_caller_check(ROW_COLUMNS, Job.__table__, _IS_LIVE_ROW)


def find_record(job_id: str, *, include_deleted: bool = False) -> Job | None:
    """The job's record, to change it (or to read one that was deleted)."""
    query = _RECORD if include_deleted else _LIVE_RECORD
    parameters = {"backend": get_adapter().backend_label, "job_id": job_id}
    return db.session.execute(query, parameters).scalar_one_or_none()


def find_row(job_id: str, caller: User | None = None) -> JobColumns | None:
    """The job's live record, read only: the columns record_info needs, without the ORM.

    A `caller` whose check is deferred (accounts.CallerCheck) is confirmed by the same
    query, or CallerChanged raised.
    """
    parameters = {"backend": get_adapter().backend_label, "job_id": job_id}
    check = getattr(caller, "check", None)
    if caller is None or check is None or check.confirmed:
        return read_row(_LIVE_ROW, parameters)
    row = read_row(_LIVE_ROW_CHECKING_CALLER, {**parameters, "caller_id": caller.id})
    accounts.settle(caller, row.caller_epoch if row else None, row.caller_is_admin if row else None)
    return row if row is not None and row.id is not None else None


def visible(user: User, owner: str) -> bool:
    return user.is_admin or owner == user.name


def history_expired(record: JobColumns) -> bool:
    seconds = current_app.config["SOCA_JOB_HISTORY_SECONDS"]
    return record.finished_at is None or utcnow() - record.finished_at >= timedelta(seconds=seconds)


def rows_current(adapter: SchedulerAdapter) -> bool:
    """A reconciler keeps the rows in step with the scheduler: read them, not the scheduler."""
    return snapshot_is_current(adapter.backend_label, current_app.config["SOCA_SCHEDULER_CACHE_SECONDS"])


def array_id(job_id: str) -> str | None:
    """The array's id for a subjob id "12[3]" ("12[]"): its owner owns the subjobs."""
    if "[" not in job_id or job_id.endswith("[]"):
        return None
    return job_id.split("[", 1)[0] + "[]"


def array_record(job_id: str) -> Job | None:
    """The array's record for a subjob id."""
    parent = array_id(job_id)
    return find_record(parent) if parent is not None else None
