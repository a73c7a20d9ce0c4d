"""schemathesis over the whole published spec, against a live gunicorn, as a normal user and
as an admin: no 5xx, every answer of a documented status and content type (JSON) that
conforms to its documented schema, and 405 with Allow for methods the spec does not list."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from tests.live import create_user, flask_cli, prepared_service, start_gunicorn

SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance,unsupported_method")
EXAMPLES_PER_OPERATION = "30"  # with the coverage phase: about 1,700 requests per user, ~15 s


@pytest.fixture(scope="module")
def live_api():
    # Missing and wrong credentials are part of what is generated: they must not lock
    # the test users out, so the failure limit is out of reach for this server.
    env, base = prepared_service(SOCA_AUTH_FAILURE_LIMIT="1000000 per minute")
    accounts = {name: create_user(env, name) for name in ("fuzzuser", "fuzzadmin")}
    flask_cli(env, "user", "grant-admin", "fuzzadmin")
    server = start_gunicorn(env, base)
    yield {"base": base, "accounts": accounts}
    server.terminate()
    server.wait(timeout=30)


def run_schemathesis(live_api, name: str, folder, *extra: str) -> str:
    key = live_api["accounts"][name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCA_")}
    done = subprocess.run(
        [SCHEMATHESIS, "run", f"{live_api['base']}/api/doc/apispec.json",
         "-H", f"X-SOCA-USER: {name}", "-H", f"X-SOCA-TOKEN: {key}",
         "--phases", "examples,coverage,fuzzing", "--max-examples", EXAMPLES_PER_OPERATION,
         "--seed", "1313", "--workers", "2", "--request-timeout", "30", "--warnings", "off", *extra],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("name", ["fuzzuser", "fuzzadmin"])
def test_schemathesis_finds_nothing(live_api, name, tmp_path):
    output = run_schemathesis(live_api, name, tmp_path, "--checks", CHECKS)
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > 500, output[-2000:]
    # The run tested something real: the caller was still itself at the end.
    answer = requests.get(f"{live_api['base']}/api/scheduler/jobs", timeout=10,
                          headers={"X-SOCA-USER": name, "X-SOCA-TOKEN": live_api["accounts"][name]})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("name", ["fuzzuser", "fuzzadmin"])
def test_every_query_outside_the_spec_is_refused(live_api, name, tmp_path):
    """Negative data only: a query value outside the stated pattern, length, enum or range
    must be a 4xx, never accepted (nor clamped). Forms are left out: the server ignores
    unknown form fields, which a Swagger 2.0 form cannot state."""
    run_schemathesis(live_api, name, tmp_path, "--include-method", "GET", "--mode", "negative",
                     "--checks", "negative_data_rejection,not_a_server_error,status_code_conformance,"
                     "content_type_conformance")
