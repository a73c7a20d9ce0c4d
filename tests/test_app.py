"""Accounts, API keys, authentication, the envelope, health, the spec and the schema."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from soca_api.extensions import db
from soca_api.models import ApiKey, User
from tests.conftest import PROJECT_DIR, make_data_dir, service_env

KEY_URL = "/api/user/api_key"


# -- keys and authentication ---------------------------------------------------------------
def test_user_reads_own_key_with_key_and_with_password(client, make_user):
    alice = make_user(password="Correct-Horse-9")
    response = client.get(f"{KEY_URL}?user={alice.name}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json == {"success": True, "message": alice.key}
    by_password = client.get(f"{KEY_URL}?user={alice.name}",
                             headers={"X-SOCA-USER": alice.name, "X-SOCA-PASSWORD": "Correct-Horse-9"})
    assert by_password.json == {"success": True, "message": alice.key}


def test_wrong_key_and_wrong_password_are_401_without_saying_which(client, user):
    wrong_key = client.get(f"{KEY_URL}?user={user.name}", headers={"X-SOCA-USER": user.name, "X-SOCA-TOKEN": "nope"})
    unknown_user = client.get(f"{KEY_URL}?user={user.name}",
                              headers={"X-SOCA-USER": "nobody_here", "X-SOCA-TOKEN": user.key})
    assert wrong_key.status_code == unknown_user.status_code == 401
    assert wrong_key.json == unknown_user.json == {"success": False, "message": "Invalid user and key pair"}


@pytest.mark.parametrize("headers, missing", [
    ({}, "X-SOCA-USER"),
    ({"X-SOCA-USER": "someone"}, "X-SOCA-TOKEN"),
])
def test_missing_header_is_named(client, headers, missing):
    response = client.get("/api/scheduler/jobs", headers=headers)
    assert response.status_code == 401
    assert missing in response.json["message"]
    assert response.json["success"] is False


def test_password_is_accepted_only_for_the_key_endpoint(client, make_user):
    bob = make_user(password="Another-Pass-77")
    response = client.get("/api/scheduler/jobs",
                          headers={"X-SOCA-USER": bob.name, "X-SOCA-PASSWORD": "Another-Pass-77"})
    assert response.status_code == 401


def test_revoke_then_get_returns_new_key_and_old_one_fails(client, user):
    revoked = client.delete(KEY_URL, headers=user.headers, data={"user": user.name})
    assert revoked.json == {"success": True, "message": "Successfully deactivated"}
    assert client.get(f"{KEY_URL}?user={user.name}", headers=user.headers).status_code == 401


def test_revoke_by_query_string_and_admin_fetches_new_key(client, user, admin):
    assert client.delete(f"{KEY_URL}?user={user.name}", headers=admin.headers).status_code == 200
    new_key = client.get(f"{KEY_URL}?user={user.name}", headers=admin.headers).json["message"]
    assert new_key != user.key
    ok = client.get(f"{KEY_URL}?user={user.name}", headers={"X-SOCA-USER": user.name, "X-SOCA-TOKEN": new_key})
    assert ok.json["message"] == new_key


def test_user_cannot_read_or_revoke_another_users_key(client, make_user):
    alice, bob = make_user(), make_user()
    assert client.get(f"{KEY_URL}?user={bob.name}", headers=alice.headers).status_code == 403
    assert client.delete(KEY_URL, headers=alice.headers, data={"user": bob.name}).status_code == 403
    assert client.get(f"{KEY_URL}?user={bob.name}", headers=bob.headers).json["message"] == bob.key


def test_invalid_user_parameter_is_rejected(client, admin):
    response = client.get(f"{KEY_URL}?user=../etc", headers=admin.headers)
    assert response.status_code == 400
    assert "user is invalid" in response.json["message"]
    missing = client.get(KEY_URL, headers=admin.headers)
    assert missing.json["message"] == "Client input malformed. user (str) parameter is required"


def test_database_holds_no_usable_key_or_password(app, make_user, stack):
    account = make_user(password="Secret-Pass-123")
    with app.app_context():
        rows = db.session.execute(sa.select(ApiKey.digest, ApiKey.sealed).join(User).where(
            User.name == account.name)).all()
        password_hash = db.session.execute(sa.select(User.password_hash).where(User.name == account.name)).scalar()
    assert rows and all(account.key not in digest + sealed for digest, sealed in rows)
    assert "Secret-Pass-123" not in password_hash
    if stack.kind == "sqlite":
        database_file = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
        for suffix in ("", "-wal"):
            if os.path.exists(database_file + suffix):
                # Read by another process: closing a descriptor of the database file here
                # would drop this process's SQLite locks.
                for secret in (account.key, "Secret-Pass-123"):
                    found = subprocess.run(["grep", "-c", "-a", "-F", secret, database_file + suffix],
                                           capture_output=True, text=True, timeout=30)
                    assert found.stdout.strip() == "0", f"{secret[:8]}... found in {suffix or 'the database'}"


def test_repeated_failures_are_rate_limited_with_retry_after(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "SOCA_AUTH_FAILURE_LIMIT", "3 per minute")
    monkeypatch.setitem(app.config, "SOCA_AUTH_CACHE_SECONDS", 0)  # every call checks the counts
    user = make_user()
    addr = {"REMOTE_ADDR": f"10.77.{os.getpid() % 250}.{len(user.name) % 250}"}  # a WSGI variable only
    for _ in range(3):
        bad = client.get("/api/scheduler/jobs", headers={"X-SOCA-USER": user.name, "X-SOCA-TOKEN": "bad"},
                         environ_base=addr)
        assert bad.status_code == 401
    blocked = client.get("/api/scheduler/jobs", headers=user.headers, environ_base=addr)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert blocked.json["success"] is False
    # Failures never count per user name alone: from elsewhere the user is not held back.
    other = client.get("/api/scheduler/jobs", headers=user.headers, environ_base={"REMOTE_ADDR": "10.78.0.1"})
    assert other.status_code == 200


def test_deactivated_user_key_fails_at_once(app, client, user):
    with app.app_context():
        db.session.execute(sa.update(User).where(User.name == user.name).values(is_active=False))
        db.session.commit()
    assert client.get("/api/scheduler/jobs", headers=user.headers).status_code == 401


# -- the envelope ------------------------------------------------------------------------
def test_framework_errors_use_the_envelope(client, user):
    not_found = client.get("/api/no/such/thing")
    assert not_found.status_code == 404
    assert not_found.json == {"success": False, "message": "Not found"}
    wrong_method = client.patch("/api/health")
    assert wrong_method.status_code == 405 and wrong_method.json["success"] is False
    assert "GET" in wrong_method.headers["Allow"]
    too_big = client.post("/api/scheduler/job", headers=user.headers,
                          data={"payload": "A" * (5 * 1024 * 1024)})
    assert too_big.status_code == 413 and too_big.json["success"] is False


def test_unexpected_error_is_500_without_trace(stack):
    from soca_api import create_app

    app = create_app({"SOCA_DATA_DIR": stack.data_dir, "SQLALCHEMY_DATABASE_URI": stack.app.config[
        "SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "x"})

    @app.route("/api/boom")
    def boom():
        raise RuntimeError("secret internals /etc/passwd")

    response = app.test_client().get("/api/boom")
    assert response.status_code == 500
    assert response.json == {"success": False, "message": "Internal server error"}
    assert b"Traceback" not in response.data and b"internals" not in response.data


def test_health_reports_database_and_scheduler(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json["message"]["database"] == "ok"
    assert response.json["message"]["scheduler"] == "ok"


# -- the API document ----------------------------------------------------------------------
def test_spec_is_valid_and_documents_every_api_route(app, client):
    from openapi_spec_validator import validate

    spec = client.get("/api/doc/apispec.json").json
    validate(spec)
    assert {"SocaUser", "SocaToken"} <= set(spec["securityDefinitions"])
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule.startswith("/api/doc"):
            continue
        documented = spec["paths"].get(rule.rule)
        assert documented is not None, f"{rule.rule} is missing from the spec"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = documented.get(method.lower())
            assert operation, f"{method} {rule.rule} is missing from the spec"
            assert operation.get("responses"), f"{method} {rule.rule} documents no answer"


def test_doc_page_loads_nothing_from_another_host(client):
    page = client.get("/api/doc/")
    assert page.status_code == 200
    html = page.data.decode()
    external = [url for url in re.findall(r'(?:src|href)="([^"]+)"', html)
                if url.startswith(("http://", "https://", "//")) and "github.com/rochacbruno" not in url]
    assert external == [], external
    assert "fonts.googleapis.com" not in html
    for asset in re.findall(r'(?:src|href)="(/api/doc/static/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset


# -- schema --------------------------------------------------------------------------------
def test_models_and_migrations_agree(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


# -- command line --------------------------------------------------------------------------
def _flask(env, *args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=PROJECT_DIR, env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_creates_user_and_resets_key():
    data_dir = make_data_dir()
    env = service_env(data_dir, f"sqlite:///{data_dir}/cli.db")
    assert _flask(env, "db", "upgrade").returncode == 0
    boot = _flask(env, "bootstrap")
    assert boot.returncode == 0 and "admin_api_key" in boot.stdout
    assert oct(os.stat(os.path.join(data_dir, "admin_api_key")).st_mode & 0o777) == "0o600"
    created = _flask(env, "user", "create", "carol", "--password-stdin", stdin="Blue-Sky-2024\n")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("soca_")
    reset = _flask(env, "user", "reset-key", "carol")
    new_key = reset.stdout.strip().splitlines()[-1]
    assert new_key.startswith("soca_") and new_key != key
    duplicate = _flask(env, "user", "create", "carol")
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    bad = _flask(env, "user", "create", "Bad Name")
    assert bad.returncode != 0


def test_sqlite_database_is_private_to_the_service(stack):
    if stack.kind != "sqlite":
        return
    path = stack.app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            assert os.stat(path + suffix).st_mode & 0o077 == 0, suffix


def test_a_second_app_on_the_same_database_leaves_it_usable(stack, client, user):
    """Creating an app must never open the existing SQLite file: closing that descriptor
    would drop this process's SQLite locks (a runner then saw a "disk I/O error")."""
    from soca_api import create_app

    create_app({"SOCA_DATA_DIR": stack.data_dir, "SECRET_KEY": "x",
                "SQLALCHEMY_DATABASE_URI": stack.app.config["SQLALCHEMY_DATABASE_URI"]})
    if stack.kind == "sqlite":
        import sqlite3

        path = stack.app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
        with sqlite3.connect(path) as other:  # as another process would read it
            assert other.execute("select count(*) from users").fetchone()[0] > 0
    assert client.get("/api/scheduler/jobs", headers=user.headers).status_code == 200
