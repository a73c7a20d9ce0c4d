"""Authentication at scale: failure counts that cannot be turned against a user, shared by
every worker; a per-worker cache of verified keys that never outlives a revocation."""
from __future__ import annotations

import http.client
import json
import os
import shlex
import time

import pytest
import sqlalchemy as sa

from tests.conftest import make_data_dir, service_env
from tests.helpers import job_attributes, submit
from tests.live import flask_cli, free_port, start_gunicorn


# -- in process (test client, one address per WSGI environ) --------------------------------
def test_wrong_keys_for_admin_from_one_address_leave_admin_working_from_another(app, client, make_user,
                                                                             monkeypatch):
    monkeypatch.setitem(app.config, "SOCA_AUTH_FAILURE_LIMIT", "10 per minute")
    monkeypatch.setitem(app.config, "SOCA_AUTH_CACHE_SECONDS", 0)  # every call meets the counts
    admin = make_user(admin=True)
    attacker = {"REMOTE_ADDR": "127.0.0.2"}
    statuses = [client.get("/api/scheduler/jobs", environ_base=attacker,
                           headers={"X-SOCA-USER": admin.name, "X-SOCA-TOKEN": f"guess-{i}"}).status_code
                for i in range(30)]
    assert statuses == [401] * 10 + [429] * 20
    # (127.0.0.1 itself carries the failures of the other tests of this session: the live
    # test below uses it; here another address stands for the admin's.)
    ok = client.get("/api/scheduler/jobs", headers=admin.headers, environ_base={"REMOTE_ADDR": "127.0.5.1"})
    assert ok.status_code == 200
    # Another user from the attacker's address is held back too (the address counts).
    other = make_user()
    assert client.get("/api/scheduler/jobs", headers=other.headers, environ_base=attacker).status_code == 429


def test_a_key_verified_moments_ago_is_checked_against_revocation(app, client, make_user):
    from soca_api.extensions import db
    from soca_api.models import User

    account = make_user()
    assert client.get("/api/scheduler/jobs", headers=account.headers).status_code == 200  # now cached
    revoked = client.delete(f"/api/user/api_key?user={account.name}", headers=account.headers)
    assert revoked.status_code == 200
    assert client.get("/api/scheduler/jobs", headers=account.headers).status_code == 401

    second = make_user()
    assert client.get("/api/scheduler/jobs", headers=second.headers).status_code == 200
    with app.app_context():  # admin rights follow at once as well
        db.session.execute(sa.update(User).where(User.name == second.name).values(is_admin=True))
        db.session.commit()
    assert client.get("/api/scheduler/jobs?user=root", headers=second.headers).status_code == 200


# GET /api/scheduler/job confirms a cached key in the query that reads the job's row.
HELD = "#!/bin/sh\n#PBS -N held\n#PBS -h\ntrue\n"


def _statements_of(app, call):
    """The SQL statements `call` makes the app's engine run."""
    from soca_api.extensions import db

    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


def test_a_cached_key_reading_a_job_costs_one_statement(app, client, make_user):
    account = make_user()
    job_id = submit(client, account, HELD)
    assert job_attributes(client, account, job_id).status_code == 200  # the key is cached now
    statements = _statements_of(app, lambda: job_attributes(client, account, job_id))
    assert len(statements) == 1, statements  # the job's row and the caller's epoch together
    assert "credentials_epoch" in statements[0]


@pytest.mark.parametrize("job_id", ["{job}", "999999999", "12.34.x"])  # found, unknown, invalid
def test_a_revoked_key_reading_a_job_answers_401_at_once(client, make_user, job_id):
    account = make_user()
    job = submit(client, account, HELD)
    assert job_attributes(client, account, job).status_code == 200  # cached
    assert client.delete(f"/api/user/api_key?user={account.name}", headers=account.headers).status_code == 200
    answer = job_attributes(client, account, job_id.format(job=job))
    assert answer.status_code == 401, answer.json
    assert "Job_Name" not in answer.get_data(as_text=True)


def test_a_deactivated_or_deleted_user_reading_a_job_answers_401_at_once(app, client, make_user, admin):
    from soca_api.extensions import db
    from soca_api.models import User

    first, second = make_user(), make_user()
    jobs = {account.name: submit(client, account, HELD) for account in (first, second)}
    for account in (first, second):
        assert job_attributes(client, account, jobs[account.name]).status_code == 200  # cached
    with app.app_context():  # deactivated outside the service: no epoch bump
        db.session.execute(sa.update(User).where(User.name == first.name).values(is_active=False))
        db.session.commit()
    assert job_attributes(client, first, jobs[first.name]).status_code == 401
    assert client.delete(f"/api/ldap/user?user={second.name}", headers=admin.headers).status_code == 200
    assert job_attributes(client, second, jobs[second.name]).status_code == 401


def test_admin_rights_given_or_taken_apply_at_once_to_reading_a_job(app, client, make_user):
    from soca_api.extensions import db
    from soca_api.models import User

    owner, reader = make_user(), make_user()
    job_id = submit(client, owner, HELD)
    own = submit(client, reader, HELD)
    assert job_attributes(client, reader, own).status_code == 200  # cached, not an admin
    assert job_attributes(client, reader, job_id).status_code == 404

    def set_admin(value: bool) -> None:
        with app.app_context():  # outside the service: no epoch bump, only the flag
            db.session.execute(sa.update(User).where(User.name == reader.name).values(is_admin=value))
            db.session.commit()

    set_admin(True)
    assert job_attributes(client, reader, job_id).status_code == 200
    set_admin(False)
    assert job_attributes(client, reader, job_id).status_code == 404
    assert job_attributes(client, reader, own).status_code == 200


