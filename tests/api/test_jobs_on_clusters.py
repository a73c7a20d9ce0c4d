"""The same API over the real Slurm, over Slurm's Torque wrappers (PBS text dialect),
and over the replayed OpenPBS with injected faults."""
from __future__ import annotations

import os
import pwd
import subprocess
import threading
import time
import uuid
from datetime import datetime

import pytest

from soca_api.errors import JOB_GONE
from soca_api.extensions import db
from soca_api.models import Queue
from tests.conftest import build_stack
from tests.external import require_slurm
from tests.fakepbs.fakepbs import FakePbs
from tests.helpers import (
    SEED_PAYLOAD,
    api_user,
    encode,
    ensure_posix_user,
    job_attributes,
    reachable_bin,
    submit,
    wait_for_listed_state,
    wait_for_state,
)


def fresh(prefix: str) -> str:
    """A user name no POSIX account has: its jobs get new folders under the data folder
    (a POSIX account of a fixed name keeps folders from earlier runs)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def slurm_app(tmp_path_factory):
    require_slurm()
    data = tmp_path_factory.mktemp("slurmdb")
    stack = build_stack("sqlite", f"sqlite:///{data}/soca.db", SOCA_SCHEDULER="slurm")
    return stack.app


@pytest.fixture(scope="module")
def torque_app(tmp_path_factory):
    require_slurm()
    data = tmp_path_factory.mktemp("torquedb")
    stack = build_stack("sqlite", f"sqlite:///{data}/soca.db", SOCA_SCHEDULER="pbs", SOCA_PBS_DIALECT="text")
    return stack.app


def squeue_user(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10).stdout
    return out.split("UserId=", 1)[1].split("(", 1)[0]


# -- Slurm ---------------------------------------------------------------------------------
def test_seed_flow_on_slurm_runs_as_the_posix_user(slurm_app):
    client = slurm_app.test_client()
    account = api_user(slurm_app, ensure_posix_user())
    job_id = client.post("/api/scheduler/job", headers=account.headers, data={"payload": SEED_PAYLOAD}).json["message"]
    assert job_id.isdigit()
    attributes = wait_for_state(client, account, job_id, "F", timeout=60)
    assert attributes["Job_Name"] == "testjob" and attributes["queue"] == "normal"
    assert attributes["Exit_status"] == 0
    assert squeue_user(job_id) == account.name
    output = attributes["Output_Path"].split(":", 1)[1]
    assert output.endswith("/testjob_output.qlog")
    deadline = time.time() + 10
    while time.time() < deadline and not os.path.exists(output):
        time.sleep(0.2)
    with open(output) as handle:
        assert "Hello World" in handle.read()
    if os.geteuid() == 0:
        assert os.stat(output).st_uid == pwd.getpwnam(account.name).pw_uid


def test_seed_steps_submit_get_delete_get_on_slurm(slurm_app):
    client = slurm_app.test_client()
    account = api_user(slurm_app, "slurmuser2")
    job_id = submit(client, account, "#!/bin/sh\n#PBS -N sleeper\n#PBS -q high\nsleep 60\n")
    assert wait_for_state(client, account, job_id, "QR", timeout=30)["queue"] == "high"
    deleted = client.delete(f"/api/scheduler/job?job_id={job_id}", headers=account.headers)
    assert deleted.json == {"success": True, "message": "Job deleted"}
    assert job_attributes(client, account, job_id).json == {"success": False, "message": JOB_GONE}
    listing = client.get("/api/scheduler/jobs", headers=account.headers).json["message"]
    assert job_id not in listing


def test_slurm_refusals_carry_sbatch_words(slurm_app):
    client = slurm_app.test_client()
    account = api_user(slurm_app, "slurmuser3")
    with slurm_app.app_context():
        db.session.add(Queue(name="nopartition", enabled=True, rules={}))
        db.session.commit()
    refused = client.post("/api/scheduler/job", headers=account.headers,
                          data={"payload": encode("#!/bin/sh\n#PBS -q nopartition\ntrue\n")})
    assert refused.status_code == 400
    assert refused.json["message"].startswith("Unable to submit the job.")
    assert "partition" in refused.json["stderr"].lower()
    wrong_type = client.post("/api/scheduler/job", headers=account.headers,
                             data={"payload": encode("#!/bin/sh\n#PBS -l instance_type=m5.large\ntrue\n")})
    assert wrong_type.status_code == 400 and wrong_type.json["stderr"]
    unknown = job_attributes(client, account, "987654")
    assert unknown.status_code == 404 and unknown.json["message"] == JOB_GONE


def test_other_user_cannot_see_a_slurm_job(slurm_app):
    client = slurm_app.test_client()
    owner, stranger = api_user(slurm_app, "slurmowner"), api_user(slurm_app, "slurmstranger")
    job_id = submit(client, owner, "#!/bin/sh\nsleep 20\n")
    assert job_attributes(client, stranger, job_id).status_code == 404
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=stranger.headers).status_code == 404
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=owner.headers).status_code == 200


# -- PBS text dialect over Slurm's Torque wrappers --------------------------------------------
def test_pbs_adapter_over_torque_wrappers_runs_and_reads_back(torque_app):
    client = torque_app.test_client()
    account = api_user(torque_app, fresh("torqueuser"))
    job_id = submit(client, account, "#!/bin/sh\n#PBS -N wrapped\necho from-torque\n")
    attributes = wait_for_state(client, account, job_id, "F", timeout=60)
    assert attributes["Job_Name"] == "wrapped"
    assert attributes["Job_Owner"].startswith(f"{account.name}@") or attributes["Job_Owner"].startswith(
        f"{ensure_posix_user()}@") or "@" in attributes["Job_Owner"]
    running = submit(client, account, "#!/bin/sh\n#PBS -N longer\nsleep 60\n")
    wait_for_state(client, account, running, "QR", timeout=30)
    assert client.delete(f"/api/scheduler/job?job_id={running}", headers=account.headers).status_code == 200
    assert job_attributes(client, account, running).status_code == 404


# -- replayed OpenPBS faults through the API ------------------------------------------------
# (a refusal a real server gives is tested against it: tests/schedulers/pbs/test_openpbs.py)
# The seed names its job; the adapter adds direct write of the output files.
SEED_QSUB = ["qsub", "-k", "doe", "testjob.sh"]

@pytest.fixture
def fake_pbs_app(tmp_path):
    bin_dir = reachable_bin("bin")
    fake = FakePbs(bin_dir)
    stack = build_stack("sqlite", f"sqlite:///{tmp_path}/soca.db", SOCA_SCHEDULER="pbs", SOCA_PBS_DIALECT="json",
                        SOCA_PBS_BIN=bin_dir, SOCA_SCHEDULER_TIMEOUT=1.0)
    return stack.app, fake


def test_hanging_qsub_is_504_within_timeout_and_others_are_served(fake_pbs_app):
    app, fake = fake_pbs_app
    fake.add(SEED_QSUB, stdout="1.pbshost\n", sleep=30).write()
    account = api_user(app, fresh("pbshang"))
    results: dict[str, object] = {}

    def slow_submit():
        started = time.monotonic()
        response = app.test_client().post("/api/scheduler/job", headers=account.headers,
                                          data={"payload": SEED_PAYLOAD})
        results["status"], results["seconds"] = response.status_code, time.monotonic() - started

    worker = threading.Thread(target=slow_submit)
    worker.start()
    time.sleep(0.2)
    quick = app.test_client().get("/api/scheduler/jobs", headers=account.headers)
    assert quick.status_code == 200 and worker.is_alive()
    worker.join(10)
    assert results["status"] == 504 and results["seconds"] < 2.0


def test_missing_qsub_is_503_and_garbage_is_502(tmp_path):
    bin_dir = reachable_bin("bin")
    FakePbs(bin_dir, commands=("qstat", "qdel")).write()
    stack = build_stack("sqlite", f"sqlite:///{tmp_path}/soca.db", SOCA_SCHEDULER="pbs", SOCA_PBS_DIALECT="json",
                        SOCA_PBS_BIN=bin_dir)
    account = api_user(stack.app, fresh("pbsmissing"))
    missing = stack.app.test_client().post("/api/scheduler/job", headers=account.headers,
                                           data={"payload": SEED_PAYLOAD})
    assert missing.status_code == 503 and missing.json["success"] is False

    bin_dir2 = reachable_bin("bin2")
    FakePbs(bin_dir2).add(SEED_QSUB, stdout="<html>garbage</html>\n").write()
    stack2 = build_stack("sqlite", f"sqlite:///{tmp_path}/soca2.db", SOCA_SCHEDULER="pbs", SOCA_PBS_DIALECT="json",
                         SOCA_PBS_BIN=bin_dir2)
    account2 = api_user(stack2.app, fresh("pbsgarbage"))
    garbage = stack2.app.test_client().post("/api/scheduler/job", headers=account2.headers,
                                            data={"payload": SEED_PAYLOAD})
    assert garbage.status_code == 502
    assert "garbage" not in garbage.get_data(as_text=True)


def next_slurm_job_id() -> int:
    """One more than the newest job Slurm knows (finished ones stay listed for MinJobAge)."""
    ids = subprocess.run(["squeue", "--all", "-t", "all", "-h", "-o", "%i"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    return max((int(job.split("_", 1)[0]) for job in ids), default=0) + 1


def test_nothing_reaches_slurm_when_a_queue_rule_fails(tmp_path):
    require_slurm()
    stack = build_stack("sqlite", f"sqlite:///{tmp_path}/soca.db", SOCA_SCHEDULER="slurm")
    from soca_api.services import queues

    with stack.app.app_context():
        queues.update_queue("normal", changes={"restricted_parameters": "instance_type", "max_cpus_per_job": "1"})
        queues.update_queue("high", changes={"allowed_users": "someone_else"})
    account = api_user(stack.app, fresh("ruleduser"))
    client = stack.app.test_client()
    before = next_slurm_job_id()
    refused = [
        SEED_PAYLOAD,  # instance_type is restricted on normal
        encode("#!/bin/sh\n#PBS -l ncpus=2\ntrue\n"),  # over max_cpus_per_job
        encode("#!/bin/sh\n#PBS -q high\ntrue\n"),  # not an allowed user
    ]
    for payload in refused:
        response = client.post("/api/scheduler/job", headers=account.headers, data={"payload": payload})
        assert response.status_code in (400, 403), response.json
        assert "queue" in response.json["message"]
    assert next_slurm_job_id() == before, "a refused job reached Slurm"
    accepted = submit(client, account, "#!/bin/sh\ntrue\n")
    assert next_slurm_job_id() > before and accepted.isdigit()


def test_nothing_reaches_pbs_when_a_queue_rule_fails(fake_pbs_app):
    app, fake = fake_pbs_app
    from soca_api.services import queues

    with app.app_context():
        queues.update_queue("normal", changes={"restricted_parameters": "instance_type"})
    account = api_user(app, fresh("pbsruled"))
    response = app.test_client().post("/api/scheduler/job", headers=account.headers, data={"payload": SEED_PAYLOAD})
    assert response.status_code == 403
    assert fake.calls("qsub") == []


# -- Slurm with the reconciler: what users read agrees with Slurm ---------------------------
@pytest.fixture(scope="module")
def slurm_live(tmp_path_factory):
    """The Slurm backend as deployed: `flask scheduler run` reconciles the job rows."""
    require_slurm()
    data = tmp_path_factory.mktemp("slurmlive")
    settings = {"SOCA_SCHEDULER": "slurm", "SOCA_SCHEDULER_CACHE_SECONDS": 1.0}
    stack = build_stack("sqlite", f"sqlite:///{data}/soca.db", **settings)
    stack.env.update({key: str(value) for key, value in settings.items()})
    stack.start_runner()
    yield stack
    stack.stop_runner()


def scontrol_fields(job_id: str) -> dict[str, str]:
    from soca_api.schedulers.slurm.parsers import parse_scontrol_job

    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10).stdout
    return parse_scontrol_job(out)


def test_slurm_listing_final_record_and_default_output_come_from_slurm(slurm_live):
    client = slurm_live.app.test_client()
    account = api_user(slurm_live.app, ensure_posix_user())
    name = f"sl{uuid.uuid4().hex[:6]}"
    job_id = submit(client, account, f"#!/bin/sh\n#PBS -N {name}\necho from-slurm\nexit 4\n")
    finished = wait_for_listed_state(client, account, job_id, "F")
    assert finished["Exit_status"] == 4
    out = client.get(f"/api/scheduler/job/output?job_id={job_id}", headers=account.headers).json["message"]
    assert out["path"].endswith(f"/{name}.o{job_id}") and out["data"] == "from-slurm\n"
    final = client.get(f"/api/scheduler/job/final?job_id={job_id}", headers=account.headers).json["message"]
    truth = scontrol_fields(job_id)
    assert final["Exit_status"] == 4 and truth["ExitCode"] == "4:0"
    assert final["exec_host"] == truth["NodeList"]
    started = datetime.strptime(truth["StartTime"], "%Y-%m-%dT%H:%M:%S")
    assert final["stime"] == started.strftime("%a %b %e %H:%M:%S %Y")
    assert final["Output_Path"].endswith(f"/{name}.o{job_id}")


def test_slurm_array_subjobs_belong_to_the_arrays_owner(slurm_live):
    client = slurm_live.app.test_client()
    owner = api_user(slurm_live.app, f"slo{uuid.uuid4().hex[:6]}")
    stranger = api_user(slurm_live.app, f"sls{uuid.uuid4().hex[:6]}")
    array_id = submit(client, owner, "#!/bin/sh\n#PBS -N arr\n#PBS -J 1-2\necho task $PBS_ARRAY_INDEX\n")
    assert array_id.endswith("[]")
    first = array_id.replace("[]", "[1]")
    assert job_attributes(client, stranger, first).status_code == 404
    wait_for_listed_state(client, owner, array_id, "F")
    sub = job_attributes(client, owner, first)
    assert sub.status_code == 200 and sub.json["message"]["job_state"] == "F"
    assert client.delete(f"/api/scheduler/job?job_id={first}", headers=stranger.headers).status_code == 404
    out = client.get(f"/api/scheduler/job/output?job_id={first}", headers=owner.headers)
    assert out.status_code == 200, out.json
    assert first not in client.get("/api/scheduler/jobs", headers=owner.headers).json["message"]
