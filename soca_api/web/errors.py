"""HTML error pages for the web routes, security headers, and template filters.

The API keeps its JSON envelope: these handlers are the blueprint's, so they only see
errors raised while serving a web page.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from flask import current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from soca_api.web.site import blueprint

TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
}

# Nothing from another host, no inline script or style, no framing, forms post here only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def error_page(status: int, message: str | None = None):
    title = TITLES.get(status, "Error")
    return render_template("web/error.html", status=status, title=title, message=message), status


@blueprint.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError):
    return error_page(400, "The form was not sent from this site or has expired "
                           f"({exc.description.rstrip('.')}). Go back, reload the page and try again.")


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    response = error_page(exc.code or 500, exc.description if exc.code in (403, 404, 409, 413) else None)
    if isinstance(exc, MethodNotAllowed):  # the one HTTPException with code 405
        return response[0], 405, {"Allow": ", ".join(exc.valid_methods or [])}
    return response


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception):
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    return error_page(500, "The error was logged. Try again, or tell your administrator.")


@blueprint.after_request
def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    # Pages show keys, jobs and output: never from a shared or back-button cache.
    headers.setdefault("Cache-Control", "no-store")
    return response


# -- template helpers ----------------------------------------------------------------------
_asset_versions: dict[str, str] = {}


@blueprint.app_template_global("asset_url")
def asset_url(filename: str) -> str:
    """/static/<file>?v=<content hash>: cached by browsers, refreshed when it changes."""
    from flask import url_for

    version = _asset_versions.get(filename)
    if version is None:
        path = Path(current_app.static_folder or "") / filename
        try:
            version = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        except OSError:
            version = "0"
        _asset_versions[filename] = version
    return url_for("static", filename=filename, v=version)


@blueprint.app_template_filter("pbs_time")
def pbs_time(text: object) -> str:
    """qstat's "Fri Nov 28 13:05:02 2025" as "2025-11-28 13:05:02"; anything else as is."""
    if not isinstance(text, str) or not text:
        return ""
    try:
        return datetime.strptime(text, "%a %b %d %H:%M:%S %Y").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


@blueprint.app_template_global("now_time")
def now_time() -> str:
    return datetime.now().strftime("%H:%M:%S")


@blueprint.app_template_filter("utc")
def utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


STATE_NAMES = {
    "Q": "Queued", "R": "Running", "H": "Held", "W": "Waiting", "E": "Exiting", "F": "Finished",
    "B": "Array running", "S": "Suspended", "U": "Suspended", "T": "Submitting", "X": "Finished",
}


@blueprint.app_template_filter("state_name")
def state_name(state: object) -> str:
    return STATE_NAMES.get(str(state), str(state))
