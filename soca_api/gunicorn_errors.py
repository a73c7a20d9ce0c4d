"""JSON for the answers gunicorn gives itself, before the app sees the request.

gunicorn refuses an over-long request line (414), too many or too large header fields
(431) and malformed HTTP (400) with an HTML page. Every client of this service reads the
`{"success": false, "message": ...}` envelope, so gunicorn.conf.py installs this writer in
place of gunicorn's. It never echoes the request (gunicorn's page quotes it).
"""
from __future__ import annotations

import json

MESSAGES = {
    400: "Bad request: malformed HTTP",
    403: "Forbidden",
    414: "Request line too long",
    417: "Expectation failed",
    431: "Request header fields too large",
    500: "Internal server error",
    501: "Not implemented",
}


def json_error_writer(hsts_seconds: int = 0):
    """A replacement for gunicorn.util.write_error (same signature); `hsts_seconds` > 0
    adds Strict-Transport-Security, for a server that serves HTTPS."""
    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):  # noqa: ARG001 - mesg echoes the request
        body = json.dumps({"success": False, "message": MESSAGES.get(status_int, reason)}).encode()
        head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
        if hsts_seconds > 0:
            head += f"Strict-Transport-Security: max-age={hsts_seconds}\r\n"
        util.write_nonblock(sock, head.encode("latin-1") + b"\r\n" + body)

    return write_error
