"""What the spec states is what the server enforces: out of range is a 400, never clamped."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("query", [
    "/api/scheduler/jobs?limit=1001", "/api/scheduler/jobs?limit=0", "/api/scheduler/jobs?before=-1",
    "/api/scheduler/job/output?job_id=1&tail=0", "/api/scheduler/job/output?job_id=1&tail=10001",
    "/api/scheduler/job/output?job_id=1&length=1048577", "/api/scheduler/job/output?job_id=1&length=0",
    "/api/scheduler/jobs?user=Not+A+Name", "/api/scheduler/jobs?queue=1bad",
])
def test_out_of_range_is_400(client, user, query):
    response = client.get(query, headers=user.headers)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and "invalid" in response.json["message"]


def test_the_edges_are_accepted(client, user):
    assert client.get("/api/scheduler/jobs?limit=1000", headers=user.headers).status_code == 200
    assert client.get("/api/scheduler/jobs?limit=1", headers=user.headers).status_code == 200


def test_spec_states_the_enforced_patterns_and_limits(client):
    spec = client.get("/api/doc/apispec.json").json

    def parameter(path, method, name, where):
        return next(p for p in spec["paths"][path][method]["parameters"] if p["name"] == name and p["in"] == where)

    listing = parameter("/api/scheduler/jobs", "get", "limit", "query")
    assert (listing["minimum"], listing["maximum"]) == (1, 1000)
    assert parameter("/api/scheduler/jobs", "get", "user", "query")["pattern"] == "^[a-z_][a-z0-9_.-]{0,31}$"
    from soca_api.validation import EMAIL, JOB_ID

    assert parameter("/api/scheduler/job", "get", "job_id", "query")["pattern"] == JOB_ID.pattern
    assert parameter("/api/ldap/user", "post", "email", "formData")["pattern"] == EMAIL.pattern
    assert parameter("/api/scheduler/queue", "get", "name", "query")["maxLength"] == 15
    key = parameter("/api/scheduler/job", "post", "Idempotency-Key", "header")
    assert (key["minLength"], key["maxLength"]) == (8, 128)
    tail = parameter("/api/scheduler/job/output", "get", "tail", "query")
    assert (tail["minimum"], tail["maximum"]) == (1, 10000)


def test_hsts_only_over_https_and_options_is_the_envelope(client):
    assert "Strict-Transport-Security" not in client.get("/api/health").headers
    secure = client.get("/api/health", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    options = client.options("/api/scheduler/jobs")
    assert options.status_code == 200 and options.json["success"] is True
    assert set(options.json["message"]) == {"GET", "HEAD", "OPTIONS"}
