"""The audit log of security events: who did what, when, from where."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import has_request_context, request

from soca_api.extensions import db
from soca_api.models import AuditEvent, iso_utc

PAGE = 100


def record(action: str, *, actor: str | None, target: str | None = None, success: bool = True,
           detail: str | None = None, commit: bool = True) -> AuditEvent:
    """Add one event; committed at once unless the caller commits it with its own change."""
    event = AuditEvent(
        action=action,
        actor=actor,
        target=target,
        success=success,
        detail=(detail or None) and detail[:2000],
        remote_addr=request.remote_addr if has_request_context() else "cli",
    )
    db.session.add(event)
    if commit:
        db.session.commit()
    return event


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
