"""A live HTTPS gunicorn: every answer under /api/ is the JSON envelope (gunicorn's own 414
and 431 included), HSTS on every answer, and a clean stop logs no error."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from tests.conftest import make_data_dir, service_env
from tests.live import flask_cli, free_port, self_signed_pair, start_gunicorn


@pytest.fixture(scope="module")
def live_tls():
    data_dir = make_data_dir()
    cert, key = self_signed_pair(data_dir)
    port = free_port()
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db", SOCA_PORT=str(port), SOCA_TLS_CERT=cert,
                      SOCA_TLS_KEY=key, SOCA_WORKERS="2", SOCA_ACCESS_LOG="", SOCA_HSTS_SECONDS="31536000")
    flask_cli(env, "db", "upgrade")
    user_key = flask_cli(env, "user", "create", "hana").strip().splitlines()[-1]
    base = f"https://127.0.0.1:{port}"
    server = start_gunicorn(env, base, verify=cert)
    yield {"base": base, "cert": cert, "server": server, "data_dir": data_dir,
           "headers": {"X-SOCA-USER": "hana", "X-SOCA-TOKEN": user_key}}
    if server.poll() is None:
        server.terminate()
        server.wait(timeout=30)


def fetch(live, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, live["base"] + path, verify=live["cert"], timeout=15, **kwargs)


def assert_envelope(response: requests.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) >= {"success", "message"} and body["success"] is (status < 400)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_options_is_the_envelope_with_the_allowed_methods(live_tls):
    response = fetch(live_tls, "OPTIONS", "/api/scheduler/job")
    assert_envelope(response, 200)
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= set(response.json()["message"])
    assert "POST" in response.headers["Allow"]
    assert_envelope(fetch(live_tls, "OPTIONS", "/api/no/such/route"), 404)


def test_405_and_413_are_the_envelope(live_tls):
    wrong = fetch(live_tls, "PATCH", "/api/health")
    assert_envelope(wrong, 405)
    assert "GET" in wrong.headers["Allow"]
    too_big = fetch(live_tls, "POST", "/api/scheduler/job", headers=live_tls["headers"],
                    data={"payload": "A" * (5 * 1024 * 1024)})
    assert_envelope(too_big, 413)


def test_gunicorns_own_414_and_431_are_the_envelope(live_tls):
    long_line = fetch(live_tls, "GET", "/api/scheduler/jobs?user=" + "a" * 9000, headers=live_tls["headers"])
    assert_envelope(long_line, 414)
    assert "a" * 50 not in long_line.text  # nothing of the request echoed back
    many = {f"X-Extra-{n}": "1" for n in range(120)}
    assert_envelope(fetch(live_tls, "GET", "/api/health", headers=many), 431)
    assert_envelope(fetch(live_tls, "GET", "/api/health", headers={"X-Big": "b" * 9000}), 431)


def test_hsts_on_every_answer(live_tls):
    for method, path in (("GET", "/api/health"), ("GET", "/api/scheduler/jobs"), ("GET", "/login"),
                         ("GET", "/no-such-page"), ("GET", "/api/doc/apispec.json")):
        response = fetch(live_tls, method, path)
        assert response.headers.get("Strict-Transport-Security") == "max-age=31536000", (path, response.headers)


def test_a_clean_stop_logs_no_error(live_tls):
    """SIGTERM to the whole service (master, workers, runner), as systemd or Ctrl-C does."""
    server = live_tls["server"]
    children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
    for pid in [server.pid, *map(int, children)]:
        os.kill(pid, signal.SIGTERM)
    assert server.wait(timeout=60) == 0
    with open(os.path.join(live_tls["data_dir"], "gunicorn.log")) as handle:
        log = handle.read()
    assert "scheduler runner stopped (exit 0)" in log or "scheduler runner started" in log
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]
