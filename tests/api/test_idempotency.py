"""Idempotency-Key on POST /api/scheduler/job: a retried submission never makes a second job,
on every backend, concurrently, and after a kill -9 of the whole service."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import requests
import sqlalchemy as sa

from soca_api.extensions import db
from soca_api.models import IdempotencyKey, Job, utcnow
from tests.conftest import build_stack
from tests.external import require_slurm
from tests.helpers import SEED_PAYLOAD, encode
from tests.live import create_user, kill_service, prepared_service, start_gunicorn

URL = "/api/scheduler/job"


def post(client, account, payload: str, key: str | None):
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(URL, headers=headers, data={"payload": payload})


def jobs_of(app, owner: str) -> list[Job]:
    with app.app_context():
        return list(db.session.execute(sa.select(Job).where(Job.owner == owner, Job.parent_id.is_(None))).scalars())


def test_same_key_answers_the_first_job_and_creates_nothing(app, client, user):
    key = str(uuid.uuid4())
    script = encode("#!/bin/sh\n#PBS -N idem\ntrue\n")
    first = post(client, user, script, key)
    again = post(client, user, script, key)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json == {"success": True, "message": first.json["message"]}
    assert len(jobs_of(app, user.name)) == 1
    # Another base64 spelling of the same script is the same payload.
    unpadded = post(client, user, script.rstrip("="), key)
    assert unpadded.json == first.json


def test_same_key_with_another_script_is_409(app, client, user):
    key = uuid.uuid4().hex
    assert post(client, user, encode("#!/bin/sh\ntrue\n"), key).status_code == 200
    other = post(client, user, encode("#!/bin/sh\nfalse\n"), key)
    assert other.status_code == 409 and other.json["success"] is False
    assert "Idempotency-Key" in other.json["message"]
    assert len(jobs_of(app, user.name)) == 1


def test_keys_belong_to_one_user(app, client, make_user):
    alice, bob = make_user(), make_user()
    key = uuid.uuid4().hex
    script = encode("#!/bin/sh\ntrue\n")
    first = post(client, alice, script, key).json["message"]
    second = post(client, bob, script, key).json["message"]
    assert first != second


def test_invalid_keys_are_400_and_create_nothing(app, client, user):
    script = encode("#!/bin/sh\ntrue\n")
    for key in ("", "short", "has space in it", "x" * 129, "semi;colon-key", "ünïcödé-key"):
        response = client.post(URL, headers={**user.headers, "Idempotency-Key": key.encode().decode("latin-1")},
                               data={"payload": script})
        assert response.status_code == 400, key
        assert response.json["message"].startswith("Idempotency-Key is invalid"), response.json
    assert jobs_of(app, user.name) == []
    assert post(client, user, script, "A" * 128).status_code == 200
    assert post(client, user, script, "a1:b2.c3_d4-e5").status_code == 200


def test_an_expired_key_makes_a_new_job(app, client, user):
    key = uuid.uuid4().hex
    script = encode("#!/bin/sh\ntrue\n")
    first = post(client, user, script, key).json["message"]
    with app.app_context():
        db.session.execute(sa.update(IdempotencyKey).where(IdempotencyKey.owner == user.name).values(
            created_at=utcnow() - timedelta(hours=24, minutes=1)))
        db.session.commit()
    second = post(client, user, script, key).json["message"]
    assert second != first
    assert post(client, user, script, key).json["message"] == second
    with app.app_context():
        rows = db.session.execute(sa.select(IdempotencyKey).where(IdempotencyKey.owner == user.name)).scalars().all()
    assert len(rows) == 1  # the expired one is gone


def test_concurrent_duplicates_make_one_job(app, user):
    key = uuid.uuid4().hex
    script = encode("#!/bin/sh\n#PBS -N racing\ntrue\n")
    answers: list[tuple[int, object]] = []
    start = threading.Barrier(6)

    def attempt():
        client = app.test_client()
        start.wait()
        response = post(client, user, script, key)
        answers.append((response.status_code, response.json["message"]))

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 6
    assert {status for status, _ in answers} == {200}, answers
    assert len({message for _, message in answers}) == 1, answers
    assert len(jobs_of(app, user.name)) == 1


def test_array_job_replays_its_array_id(app, client, user):
    key = uuid.uuid4().hex
    script = encode("#!/bin/sh\n#PBS -J 1-3\ntrue\n")
    first = post(client, user, script, key).json["message"]
    assert first.endswith("[]")
    assert post(client, user, script, key).json["message"] == first
    assert len(jobs_of(app, user.name)) == 1


# -- external schedulers -------------------------------------------------------------------
def test_idempotent_submit_on_slurm(tmp_path):
    require_slurm()
    from tests.helpers import api_user, ensure_posix_user

    stack = build_stack("sqlite", f"sqlite:///{tmp_path}/soca.db", SOCA_SCHEDULER="slurm")
    client = stack.app.test_client()
    account = api_user(stack.app, ensure_posix_user())
    key = uuid.uuid4().hex
    script = encode("#!/bin/sh\n#PBS -N idemslurm\ntrue\n")
    first = post(client, account, script, key)
    again = post(client, account, script, key)
    assert first.status_code == 200 and first.json == again.json
    assert len(jobs_of(stack.app, account.name)) == 1
    assert post(client, account, encode("#!/bin/sh\nfalse\n"), key).status_code == 409


def test_idempotent_submit_on_pbs_calls_qsub_once_and_a_refusal_frees_the_key(tmp_path):
    from tests.fakepbs.fakepbs import FakePbs, load_fixture
    from tests.helpers import api_user, reachable_bin

    bin_dir = reachable_bin("bin")
    fake = FakePbs(bin_dir)
    stack = build_stack("sqlite", f"sqlite:///{tmp_path}/soca.db", SOCA_SCHEDULER="pbs", SOCA_PBS_DIALECT="json",
                        SOCA_PBS_BIN=bin_dir)
    client = stack.app.test_client()
    account = api_user(stack.app, "pbsidem")
    key = uuid.uuid4().hex
    recorded = load_fixture("01_qsub_seed_asis_unknown_resource.txt")
    fake.add(["qsub", "-k", "doe", "testjob.sh"], stdout=recorded.stdout, stderr=recorded.stderr,
             exit_code=recorded.exit_code)
    refused = post(client, account, SEED_PAYLOAD, key)
    assert refused.status_code == 400
    # The refusal created no job: the same key may try again, and now qsub accepts.
    fake.add(["qsub", "-k", "doe", "testjob.sh"], stdout="4242.pbshost\n")
    first = post(client, account, SEED_PAYLOAD, key)
    again = post(client, account, SEED_PAYLOAD, key)
    assert first.status_code == 200 and first.json == again.json == {"success": True, "message": "4242"}
    assert len(fake.calls("qsub")) == 2  # the refused try and the accepted one; none for the retry


# -- kill -9 between the two tries ---------------------------------------------------------
def test_a_retry_after_kill_9_of_the_whole_service_gets_the_same_job():
    env, base = prepared_service(SOCA_WORKERS="2")
    key = create_user(env, "ida")
    headers = {"X-SOCA-USER": "ida", "X-SOCA-TOKEN": key, "Idempotency-Key": str(uuid.uuid4())}
    script = encode("#!/bin/sh\n#PBS -N oncejob\necho once\n")
    server = start_gunicorn(env, base)
    try:
        first = requests.post(f"{base}{URL}", headers=headers, files={"payload": (None, script)}, timeout=10).json()
        assert first["success"] is True
        kill_service(server)
        server = start_gunicorn(env, base)
        again = requests.post(f"{base}{URL}", headers=headers, files={"payload": (None, script)}, timeout=10).json()
        assert again == first
        listing = requests.get(f"{base}/api/scheduler/jobs?limit=1000", headers=headers, timeout=10).json()
        assert list(listing["message"]) == [first["message"]]
    finally:
        server.terminate()
        server.wait(timeout=30)