# -- a live gunicorn with 2 workers, counts in the database ---------------------------------
def _get(port: int, source: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    """One request on a new connection from `source` (any 127/8 address reaches 127.0.0.1)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _delete(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("DELETE", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def two_workers():
    data_dir = make_data_dir()
    port = free_port()
    access_log = os.path.join(data_dir, "access.log")
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db", SOCA_PORT=str(port), SOCA_WORKERS="2",
                      SOCA_AUTH_FAILURE_LIMIT="10 per minute", SOCA_AUTH_CACHE_SECONDS="120",
                      SOCA_ACCESS_LOG=access_log)
    env.pop("SOCA_REDIS_URL", None)
    # The access log names the worker that answered: the test proves both took part.
    env["GUNICORN_CMD_ARGS"] = "--access-logformat " + shlex.quote("%(p)s %(h)s %(s)s %(U)s")
    flask_cli(env, "db", "upgrade")
    admin_key = flask_cli(env, "user", "create", "root_admin", "--admin").strip().splitlines()[-1]
    server = start_gunicorn(env, f"http://127.0.0.1:{port}")
    yield {"port": port, "env": env, "log": access_log, "admin": {"X-SOCA-USER": "root_admin",
                                                                   "X-SOCA-TOKEN": admin_key}}
    server.terminate()
    server.wait(timeout=30)


def _log_lines(live, since: int) -> list[list[str]]:
    with open(live["log"]) as handle:
        return [line.split() for line in handle.readlines()[since:]]


def _log_length(live) -> int:
    with open(live["log"]) as handle:
        return len(handle.readlines())


def _both_workers_cache(live, headers: dict[str, str]) -> None:
    """Call until each worker has answered 200 with this key (so each holds it in its cache)."""
    start = _log_length(live)
    for attempt in range(400):
        assert _get(live["port"], "127.0.0.1", "/api/scheduler/jobs", headers)[0] == 200
        time.sleep(0.01 * (attempt % 3))  # vary timing so the kernel wakes either worker
        served = {fields[0] for fields in _log_lines(live, start) if fields[2] == "200"}
        if len(served) >= 2:
            return
    pytest.fail("one worker answered every call: cannot show the cache of both")


def test_failure_limit_is_exact_across_two_workers_and_spares_the_victim(two_workers):
    live = two_workers
    start = _log_length(live)
    guesses = {"X-SOCA-USER": "root_admin", "X-SOCA-TOKEN": "not-the-key"}
    statuses = [_get(live["port"], "127.0.0.2", "/api/scheduler/jobs", guesses)[0] for _ in range(30)]
    assert statuses == [401] * 10 + [429] * 20
    pids = {fields[0] for fields in _log_lines(live, start) if fields[1] == "127.0.0.2"}
    assert len(pids) == 2, "both workers must have answered the guesses"
    status, body = _get(live["port"], "127.0.0.1", "/api/scheduler/jobs", live["admin"])
    assert status == 200 and body["success"] is True


def test_revoked_key_and_deleted_user_answer_401_at_once_on_both_workers(two_workers):
    live = two_workers
    key = flask_cli(live["env"], "user", "create", "carol").strip().splitlines()[-1]
    carol = {"X-SOCA-USER": "carol", "X-SOCA-TOKEN": key}
    _both_workers_cache(live, carol)
    assert _delete(live["port"], "/api/user/api_key?user=carol", carol) == 200
    start = _log_length(live)
    # One address per call: the 401s must not reach the failure limit of any address.
    statuses = [_get(live["port"], f"127.0.1.{i + 1}", "/api/scheduler/jobs", carol)[0] for i in range(40)]
    assert statuses == [401] * 40
    assert len({fields[0] for fields in _log_lines(live, start)}) == 2

    key = flask_cli(live["env"], "user", "create", "dave").strip().splitlines()[-1]
    dave = {"X-SOCA-USER": "dave", "X-SOCA-TOKEN": key}
    _both_workers_cache(live, dave)
    assert _delete(live["port"], "/api/ldap/user?user=dave", live["admin"]) == 200
    statuses = [_get(live["port"], f"127.0.2.{i + 1}", "/api/scheduler/jobs", dave)[0] for i in range(40)]
    assert statuses == [401] * 40

    key = flask_cli(live["env"], "user", "create", "erin").strip().splitlines()[-1]
    erin = {"X-SOCA-USER": "erin", "X-SOCA-TOKEN": key}
    _both_workers_cache(live, erin)
    engine = sa.create_engine(live["env"]["SOCA_DATABASE_URL"])
    with engine.begin() as connection:  # deactivated outside the service (an admin's SQL)
        connection.execute(sa.text("UPDATE users SET is_active = false WHERE name = 'erin'"))
    engine.dispose()
    statuses = [_get(live["port"], f"127.0.3.{i + 1}", "/api/scheduler/jobs", erin)[0] for i in range(40)]
    assert statuses == [401] * 40
