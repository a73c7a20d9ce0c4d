"""The audit log of security events: who did what, when, from where.

The services record their own changes: an operation decorated with `records` writes one
row when it is called with `actor=`, its success (with a detail built from its result) or
its failure (an ApiError, with its message; nothing half-done is committed). The API,
the CLI and the web pages only say who acts (`Actor`); the action names and the details
are written here and in the services, once.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
from flask import has_request_context, request

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import AuditEvent, iso_utc

PAGE = 100

# The administrative actions, whoever performs them (API, CLI or web page).
USER_CREATE = "user.create"
USER_READ = "user.read"
USER_LIST = "user.list"
USER_DELETE = "user.delete"
USER_ADMIN_READ = "user.admin_read"
USER_GRANT_ADMIN = "user.grant_admin"
USER_REVOKE_ADMIN = "user.revoke_admin"
USER_PASSWORD_RESET = "user.password_reset"
API_KEY_READ = "api_key.read"
API_KEY_RESET = "api_key.reset"
API_KEY_REVOKE = "api_key.revoke"
GROUP_CREATE = "group.create"
GROUP_READ = "group.read"
GROUP_LIST = "group.list"
GROUP_UPDATE = "group.update"
GROUP_DELETE = "group.delete"
QUEUE_CREATE = "queue.create"
QUEUE_READ = "queue.read"
QUEUE_UPDATE = "queue.update"
QUEUE_DELETE = "queue.delete"
AUDIT_READ = "audit.read"
# Job actions recorded by the API and the web pages (services.jobs records its refusals).
JOB_HOLD = "job.hold"
JOB_RELEASE = "job.release"
JOB_DELETE = "job.delete"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and through which door ("api", "web" or "cli").

    The web pages mark their rows: "web", or "web: <detail>". The CLI acts as nobody's
    account: its name ("cli", "bootstrap") is never a user's, even if a user has it.
    """

    name: str | None
    via: str = "api"

    def is_user(self, name: str) -> bool:
        """Whether the actor is that user, acting on their own account."""
        return self.via != "cli" and self.name == name

    def detail(self, text: str | None) -> str | None:
        if self.via == "web":
            return "web" + (f": {text}" if text else "")
        return text


CLI = Actor("cli", via="cli")
BOOTSTRAP = Actor("bootstrap", via="cli")


def record(action: str, *, actor: str | None, target: str | None = None, success: bool = True,
           detail: str | None = None, commit: bool = True) -> AuditEvent:
    """Add one event; committed at once unless the caller commits it with its own change."""
    event = AuditEvent(
        action=action,
        actor=actor,
        target=target and target[:128],  # the column's size; a longer name was refused anyway
        success=success,
        detail=(detail or None) and detail[:2000],
        remote_addr=request.remote_addr if has_request_context() else "cli",
    )
    db.session.add(event)
    if commit:
        db.session.commit()
    return event


@dataclass(slots=True)
class Change:
    """One audited change in progress: its target and, once it succeeded, its detail."""

    action: str
    actor: Actor | None
    target: str | None = None
    detail: str | None = None


_open_change: ContextVar[Change | None] = ContextVar("soca_audit_change", default=None)


@contextmanager
def change(action: str, actor: Actor | None, target: str | None = None) -> Iterator[Change]:
    """Record one change when it ends: its success, or its failure (an ApiError).

    A failure's row is committed without anything half-done. A change of the same action
    already open (the API opens one around its parameter checks) is joined, not doubled.
    Without an actor (an internal call) nothing is recorded.
    """
    outer = _open_change.get()
    if outer is not None and outer.action == action:
        outer.target = outer.target or target
        yield outer
        return
    current = Change(action, actor, target)
    token = _open_change.set(current)
    try:
        yield current
    except ApiError as exc:
        if actor is not None:
            db.session.rollback()  # the row is committed alone, without anything half-done
            record(action, actor=actor.name, target=current.target, success=False,
                   detail=actor.detail(exc.message))
        raise
    finally:
        _open_change.reset(token)
    if actor is not None:
        record(action, actor=actor.name, target=current.target, detail=actor.detail(current.detail))


Arguments = ParamSpec("Arguments")
Result = TypeVar("Result")


def records(action: str, *, target: str,
            detail: Callable[..., str | None] | None = None,
            ) -> Callable[[Callable[Arguments, Result]], Callable[Arguments, Result]]:
    """Make a service operation audit itself when it is called with `actor=`.

    The operation declares `actor: Actor | None = None` (and may use it). `target` names
    the parameter that holds what is changed (a name, or a record with a `.name`).
    `detail(result, **arguments)` describes a success from the operation's result and its
    arguments, `actor` among them.
    """

    def decorate(operation: Callable[Arguments, Result]) -> Callable[Arguments, Result]:
        signature = inspect.signature(operation)
        if "actor" not in signature.parameters or target not in signature.parameters:
            raise TypeError(f"{operation.__qualname__} must take `actor` and `{target}`")

        @wraps(operation)
        def audited(*args: Arguments.args, **kwargs: Arguments.kwargs) -> Result:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            subject = bound.arguments[target]
            with change(action, bound.arguments["actor"], getattr(subject, "name", subject)) as current:
                result = operation(*args, **kwargs)
                if detail is not None and current.actor is not None:
                    current.detail = detail(result, **{**bound.arguments, "actor": current.actor})
            return result

        return audited

    return decorate


def audit_page(*, actor: str | None = None, action: str | None = None, since: datetime | None = None,
               until: datetime | None = None, limit: int = PAGE,
               before: int | None = None) -> tuple[list[AuditEvent], int | None]:
    """One page of events, newest first, and the cursor for the next page (None: last page).

    The id is the cursor: it grows with every event, so pages stay stable while new
    events arrive.
    """
    query = sa.select(AuditEvent).order_by(AuditEvent.id.desc())
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None and action != "*":
        if action.endswith("*"):
            query = query.where(AuditEvent.action.startswith(action[:-1], autoescape=True))
        else:
            query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = list(db.session.execute(query.limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def event_view(event: AuditEvent) -> dict[str, object]:
    return {"id": event.id, "at": iso_utc(event.at), "actor": event.actor, "action": event.action,
            "target": event.target, "success": event.success, "detail": event.detail,
            "remote_addr": event.remote_addr}
