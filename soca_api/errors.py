"""Errors that reach a client, and the `{"success": false, "message": ...}` envelope."""
from __future__ import annotations

from flask import jsonify
from werkzeug.exceptions import HTTPException

# SOCA's own texts, which existing clients recognise (docs/reference/soca-contract.md).
JOB_GONE = "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"
NOT_OWNER = "You are not the owner of this resource"
SUBMIT_REFUSED = (
    "Unable to submit the job. Please verify your script file (eg: malformed inputs, syntax error, "
    "extra space in the PBS variables ...) or refer to the 'stderr' message."
)

_GENERIC = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    502: "The scheduler gave an unexpected answer",
    503: "Service unavailable",
    504: "The scheduler did not answer in time",
}


class ApiError(Exception):
    """An error with a status and a message that is safe to show as it is."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 extra: dict[str, object] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def missing_parameter(name: str) -> ApiError:
    return ApiError(400, f"Client input malformed. {name} (str) parameter is required")


def envelope(success: bool, message: object, status: int = 200, **extra: object):
    body = {"success": success, "message": message}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    return response


def error_response(exc: Exception):
    """The envelope for any exception; never a trace, never the request echoed back."""
    if isinstance(exc, ApiError):
        response = envelope(False, exc.message, exc.status, **exc.extra)
        response.headers.update(exc.headers)
        return response
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        response = envelope(False, _GENERIC.get(status, exc.name), status)
        # Keep the headers that carry meaning (Allow on 405, Retry-After on 429).
        for name, value in exc.get_headers():
            if name.lower() in ("allow", "retry-after"):
                response.headers[name] = value
        return response
    return envelope(False, _GENERIC[500], 500)
