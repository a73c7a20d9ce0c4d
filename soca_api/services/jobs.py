"""Submitting, reading, deleting and listing jobs, the same way on every backend.

The service keeps its own record of every job (the `jobs` table): on the local backend
that record is the queue itself; on PBS and Slurm it holds the owner, the script and
the final state beside what the scheduler reports.
"""
from __future__ import annotations

import fcntl
import os
import posixpath
import threading
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from soca_api.errors import JOB_GONE, ApiError
from soca_api.extensions import db
from soca_api.models import Job, User, utcnow
from soca_api.pbs import script as pbs_script
from soca_api.schedulers import get_adapter
from soca_api.schedulers import jobfiles
from soca_api.schedulers.errors import JobNotFound, SchedulerError
from soca_api.schedulers.reconciler import apply_info, snapshot_is_current, subjob_row
from soca_api.schedulers.records import record_info
from soca_api.schedulers.values import ACTIVE_STATES, JobInfo, JobRequest, SubmitContext
from soca_api.services import audit, identity, idempotency, queue_rules
from soca_api.services.qstat_view import qstat_attributes
from soca_api.validation import (
    JOB_ID,
    QUEUE_NAME,
    USER_NAME,
    is_valid,
    strip_server_suffix,
)

PENDING_STATE = "T"  # "in transit": recorded, not yet acknowledged by an external scheduler
MAX_PAGE = 1000


# -- identifiers ---------------------------------------------------------------------------
def clean_job_id(job_id: str | None) -> str:
    """Validate before anything else happens; the API's ids carry no server suffix."""
    if not job_id:
        raise ApiError(400, "Client input malformed. job_id (str) parameter is required")
    if not is_valid(JOB_ID, job_id):
        raise ApiError(400, "job_id is invalid: it must look like 123, 123[], 123[4] or 123.server")
    return strip_server_suffix(job_id)


# -- submit --------------------------------------------------------------------------------
def parse_payload(payload: str | None) -> JobRequest:
    if payload is None or payload == "":
        raise ApiError(400, "Client input malformed. payload (str) parameter is required")
    # An unencoded "+" in a urlencoded body arrives as a space; base64 never holds spaces.
    payload = payload.replace(" ", "+")
    try:
        text = pbs_script.decode_payload(payload, current_app.config["SOCA_MAX_SCRIPT_BYTES"])
        return pbs_script.parse_script(text)
    except pbs_script.ScriptTooLarge as exc:
        raise ApiError(413, exc.message) from None
    except pbs_script.ScriptError as exc:
        raise ApiError(400, exc.message, extra={"line": exc.line} if exc.line else None) from None


def default_queue() -> str:
    return current_app.config["SOCA_DEFAULT_QUEUES"][0]


def _resolve_path(given: str | None, default_name: str, job_dir: str, confined: bool, option: str) -> str:
    """-o/-e relative to the job folder; a folder (trailing /) gets the default file name."""
    if not given:
        return posixpath.join(job_dir, default_name)
    path = given if given.startswith("/") else posixpath.join(job_dir, given)
    if given.endswith("/"):
        path = posixpath.join(path, default_name)
    path = posixpath.normpath(path)
    if confined and not path.startswith(job_dir.rstrip("/") + "/"):
        raise ApiError(400, f"{option} {given} must resolve inside your job folder")
    return path


def request_record(request: JobRequest) -> dict[str, object]:
    """What the record keeps of the request (JSON), beyond its own columns."""
    return {
        "join": request.join,
        "keep_files": request.keep_files,
        "mail_points": request.mail_points,
        "mail_users": request.mail_users,
        "priority": request.priority,
        "resource_list": pbs_script.resource_list(request),
        "variables": dict(request.variables),
        "export_all": request.export_all,
        "project": request.project,
        "account": request.account,
        "array": str(request.array) if request.array else None,
        "dependencies": [{"kind": d.kind, "ids": [strip_server_suffix(i) for i in d.job_ids]}
                         for d in request.dependencies],
        "depend": ",".join(f"{d.kind}:{':'.join(d.job_ids)}" for d in request.dependencies) or None,
        "shell": request.shell,
    }


