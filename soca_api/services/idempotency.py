"""Idempotent job submission: the `Idempotency-Key` header of POST /api/scheduler/job.

The key and a digest of the script are stored in the same transaction as the job row, so
there is no moment at which a job exists without its key (or the reverse), whatever is
killed when. A unique constraint on (owner, key) makes concurrent duplicates race
safely: the loser's insert fails and it answers the winner's job.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import IdempotencyKey, Job, utcnow
from soca_api.validation import IDEMPOTENCY_KEY, is_valid

HEADER = "Idempotency-Key"
LIFETIME = timedelta(hours=24)
KEY_RULE = "8 to 128 characters among A-Z a-z 0-9 _ . : - (a UUID fits)"


class DuplicateKey(Exception):
    """Another request stored the same key first (the caller rolled back)."""


@dataclass(frozen=True)
class Claim:
    owner: str
    key: str
    digest: str


def claim(owner: str, key: str | None, script: str) -> Claim | None:
    """The validated claim of a request, or None when it sent no key."""
    if key is None:
        return None
    if not is_valid(IDEMPOTENCY_KEY, key):
        raise ApiError(400, f"{HEADER} is invalid: it must be {KEY_RULE}")
    return Claim(owner, key, hashlib.sha256(script.encode("utf-8", "surrogatepass")).hexdigest())


def replay(request_claim: Claim) -> str | None:
    """The job id an earlier request with this key created, or None to submit anew.

    409 when the key came with another script, or when its first request has not been
    answered by the scheduler yet (retry later).
    """
    row = db.session.execute(sa.select(IdempotencyKey).where(
        IdempotencyKey.owner == request_claim.owner,
        IdempotencyKey.idempotency_key == request_claim.key)).scalar_one_or_none()
    if row is None:
        return None
    job = db.session.get(Job, row.job_id)
    if job is None:  # the foreign key (ON DELETE CASCADE) removes a key with its job
        raise RuntimeError(f"{HEADER} row refers to job {row.job_id}, which does not exist")
    expired = row.created_at < utcnow() - LIFETIME
    if expired or (job.scheduler_id is None and job.state == "F"):
        # Expired, or its first try created no job (refused, or given up after a crash):
        # the key is free again.
        db.session.delete(row)
        db.session.commit()
        return None
    if row.payload_digest != request_claim.digest:
        raise ApiError(409, f"This {HEADER} was already used with another payload")
    if job.scheduler_id is None:
        raise ApiError(409, f"The first request with this {HEADER} is still being submitted; retry later",
                       headers={"Retry-After": "5"})
    return job.scheduler_id


def record(job: Job, request_claim: Claim) -> None:
    """Store the key in the job's transaction (flushed now, so a duplicate fails here,
    before anything is written outside the database)."""
    db.session.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - LIFETIME))
    db.session.add(IdempotencyKey(owner=request_claim.owner, idempotency_key=request_claim.key,
                                  payload_digest=request_claim.digest, job_id=job.id))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise DuplicateKey from None


def forget(job: Job) -> None:
    """The job was refused: its key may be used again (committed with the refusal)."""
    db.session.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.job_id == job.id))
