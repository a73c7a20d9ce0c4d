"""soca-api: the SOCA-compatible HTTP/REST job service. `create_app` is the app factory."""
from __future__ import annotations

import contextlib
import logging
import os

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

import config as settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the runner and every gunicorn worker read while one writes; a commit is
    # on disk before the API answers, so a killed server loses no acknowledged job.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


event.listen(Engine, "connect", _sqlite_pragmas)


def _private_sqlite_file(uri: str) -> None:
    """The SQLite file (and so its -wal/-shm, which SQLite creates with the same mode) is
    for the service's account only: jobs may run as other accounts on this host."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # Never open (and close) an existing database file: closing any descriptor of it
    # drops every POSIX lock this process holds on it, under SQLite's feet.
    if not os.path.exists(path):
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix) and os.stat(path + suffix).st_mode & 0o077:
            os.chmod(path + suffix, 0o600)


class WebSessionInterface(SecureCookieSessionInterface):
    """Cookie sessions for the web pages only: the API authenticates every call by header,
    so its requests skip building a signing serializer for a cookie they never have."""

    def open_session(self, app, request):
        if request.path.startswith("/api/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def _drain_refused_body() -> None:
    """Read (and drop) the rest of a refused body of moderate size before answering 413:
    a server that closes with unread data resets the connection, and the client never
    reads the JSON answer. A body over four times the limit is not worth reading."""
    from flask import current_app

    length = request.content_length or 0
    if length > 4 * (current_app.config["MAX_CONTENT_LENGTH"] or 0):
        return
    stream = request.environ.get("wsgi.input")
    if stream is None:  # not a WSGI server's request: nothing to read
        return
    try:
        while length > 0:
            chunk = stream.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)
    except (OSError, ValueError):
        pass  # the client went away: nothing left to answer


def create_app(overrides: dict | None = None) -> Flask:
    from soca_api.json_provider import OrjsonProvider, loads_stored

    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.session_interface = WebSessionInterface()
    app.config.update(settings.from_env())
    if overrides:
        app.config.update(overrides)
    app.logger.setLevel(logging.INFO)
    _private_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
    # Job rows carry two JSON columns, decoded for every job of a listing.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"json_deserializer": loads_stored,
                                               **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {})}

    from soca_api import apidoc, cli, models, ratelimit, schedulers  # noqa: F401 - models registers the tables
    from soca_api.api import blueprint as api_blueprint
    from soca_api.errors import envelope, error_response
    from soca_api.extensions import csrf, db, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(settings.PROJECT_DIR / "migrations"))
    # Failure counts only: no hook runs on a request that does not fail to authenticate.
    ratelimit.init_app(app)
    csrf.init_app(app)
    schedulers.init_app(app)

    csrf.exempt(api_blueprint)  # the API authenticates every call by header, not cookie
    app.register_blueprint(api_blueprint)
    from soca_api.web import blueprint as web_blueprint
    app.register_blueprint(web_blueprint)
    apidoc.init_app(app)
    cli.init_app(app)

    from soca_api.web.errors import error_page

    # Errors outside any route (an unknown URL): JSON under /api/, the site's page elsewhere.
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return error_response(exc)
        return error_page(exc.code or 500)

    @app.after_request
    def api_options_and_hsts(response):
        # Flask answers OPTIONS itself with an empty HTML page: under /api/ it is the
        # envelope too, listing the methods (also in the Allow header).
        if (request.method == "OPTIONS" and request.path.startswith("/api/")
                and response.status_code == 200 and response.mimetype != "application/json"):
            allowed = response.headers.get("Allow", "")
            response = envelope(True, [m.strip() for m in allowed.split(",") if m.strip()])
            response.headers["Allow"] = allowed
        if response.status_code == 413:
            _drain_refused_body()
        if request.is_secure and app.config["SOCA_HSTS_SECONDS"] > 0:
            response.headers["Strict-Transport-Security"] = f"max-age={app.config['SOCA_HSTS_SECONDS']}"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        if request.path.startswith("/api/"):
            return error_response(exc)
        return error_page(500)

    return app