def submit(user: User, payload: str | None, *, idempotency_key: str | None = None) -> str:
    """The new job's id; with an idempotency key already used by this user (24 h), the
    id of the job that key created, and nothing new."""
    request = parse_payload(payload)
    claim = idempotency.claim(user.name, idempotency_key, request.script)
    if claim is not None:
        earlier = idempotency.replay(claim)
        if earlier is not None:
            return earlier
    queue = request.queue or default_queue()
    request = queue_rules.check_submission(user, request, queue)
    request.queue = queue  # the queue the rules were checked against is the one used
    adapter = get_adapter()
    try:
        ident = identity.resolve(user.name, backend=adapter.name)
    except identity.IdentityRefused as exc:
        raise ApiError(403, exc.message) from None
    for dependency in request.dependencies:
        for dep_id in dependency.job_ids:
            _check_dependency(user, strip_server_suffix(dep_id))

    # Refuse paths that leave the job folder before anything is written (the folder's
    # final name only adds the record id and a random suffix).
    probe_dir = os.path.join(ident.base_dir, *ident.sub_dirs, jobfiles.unique_folder_name(request.name, 0))
    _resolve_path(request.output_path, "o", probe_dir, ident.confined, "-o")
    _resolve_path(request.error_path, "e", probe_dir, ident.confined, "-e")
    try:
        with _single_writer(adapter.name == "local"):
            return _record_and_submit(user, request, queue, adapter, ident, claim)
    except idempotency.DuplicateKey:
        # A concurrent request with the same key won the race: answer its job.
        earlier = idempotency.replay(claim)
        if earlier is None:  # the winner was refused meanwhile, which freed the key
            raise ApiError(409, f"A concurrent request with this {idempotency.HEADER} failed; retry") from None
        return earlier


# SQLite takes one writer at a time and makes the others sleep in coarse steps (1, 2, 5,
# 10... ms). Submissions queue instead on a lock that wakes the next one at once: a thread
# lock within a worker, and an flock on the data folder between workers.
_SQLITE_WRITER = threading.Lock()
_writer_lock_fd: int | None = None


