"""The database schema. It is created only by the migrations in migrations/."""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from soca_api.extensions import Model, db


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with its zone."""
    return value.isoformat(timespec="seconds") + "Z" if value else None


group_members = sa.Table(
    "group_members",
    db.metadata,
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)


class User(Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    password_hash: Mapped[str | None] = mapped_column(sa.String(256))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped on password reset or deletion: every web session of an older epoch ends.
    session_epoch: Mapped[int] = mapped_column(default=0)
    # Bumped when a key of the user is revoked or the user is deleted: the per-worker
    # cache of verified keys (services/accounts.py) compares it on every call.
    credentials_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column()

    groups: Mapped[list[Group]] = relationship(secondary=group_members, back_populates="members")


class Group(Model):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    gid: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[User]] = relationship(secondary=group_members, back_populates="groups")


class ApiKey(Model):
    """An API key: a keyed digest to authenticate, and an encrypted copy to show again.

    Neither column lets a copy of the database authenticate without the server secret.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    sealed: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class AuthFailure(Model):
    """Failed authentications of one subject (an address, or an address and a user name)
    in the current window; the database's copy of the counts when no Redis is configured."""

    __tablename__ = "auth_failures"

    subject: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    window_start: Mapped[float] = mapped_column(sa.Float, index=True)  # Unix time
    failures: Mapped[int] = mapped_column()


class AuditEvent(Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    target: Mapped[str | None] = mapped_column(sa.String(128))
    success: Mapped[bool] = mapped_column(default=True)
    detail: Mapped[str | None] = mapped_column(sa.Text)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))


class Queue(Model):
    __tablename__ = "queues"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(15), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    rules: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Model):
    """Every job the service accepted, whatever the backend: its record and history.

    On the local backend this row IS the queue; on PBS and Slurm it is the service's own
    record (owner, script, final state) beside what the scheduler reports.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        sa.UniqueConstraint("backend", "scheduler_id", name="uq_jobs_backend_scheduler_id"),
        sa.Index("ix_jobs_state_id", "state", "id"),
        sa.Index("ix_jobs_owner_id", "owner", "id"),
        # Listings: a user's jobs in one state, newest first; a user's recent finished jobs.
        sa.Index("ix_jobs_owner_state_id", "owner", "state", "id"),
        sa.Index("ix_jobs_owner_finished_at", "owner", "finished_at"),
        # The runner's look for waiting jobs that may move (held by a dependency, not by
        # the user): thousands of user-held jobs must not be read on every pass.
        sa.Index("ix_jobs_state_hold", "state", "hold"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    backend: Mapped[str] = mapped_column(sa.String(16))
    scheduler_id: Mapped[str | None] = mapped_column(sa.String(64))
    owner: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(230))
    queue: Mapped[str] = mapped_column(sa.String(15))
    state: Mapped[str] = mapped_column(sa.String(1), default="Q")
    substate: Mapped[int | None] = mapped_column()
    script: Mapped[str] = mapped_column(sa.Text)
    request: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    job_dir: Mapped[str | None] = mapped_column(sa.Text)
    output_path: Mapped[str | None] = mapped_column(sa.Text)
    error_path: Mapped[str | None] = mapped_column(sa.Text)
    ncpus: Mapped[int] = mapped_column(default=1)
    nodes: Mapped[int] = mapped_column(default=1)
    walltime_seconds: Mapped[int | None] = mapped_column()
    rerunable: Mapped[bool] = mapped_column(default=True)
    hold: Mapped[bool] = mapped_column(default=False)
    start_after: Mapped[datetime | None] = mapped_column()
    parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    array_index: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    exit_status: Mapped[int | None] = mapped_column()
    run_count: Mapped[int] = mapped_column(default=0)
    pid: Mapped[int | None] = mapped_column()
    proc_start: Mapped[str | None] = mapped_column(sa.String(32))
    exec_host: Mapped[str | None] = mapped_column(sa.String(255))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    delete_requested: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[datetime | None] = mapped_column()
    # PBS / Slurm: the job as the scheduler last reported it (a JobInfo as JSON, written
    # by the reconciler from its snapshot) and when; readers answer from it.
    scheduler_record: Mapped[dict | None] = mapped_column(sa.JSON)
    synced_at: Mapped[datetime | None] = mapped_column()


class IdempotencyKey(Model):
    """A client's Idempotency-Key for one job submission, written in the job's own
    transaction: a retry finds the job the first try created, even after a crash."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # Concurrent duplicates: the second insert fails instead of making a second job.
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_idempotency_keys_owner_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(32))
    idempotency_key: Mapped[str] = mapped_column(sa.String(128))
    payload_digest: Mapped[str] = mapped_column(sa.String(64))
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class JobAccount(Model):
    """The dedicated uid a root service gives an API user without an eligible POSIX account.

    Rows are never deleted: a uid handed out once is never given to anyone else, so files
    left by one user's jobs can never be read by another's.
    """

    __tablename__ = "job_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    uid: Mapped[int] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SchedulerLease(Model):
    """Who runs the one reconciler of a deployment: held while renewed before it expires."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[datetime] = mapped_column()
    # When the holder last finished a snapshot: readers trust the job rows while it is recent.
    refreshed_at: Mapped[datetime | None] = mapped_column()
