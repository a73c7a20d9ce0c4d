"""Counting failed authentications (bad keys, bad passwords), shared by every worker.

Only failures count, so a busy script with a good key is never slowed down, while
guessing is stopped. Failures count per client address and per (address, user name)
pair, never per user name alone: otherwise anyone could keep a user out by failing in
that user's name.

The counts live where every gunicorn worker (and every API instance) sees them: in Redis
with the `limits` library's fixed-window strategy when SOCA_REDIS_URL is set, else in the
service's database (`auth_failures`). Never in a process's memory, where N workers would
make the real limit N times the documented one.
"""
from __future__ import annotations

import math
import time

import sqlalchemy as sa
from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from soca_api.extensions import db
from soca_api.models import AuthFailure

_EXTENSION = "soca_failure_counts"


def identifiers(name: str | None) -> tuple[str, ...]:
    """What a failure by `name` from this request's address counts against."""
    address = request.remote_addr or "unknown"
    return (f"addr:{address}",) + ((f"pair:{address}/{name[:64]}",) if name else ())


class RedisCounts:
    """`limits`' fixed windows in Redis (keys LIMITS:*)."""

    def __init__(self, url: str) -> None:
        self.storage = storage_from_string(url)
        self.limiter = FixedWindowRateLimiter(self.storage)

    def retry_after(self, item: RateLimitItem, scope: str, subjects: tuple[str, ...]) -> int | None:
        worst = None
        for subject in subjects:
            if not self.limiter.test(item, scope, subject):
                reset_at, _remaining = self.limiter.get_window_stats(item, scope, subject)
                worst = max(worst or 0, max(1, math.ceil(reset_at - time.time())))
        return worst

    def count(self, item: RateLimitItem, scope: str, subjects: tuple[str, ...]) -> None:
        for subject in subjects:
            self.limiter.hit(item, scope, subject)


class DatabaseCounts:
    """Fixed windows in the `auth_failures` table: one row per subject, updated atomically.

    A window opens at a subject's first failure and lasts the limit's period; a failure
    after it opens the next one. Each failure is one upsert (SQLite and PostgreSQL both
    evaluate the SET expressions against the row as it was), so concurrent workers never
    lose a count.
    """

    def retry_after(self, item: RateLimitItem, scope: str, subjects: tuple[str, ...]) -> int | None:
        period = item.get_expiry()
        now = time.time()
        rows = db.session.execute(
            sa.select(AuthFailure.window_start, AuthFailure.failures)
            .where(AuthFailure.subject.in_([f"{scope}/{subject}" for subject in subjects]))
        ).all()
        worst = None
        for window_start, failures in rows:
            ends = window_start + period
            if failures >= item.amount and ends > now:
                worst = max(worst or 0, max(1, math.ceil(ends - now)))
        return worst

    def count(self, item: RateLimitItem, scope: str, subjects: tuple[str, ...]) -> None:
        period = item.get_expiry()
        now = time.time()
        table = AuthFailure.__table__
        assert isinstance(table, sa.Table)  # (typed as any FromClause) a plain mapped table
        stale = table.c.window_start <= now - period
        # Its own short transaction: the request's session may hold unrelated work.
        with db.engine.begin() as connection:
            for subject in subjects:
                values = {"subject": f"{scope}/{subject}", "window_start": now, "failures": 1}
                updates = {"failures": sa.case((stale, 1), else_=table.c.failures + 1),
                           "window_start": sa.case((stale, now), else_=table.c.window_start)}
                connection.execute(_upsert(connection.dialect.name, table, values, updates))
            # Windows long over say nothing any more: keep the table small.
            connection.execute(sa.delete(table).where(table.c.window_start < now - period,
                                                      table.c.subject.startswith(f"{scope}/")))


def _upsert(dialect: str, table: sa.Table, values: dict, updates: dict) -> sa.Insert:
    # Each dialect's own INSERT ... ON CONFLICT (the same call on two unrelated classes).
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).values(**values).on_conflict_do_update(
            index_elements=[table.c.subject], set_=updates)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).values(**values).on_conflict_do_update(
            index_elements=[table.c.subject], set_=updates)
    raise RuntimeError(f"failure counts need SQLite or PostgreSQL (or SOCA_REDIS_URL), not {dialect}")


def init_app(app: Flask) -> None:
    url = app.config.get("SOCA_REDIS_URL")
    app.extensions[_EXTENSION] = RedisCounts(url) if url else DatabaseCounts()


def _counts():
    return current_app.extensions[_EXTENSION]


def retry_after(setting: str, *subjects: str) -> int | None:
    """Seconds to wait when any subject is over the limit named by `setting`, else None."""
    return _counts().retry_after(parse(current_app.config[setting]), setting, subjects)


def count_failure(setting: str, *subjects: str) -> None:
    _counts().count(parse(current_app.config[setting]), setting, subjects)