@contextmanager
def _single_writer(wanted: bool):
    """Only around the local backend's one short transaction: never around a qsub."""
    global _writer_lock_fd
    if not wanted or db.engine.dialect.name != "sqlite":
        yield
        return
    with _SQLITE_WRITER:
        if _writer_lock_fd is None:
            path = os.path.join(current_app.config["SOCA_DATA_DIR"], "submit.lock")
            _writer_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(_writer_lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(_writer_lock_fd, fcntl.LOCK_UN)


def _record_and_submit(user: User, request: JobRequest, queue: str, adapter, ident,
                       claim: idempotency.Claim | None = None) -> str:
    home = ident.home
    job = Job(backend=adapter.name, owner=user.name, name=request.name, queue=queue,
              state=PENDING_STATE, script=request.script, request={**request_record(request), "home": home},
              ncpus=request.ncpus, nodes=request.nodes, walltime_seconds=request.walltime_seconds,
              rerunable=request.rerunable, hold=request.hold, start_after=request.start_after)
    db.session.add(job)
    db.session.flush()  # the record id names the job folder
    if claim is not None:
        idempotency.record(job, claim)  # same transaction as the row: no window
    try:
        job_dir = identity.make_job_dir(ident, jobfiles.unique_folder_name(request.name, job.id))
    except jobfiles.JobFileError as exc:
        db.session.rollback()  # nothing half-written: no record without its folder
        raise ApiError(exc.status, f"Unable to create the job folder: {exc.message}") from None
    except OSError as exc:
        db.session.rollback()
        current_app.logger.error("cannot create job folder for %s: %s", user.name, exc)
        raise ApiError(503, f"Unable to create the job folder: {exc.strerror or type(exc).__name__}") from None
    seq = job.id
    job.job_dir = job_dir
    job.output_path = _resolve_path(request.output_path, f"{request.name}.o{seq}", job_dir, ident.confined, "-o")
    job.error_path = _resolve_path(request.error_path, f"{request.name}.e{seq}", job_dir, ident.confined, "-e")
    if request.join == "oe":
        job.error_path = job.output_path
    elif request.join == "eo":
        job.output_path = job.error_path
    context = SubmitContext(
        user=user.name, job_dir=job_dir, record_id=job.id,
        run_as_uid=ident.run_as.uid if ident.run_as else None,
        run_as_gid=ident.run_as.gid if ident.run_as else None,
        run_as_groups=ident.run_as.groups if ident.run_as else (),
        home=ident.run_as.home if ident.run_as else None,
    )
    if adapter.name == "local":
        # One transaction: the row is the queue, so commit == acknowledged and durable.
        job_id = adapter.submit(request, context)
        db.session.commit()
        adapter.wake_runner()
        return job_id
    # External scheduler: the pending record is durable before qsub runs, so a crash
    # between the two leaves a trace instead of an unknown job.
    db.session.commit()
    try:
        job_id = adapter.submit(request, context)
    except SchedulerError as exc:
        job.state, job.deleted_at, job.comment = "F", utcnow(), f"refused: {exc.detail or exc.message}"
        idempotency.forget(job)
        db.session.commit()
        audit.record("job.refused", actor=user.name, target=queue, success=False,
                     detail=exc.detail or exc.message)
        extra = {"stderr": exc.detail} if exc.detail else None
        raise ApiError(exc.status, exc.message, extra=extra) from None
    except jobfiles.JobFileError as exc:  # the job script could not be written safely
        job.state, job.deleted_at, job.comment = "F", utcnow(), f"refused: {exc.message}"
        idempotency.forget(job)
        db.session.commit()
        raise ApiError(exc.status, f"Unable to write the job script: {exc.message}") from None
    # One UPDATE by primary key: the row was expired by the commit above, and changing
    # it through the ORM would first reload all of it (a SELECT per submission).
    output, error = _scheduler_default_paths(request, job_id, job_dir, ident)
    db.session.execute(sa.update(Job).where(Job.id == seq).values(
        scheduler_id=job_id, state="Q", output_path=output, error_path=error))
    db.session.commit()
    return job_id


def _scheduler_default_paths(request: JobRequest, job_id: str, job_dir: str, ident) -> tuple[str, str]:
    """PBS and Slurm name a default output <name>.o<their job number> (arrays
    <name>.o<number>.<index>), not after the service's record id: (output, error)."""
    number = job_id.split("[", 1)[0]
    suffix = f"{number}.^array_index^" if request.array else number
    output = _resolve_path(request.output_path, f"{request.name}.o{suffix}", job_dir, ident.confined, "-o")
    error = _resolve_path(request.error_path, f"{request.name}.e{suffix}", job_dir, ident.confined, "-e")
    if request.join == "oe":
        error = output
    elif request.join == "eo":
        output = error
    return output, error


def _check_dependency(user: User, dep_id: str) -> None:
    record = find_record(dep_id)
    if record is None or (record.owner != user.name and not user.is_admin):
        raise ApiError(400, f"-W depend: job {dep_id} does not exist")


# -- read ----------------------------------------------------------------------------------
_RECORD = sa.select(Job).where(Job.backend == sa.bindparam("backend"), Job.scheduler_id == sa.bindparam("job_id"))
_LIVE_RECORD = _RECORD.where(Job.deleted_at.is_(None))  # built once: GET is the hottest path
# What record_info reads of a row (never the script), and the id for listings' paging.
_LISTED_COLUMNS = (Job.id, Job.scheduler_id, Job.owner, Job.name, Job.queue, Job.state, Job.substate, Job.request,
                   Job.job_dir, Job.output_path, Job.error_path, Job.ncpus, Job.nodes, Job.rerunable, Job.hold,
                   Job.created_at, Job.modified_at, Job.started_at, Job.finished_at, Job.exit_status,
                   Job.exec_host, Job.comment, Job.scheduler_record)


def find_record(job_id: str, *, include_deleted: bool = False) -> Job | None:
    query = _RECORD if include_deleted else _LIVE_RECORD
    return db.session.execute(query, {"backend": get_adapter().name, "job_id": job_id}).scalar_one_or_none()


def _visible(user: User, owner: str) -> bool:
    return user.is_admin or owner == user.name


def _history_expired(record: Job) -> bool:
    seconds = current_app.config["SOCA_JOB_HISTORY_SECONDS"]
    return record.finished_at is None or utcnow() - record.finished_at >= timedelta(seconds=seconds)


def job_info(user: User, job_id: str) -> JobInfo:
    """The job as the scheduler reports it, for its owner or an admin only.

    Anyone else gets the same answer as for an unknown job, so ids cannot be probed.
    """
    return _lookup(user, job_id)[0]


def _lookup(user: User, job_id: str) -> tuple[JobInfo, Job | None]:
    """The job's normalised value and the service's record of it (None: not ours).

    On PBS and Slurm the record holds what the reconciler last read from the scheduler's
    snapshot, so a read runs no scheduler command; only a job without a record (an
    admin's view of a job submitted outside the service, a subjob not yet seen) gets one
    direct query, shared by concurrent readers. When no reconciler keeps the rows
    current, this process's own snapshot of the scheduler is used instead.
    """
    adapter = get_adapter()
    record = find_record(job_id)
    owner_record = record if record is not None else _array_record(job_id)
    if record is None and owner_record is not None and find_record(job_id, include_deleted=True) is not None:
        raise ApiError(404, JOB_GONE)  # a deleted subjob stays out of view, as other jobs do
    if owner_record is not None and not _visible(user, owner_record.owner):
        raise ApiError(404, JOB_GONE)
    if owner_record is None and (not user.is_admin or adapter.name == "local"):
        raise ApiError(404, JOB_GONE)
    if adapter.name == "local":
        # The record is the local queue itself: no second read of the same row.
        info = record_info(record)
        if info.is_finished and _history_expired(record):
            raise ApiError(404, JOB_GONE)
        return info, record
    if record is not None and record.scheduler_id and _rows_current(adapter):
        info = record_info(record)
    else:
        try:
            info = adapter.info(job_id) if record is not None else adapter.query(job_id)
        except JobNotFound:
            info = None
        except SchedulerError as exc:
            raise ApiError(exc.status, exc.message) from None
        if info is not None and record is not None:
            _sync_record(record, info)
            info = record_info(record)
        if info is None and record is not None:
            info = _finished_from_record(record)
    if info is None:
        raise ApiError(404, JOB_GONE)
    if owner_record is not None:
        # The record says whose job it is, even when it ran under a fallback account.
        info.owner = owner_record.owner
    elif not _visible(user, info.owner):
        raise ApiError(404, JOB_GONE)
    if info.is_finished and record is not None and _history_expired(record):
        raise ApiError(404, JOB_GONE)
    return info, record


def _rows_current(adapter) -> bool:
    return snapshot_is_current(adapter.name, current_app.config["SOCA_SCHEDULER_CACHE_SECONDS"])


def _array_record(job_id: str) -> Job | None:
    """The array's record for a subjob id "12[3]": its owner owns the subjobs."""
    if "[" not in job_id or job_id.endswith("[]"):
        return None
    return find_record(job_id.split("[", 1)[0] + "[]")


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


# -- delete --------------------------------------------------------------------------------
def delete(user: User, job_id: str) -> None:
    info, record = _lookup(user, job_id)
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
    if record is None and adapter.name != "local":
        parent = _array_record(job_id)
        if parent is not None:
            # A subjob the reconciler has not recorded yet: its row keeps the deletion
            # (and the scheduler's final values once the reconciler sees them).
            record = subjob_row(parent, job_id, info.state)
    if record is not None and record.deleted_at is None:
        record.deleted_at = utcnow()
        record.state, record.finished_at = "F", record.finished_at or utcnow()
        db.session.commit()


def hold_or_release(user: User, job_id: str, action: str) -> str:
    """qhold / qrls for the job's owner or an admin; answers the new state."""
    info, record = _lookup(user, job_id)
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
    if record is not None and adapter.name != "local":
        record.hold = action == "hold"
        # Shown at once; the reconciler's next pass brings the scheduler's own values.
        record.state = "H" if action == "hold" else "Q"
        if record.scheduler_record:
            record.scheduler_record = {**record.scheduler_record, "state": record.state,
                                       "hold_types": "u" if action == "hold" else "n"}
        db.session.commit()
    return "Job held" if action == "hold" else "Job released"


# -- final record and output ---------------------------------------------------------------
def final_attributes(user: User, job_id: str) -> dict[str, object]:
    record = find_record(job_id, include_deleted=True)
    if record is None or not _visible(user, record.owner):
        raise ApiError(404, JOB_GONE)
    adapter = get_adapter()
    if adapter.name != "local" and record.state != "F" and record.deleted_at is None \
            and not _rows_current(adapter):
        try:
            job_info(user, job_id)  # no reconciler: refresh the record from the scheduler
        except ApiError:
            pass
        db.session.refresh(record)
    if record.state != "F":
        raise ApiError(409, f"Job {job_id} has not finished yet (state {record.state})")
    # PBS / Slurm: the scheduler's own final record (Exit_status, stime, obittime,
    # exec_host, comment, resources_used) as the reconciler read it.
    attributes = qstat_attributes(record_info(record))
    attributes["deleted"] = record.deleted_at is not None
    return attributes


def read_output(user: User, job_id: str, stream: str, *, offset: int | None, length: int,
                tail: int | None) -> dict[str, object]:
    """A byte range or the last lines of the job's stdout or stderr, for its owner only."""
    record = find_record(job_id, include_deleted=True)
    path = None
    if record is None and "[" in job_id and not job_id.endswith("[]"):
        # A subjob the reconciler has not recorded yet: the array's path, with its index.
        record = find_record(job_id.split("[", 1)[0] + "[]", include_deleted=True)
        if record is not None:
            pattern = record.output_path if stream == "stdout" else record.error_path
            path = (pattern or "").replace("^array_index^", job_id.split("[", 1)[1].rstrip("]")) or None
    if record is None or record.owner != user.name:
        raise ApiError(404, JOB_GONE)
    if path is None and record.scheduler_id.endswith("[]"):
        raise ApiError(400, "An array job has no output of its own: ask for one subjob, e.g. 12[1]")
    if path is None:
        path = record.output_path if stream == "stdout" else record.error_path
    fd = _open_job_output(record, path, stream, job_id)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if tail is not None:
            start = _tail_start(handle, size, tail)
        else:
            start = min(offset or 0, size)
        handle.seek(start)
        data = handle.read(min(length, size - start) if tail is None else size - start)
    if start + len(data) < size or record.state != "F":
        # A character cut by the range or by a job still writing comes whole next read.
        data = data[:_complete_utf8(data)]
    end = start + len(data)
    return {"job_id": job_id, "stream": stream, "path": path, "offset": start, "next_offset": end,
            "size": size, "eof": end >= size, "finished": record.state == "F",
            "data": data.decode("utf-8", errors="replace")}


def _open_job_output(record: Job, path: str | None, stream: str, job_id: str) -> int:
    """A descriptor on the job's output, as its account would see it: the folders a user
    can change are walked without following links, and the file must be a regular file
    of the job's account (never one it merely named, e.g. a link to the secret key)."""
    if not path:
        raise ApiError(404, f"No {stream} yet for job {job_id}")
    owner_uid = None
    if os.geteuid() == 0:
        try:
            ident = identity.resolve(record.owner, backend=record.backend, allocate=False)
        except identity.IdentityRefused:
            raise ApiError(403, f"The {stream} file of job {job_id} cannot be read") from None
        owner_uid = ident.run_as.uid if ident.run_as else None
    try:
        return jobfiles.open_for_reading(path, owner_uid)
    except FileNotFoundError:
        raise ApiError(404, f"No {stream} yet for job {job_id}") from None
    except (OSError, jobfiles.JobFileError):
        raise ApiError(403, f"The {stream} file of job {job_id} cannot be read") from None


def _complete_utf8(data: bytes) -> int:
    """Length of `data` without a UTF-8 sequence cut at its end (a file still growing)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last sequence
            needed = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return len(data) - back if needed > back else len(data)
    return len(data)


def _tail_start(handle, size: int, lines: int) -> int:
    """Offset where the last `lines` lines begin, reading backwards in blocks."""
    block, position, newlines = 65536, size, 0
    while position > 0:
        read_from = max(0, position - block)
        handle.seek(read_from)
        chunk = handle.read(position - read_from)
        # A final newline ends the last line; it does not start a new one.
        end = len(chunk) - 1 if position == size and chunk.endswith(b"\n") else len(chunk)
        for index in range(end - 1, -1, -1):
            if chunk[index] == 0x0A:
                newlines += 1
                if newlines == lines:
                    return read_from + index + 1
        position = read_from
    return 0


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
    conditions = [Job.backend == adapter.name, Job.deleted_at.is_(None), Job.scheduler_id.is_not(None),
                  Job.parent_id.is_(None)]
    if owner is not None:
        conditions.append(Job.owner == owner)
    if queue is not None:
        conditions.append(Job.queue == queue)
    if before is not None:
        conditions.append(Job.id < before)
    if state is not None:
        query = sa.select(*_LISTED_COLUMNS).where(*conditions, Job.state == state)
    else:
        # What qstat would show: active jobs and finished ones still in history. Each arm
        # of the union is an index range, so a long history of finished jobs is never
        # scanned (an OR here made SQLite walk every job of the user).
        cutoff = utcnow() - timedelta(seconds=current_app.config["SOCA_JOB_HISTORY_SECONDS"])
        active = sa.select(Job.id).where(*conditions, Job.state.in_(sorted(ACTIVE_STATES | {PENDING_STATE})))
        recent = sa.select(Job.id).where(*conditions, Job.state == "F", Job.finished_at >= cutoff)
        ids = sa.union_all(active, recent).subquery()
        query = sa.select(*_LISTED_COLUMNS).where(Job.id.in_(sa.select(ids.c.id)))
    # Plain rows of the columns a listing shows (never the scripts): record_info reads
    # them by the same names, without an ORM instance per job.
    rows = db.session.execute(query.order_by(Job.id.desc()).limit(limit + 1)).all()
    next_before = rows[limit - 1].id if len(rows) > limit else None
    rows = rows[:limit]
    # PBS / Slurm: the rows hold the reconciler's snapshot; without a reconciler, this
    # process's own snapshot of the scheduler is laid over them.
    live = _live_infos(adapter, owner) if adapter.name != "local" and not _rows_current(adapter) else {}
    jobs = {}
    times: dict = {}  # the listing's rendered times, shared by its jobs
    for row in rows:
        info = live.get(row.scheduler_id) or record_info(row)
        jobs[row.scheduler_id] = qstat_attributes(info, times)
    return jobs, next_before


def _live_infos(adapter, owner: str | None) -> dict[str, JobInfo]:
    try:
        return {info.id: info for info in adapter.info_all(owner)}
    except SchedulerError:
        return {}  # fall back to the service's records rather than failing the listing

