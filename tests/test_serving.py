"""A live gunicorn (two workers, HTTPS, Redis-shared rate limit, its own runner), driven with
the seed's curl commands verbatim."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

from tests.conftest import make_data_dir, service_env
from tests.external import require
from tests.helpers import SEED_PAYLOAD, encode
from tests.live import (
    create_user,
    flask_cli,
    free_port,
    kill_service,
    prepared_service,
    self_signed_pair,
    start_gunicorn,
)

REDIS_URL = os.environ.get("SOCA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:  # any failure to connect means "not available"
        return False



@pytest.fixture(scope="module")
def live():
    require(redis_available(), f"Redis at {REDIS_URL}")
    clear_rate_limits()
    data_dir = make_data_dir()
    cert, key = self_signed_pair(data_dir)
    port = free_port()
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db", SOCA_PORT=str(port), SOCA_HOST="127.0.0.1",
                      SOCA_TLS_CERT=cert, SOCA_TLS_KEY=key, SOCA_REDIS_URL=REDIS_URL, SOCA_WORKERS="2",
                      SOCA_AUTH_FAILURE_LIMIT="6 per minute", SOCA_ACCESS_LOG="")
    flask_cli(env, "db", "upgrade")
    alice_key = flask_cli(env, "user", "create", "alice").strip().splitlines()[-1]
    base = f"https://127.0.0.1:{port}"
    server = start_gunicorn(env, base, verify=cert)
    yield {"base": base, "cert": cert, "user": "alice", "key": alice_key, "data_dir": data_dir}
    server.terminate()
    server.wait(timeout=30)
    clear_rate_limits()


def clear_rate_limits() -> None:
    """Counts from an earlier run (same Redis) must not leak into this one."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter("LIMITS*"):
        client.delete(name)


def curl(live, *args: str) -> dict:
    """The seed's curl commands, with the test's CA instead of a public one."""
    done = subprocess.run(["curl", "-sS", "--cacert", live["cert"], *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_seed_curl_commands_verbatim_over_https(live):
    url, user, token = live["base"], live["user"], live["key"]
    submitted = curl(live, "-X", "POST", f"{url}/api/scheduler/job", "-H", f"X-SOCA-TOKEN: {token}",
                     "-H", f"X-SOCA-USER: {user}", "-F", f"payload={SEED_PAYLOAD}")
    assert submitted["success"] is True
    job_id = submitted["message"]
    got = curl(live, "-X", "GET", f"{url}/api/scheduler/job?job_id={job_id}", "-H", f"X-SOCA-TOKEN: {token}",
               "-H", f"X-SOCA-USER: {user}")
    assert got["success"] is True and got["message"]["Job_Name"] == "testjob"
    deleted = curl(live, "-X", "DELETE", f"{url}/api/scheduler/job?job_id={job_id}", "-H", f"X-SOCA-TOKEN: {token}",
                   "-H", f"X-SOCA-USER: {user}")
    assert deleted == {"success": True, "message": "Job deleted"}
    gone = curl(live, "-X", "GET", f"{url}/api/scheduler/job?job_id={job_id}", "-H", f"X-SOCA-TOKEN: {token}",
                "-H", f"X-SOCA-USER: {user}")
    assert gone == {"success": False,
                    "message": "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"}


def test_second_seed_job_runs_to_completion_under_gunicorn(live):
    headers = {"X-SOCA-USER": live["user"], "X-SOCA-TOKEN": live["key"]}
    job_id = requests.post(f"{live['base']}/api/scheduler/job", headers=headers,
                           files={"payload": (None, SEED_PAYLOAD)}, verify=live["cert"], timeout=10).json()["message"]
    deadline = time.time() + 20
    state = None
    while time.time() < deadline:
        attributes = requests.get(f"{live['base']}/api/scheduler/job", params={"job_id": job_id}, headers=headers,
                                  verify=live["cert"], timeout=10).json()["message"]
        state = attributes["job_state"]
        if state == "F":
            break
        time.sleep(0.1)
    assert state == "F" and attributes["Exit_status"] == 0
    with open(attributes["Output_Path"].split(":", 1)[1]) as handle:
        assert handle.read() == "Hello World\n"


def test_plain_http_is_refused_when_tls_is_on(live):
    with pytest.raises(requests.RequestException):
        requests.get(live["base"].replace("https", "http") + "/api/health", timeout=5)


def test_failures_are_counted_across_workers_through_redis(live):
    bad = {"X-SOCA-USER": "mallory", "X-SOCA-TOKEN": "guess"}
    statuses = []
    for _ in range(10):
        # A new connection each time, so the requests spread over both workers.
        with requests.Session() as session:
            statuses.append(session.get(f"{live['base']}/api/scheduler/jobs", headers=bad, verify=live["cert"],
                                        timeout=10).status_code)
    assert statuses[:6] == [401] * 6
    assert set(statuses[6:]) == {429}


def test_acknowledged_jobs_survive_killing_the_whole_service(tmp_path):
    """kill -9 of gunicorn's master, workers and runner right after the last answer."""
    env, base = prepared_service(SOCA_WORKERS="2")
    key = create_user(env, "dora")
    server = start_gunicorn(env, base)
    headers = {"X-SOCA-USER": "dora", "X-SOCA-TOKEN": key}
    script = encode("#!/bin/sh\n#PBS -N durable\necho kept\n")
    acknowledged = []
    with requests.Session() as session:
        for _ in range(25):
            answer = session.post(f"{base}/api/scheduler/job", headers=headers, files={"payload": (None, script)},
                                  timeout=10).json()
            assert answer["success"] is True
            acknowledged.append(answer["message"])
    kill_service(server)
    server = start_gunicorn(env, base)  # a new runner recovers and runs what was queued
    try:
        deadline = time.time() + 30
        states: dict[str, str] = {}
        while time.time() < deadline:
            listing = requests.get(f"{base}/api/scheduler/jobs?limit=1000", headers=headers, timeout=10).json()
            states = {job_id: listing["message"].get(job_id, {}).get("job_state") for job_id in acknowledged}
            if all(state == "F" for state in states.values()):
                break
            time.sleep(0.2)
        assert all(state == "F" for state in states.values()), states
    finally:
        server.terminate()
        server.wait(timeout=30)
