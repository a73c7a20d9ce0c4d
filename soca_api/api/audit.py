"""The audit log, for admins: GET /api/audit, newest first, paged by a cursor."""
from __future__ import annotations

from datetime import UTC, datetime

from soca_api.api.base import ApiResource, admin_read
from soca_api.errors import ApiError
from soca_api.services import audit
from soca_api.validation import AUDIT_ACTION, AUDIT_ACTOR, AUDIT_PAGE_MAX, EVENT_ID_MAX


class AuditResource(ApiResource):
    @admin_read(audit.AUDIT_READ)
    def get(self):
        """Page through the audit log, newest first.
        ---
        tags: [Audit]
        summary: Read the audit log (admins)
        description: >
          Pass `next_before` from one page as `before` to get the next; it is null on the
          last page. `since` is inclusive, `until` exclusive; times without a zone are UTC.
        parameters:
          - {name: user, in: query, x-rule: audit_actor, required: false, allowEmptyValue: true, description: 'the actor (user name, "cli", ...)'}
          - {name: action, in: query, x-rule: audit_action, required: false, allowEmptyValue: true, description: 'an action (user.create) or a prefix ending in * (user.*)'}
          - {name: since, in: query, type: string, required: false, allowEmptyValue: true, maxLength: 40, description: 'ISO 8601, e.g. 2026-11-28T13:00:00Z'}
          - {name: until, in: query, type: string, required: false, allowEmptyValue: true, maxLength: 40, description: ISO 8601}
          - {name: limit, in: query, x-rule: audit_page, required: false, allowEmptyValue: true, description: 'events per page (default 100)'}
          - {name: before, in: query, x-rule: audit_cursor, required: false, allowEmptyValue: true, description: only events with a smaller id (the cursor)}
        responses:
          200: {description: '{"events": [{"id", "at", "actor", "action", "target", "success", "detail", "remote_addr"}], "next_before": id or null}'}
          400: {description: Invalid filter (named)}
        """
        actor = self.param("user", required=False, pattern=AUDIT_ACTOR)
        action = self.param("action", required=False, pattern=AUDIT_ACTION,
                            describe="an action such as user.create, or a prefix ending in *")
        limit = self.whole_number("limit", audit.PAGE, 1, AUDIT_PAGE_MAX)
        before = self.whole_number("before", None, 1, EVENT_ID_MAX)
        events, next_before = audit.audit_page(actor=actor, action=action, since=_timestamp(self, "since"),
                                               until=_timestamp(self, "until"), limit=limit, before=before)
        return self.ok({"events": [audit.event_view(e) for e in events], "next_before": next_before})


def _timestamp(resource: ApiResource, name: str) -> datetime | None:
    text = resource.param(name, required=False)
    if text is None:
        return None
    try:
        if len(text) > 40:
            raise ValueError(text)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} is invalid: use ISO 8601, e.g. 2026-11-28T13:00:00Z") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)  # stored as naive UTC
    return value
