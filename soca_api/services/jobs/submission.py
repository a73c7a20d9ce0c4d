"""Submitting a job: the script parsed, the queue's rules applied, the account and folder
it runs in, the service's record, and the scheduler's acknowledgement.
"""
from __future__ import annotations

import fcntl
import os
import posixpath
import threading
from contextlib import contextmanager

import sqlalchemy as sa
from flask import current_app

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import Job, User, utcnow
from soca_api.pbs import script as pbs_script
from soca_api.schedulers import get_adapter, jobfiles
from soca_api.schedulers.base import SchedulerAdapter
from soca_api.schedulers.errors import SchedulerError
from soca_api.schedulers.job_accounts import JobIdentity
from soca_api.schedulers.values import JobRequest, SubmitContext
from soca_api.services import audit, idempotency, identity, queue_rules
from soca_api.services.jobs.records import PENDING_STATE, find_record
from soca_api.validation import strip_server_suffix


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


def resolve_path(given: str | None, default_name: str, job_dir: str, confined: bool, option: str) -> str:
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
        ident = identity.resolve(user.name, adapter)
    except identity.IdentityRefused as exc:
        raise ApiError(403, exc.message) from None
    for dependency in request.dependencies:
        for dep_id in dependency.job_ids:
            _check_dependency(user, strip_server_suffix(dep_id))

    # Refuse paths that leave the job folder before anything is written (the folder's
    # final name only adds the record id and a random suffix).
    probe_dir = os.path.join(ident.base_dir, *ident.sub_dirs, jobfiles.unique_folder_name(request.name, 0))
    resolve_path(request.output_path, "o", probe_dir, ident.confined, "-o")
    resolve_path(request.error_path, "e", probe_dir, ident.confined, "-e")
    try:
        with _single_writer(adapter.capabilities.rows_are_queue):
            return _record_and_submit(user, request, queue, adapter, ident, claim)
    except idempotency.DuplicateKey:
        if claim is None:
            raise  # never: only storing a claimed key finds a duplicate
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
    """Only around the one short transaction of a backend whose rows are its queue: never
    around a qsub."""
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


# Built once, and run on the session's connection: no ORM synchronisation of the session.
_ACKNOWLEDGED = (sa.update(Job).where(Job.id == sa.bindparam("seq"))
                 .values(scheduler_id=sa.bindparam("scheduler_id"), state="Q", output_path=sa.bindparam("output"),
                         error_path=sa.bindparam("error")))


def _record_and_submit(user: User, request: JobRequest, queue: str, adapter: SchedulerAdapter,
                       ident: JobIdentity, claim: idempotency.Claim | None = None) -> str:
    home = ident.home
    job = Job(backend=adapter.backend_label, owner=user.name, name=request.name, queue=queue,
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
    job.output_path = resolve_path(request.output_path, f"{request.name}.o{seq}", job_dir, ident.confined, "-o")
    job.error_path = resolve_path(request.error_path, f"{request.name}.e{seq}", job_dir, ident.confined, "-e")
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
    if adapter.capabilities.rows_are_queue:
        # One transaction: the row is the queue, so commit == acknowledged and durable.
        job_id = adapter.submit(request, context)
        db.session.commit()
        adapter.rows_committed()
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
        extra: dict[str, object] | None = {"stderr": exc.detail} if exc.detail else None
        raise ApiError(exc.status, exc.message, extra=extra) from None
    except jobfiles.JobFileError as exc:  # the job script could not be written safely
        job.state, job.deleted_at, job.comment = "F", utcnow(), f"refused: {exc.message}"
        idempotency.forget(job)
        db.session.commit()
        raise ApiError(exc.status, f"Unable to write the job script: {exc.message}") from None
    # One UPDATE by primary key: the row was expired by the commit above, and changing
    # it through the ORM would first reload all of it (a SELECT per submission).
    output, error = _scheduler_default_paths(request, job_id, job_dir, ident)
    db.session.connection().execute(_ACKNOWLEDGED, {"seq": seq, "scheduler_id": job_id, "output": output,
                                                    "error": error})
    db.session.commit()
    return job_id



def _scheduler_default_paths(request: JobRequest, job_id: str, job_dir: str,
                             ident: JobIdentity) -> tuple[str, str]:
    """PBS and Slurm name a default output <name>.o<their job number> (arrays
    <name>.o<number>.<index>), not after the service's record id: (output, error)."""
    number = job_id.split("[", 1)[0]
    suffix = f"{number}.^array_index^" if request.array else number
    output = resolve_path(request.output_path, f"{request.name}.o{suffix}", job_dir, ident.confined, "-o")
    error = resolve_path(request.error_path, f"{request.name}.e{suffix}", job_dir, ident.confined, "-e")
    if request.join == "oe":
        error = output
    elif request.join == "eo":
        output = error
    return output, error


def _check_dependency(user: User, dep_id: str) -> None:
    record = find_record(dep_id)
    if record is None or (record.owner != user.name and not user.is_admin):
        raise ApiError(400, f"-W depend: job {dep_id} does not exist")

