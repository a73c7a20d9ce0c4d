"""The audit log of security events: who did what, when, from where."""
from __future__ import annotations

from flask import has_request_context, request

from soca_api.extensions import db
from soca_api.models import AuditEvent


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
