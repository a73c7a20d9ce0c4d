"""Every job endpoint against the real OpenPBS 23.06.06 (../shared/openpbs/install.sh),
with jobs running as non-root POSIX users and the reconciler running as in production
(`flask scheduler run`), so reads come from its snapshot in the job rows."""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import time

import pytest

from soca_api.extensions import db
from soca_api.models import Job, utcnow
from tests.conftest import build_stack
from tests.external import PBS_BIN, require, require_openpbs
from tests.helpers import SEED_PAYLOAD, Account, encode, job_attributes, submit, wait_for_listed_state

JOB_GONE = "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"
OWNER, OTHER = "pbsalice", "pbsbob"  # POSIX accounts (.ci/run: PBS_USERS)


def ensure_posix(name: str) -> None:
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)


def qstat_x(job_id: str) -> dict:
    """What `qstat -x -f -F json` says about one job (as root)."""
    out = subprocess.run([f"{PBS_BIN}/qstat", "-x", "-f", "-F", "json", job_id], capture_output=True, text=True,
                         timeout=20)
    jobs = json.loads(out.stdout, strict=False).get("Jobs", {})
    return next(iter(jobs.values()), {})


def qsub_as(user: str, script: str, cwd: str) -> str:
    """A job submitted outside the service, with the real qsub, as `user`."""
    account = pwd.getpwnam(user)
    path = os.path.join(cwd, f"outside-{time.time_ns()}.sh")
    with open(path, "w") as handle:
        handle.write(script)
    os.chown(path, account.pw_uid, account.pw_gid)
    done = subprocess.run([f"{PBS_BIN}/qsub", path], cwd=cwd, capture_output=True, text=True, timeout=20,
                          user=account.pw_uid, group=account.pw_gid, env={"PATH": f"{PBS_BIN}:/usr/bin:/bin",
                                                                         "HOME": account.pw_dir})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(".", 1)[0]


@pytest.fixture(scope="module")
def pbs(tmp_path_factory):
    require_openpbs()
    require(os.geteuid() == 0, "A root test run (jobs run as their POSIX users only under a root service)")
    for name in (OWNER, OTHER):
        ensure_posix(name)
    data = tmp_path_factory.mktemp("openpbsdb")
    settings = {"SOCA_SCHEDULER": "pbs", "SOCA_PBS_BIN": PBS_BIN, "SOCA_SCHEDULER_CACHE_SECONDS": 1.0}
    stack = build_stack("sqlite", f"sqlite:///{data}/soca.db", **settings)
    stack.env.update({key: str(value) for key, value in settings.items()})
    stack.start_runner()  # the reconciler
    yield stack
    stack.stop_runner()


_accounts: dict[tuple[int, str], Account] = {}


def account(app, name: str, admin: bool = False) -> Account:
    """The API user of a POSIX account (created once per app)."""
    from soca_api.services import accounts

    cached = _accounts.get((id(app), name))
    if cached is None:
        with app.app_context():
            _user, key = accounts.create_user(name, is_admin=admin)
        cached = _accounts[(id(app), name)] = Account(name, key, None, admin)
    return cached


def got(client, who: Account, job_id: str, states: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        response = job_attributes(client, who, job_id)
        last = response.json
        if response.status_code == 200 and response.json["message"]["job_state"] in states:
            return response.json["message"]
        time.sleep(0.2)
    raise AssertionError(f"GET never showed {job_id} in {states}; last {last}")


def output(client, who: Account, job_id: str, stream: str = "stdout"):
    return client.get(f"/api/scheduler/job/output?job_id={job_id}&stream={stream}", headers=who.headers)


def test_seed_flow_after_a_job_submitted_outside_the_service(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    outside = qsub_as(OWNER, "#!/bin/sh\n#PBS -N outside\nsleep 1\n", pwd.getpwnam(OWNER).pw_dir)
    admin = account(pbs.app, "pbsadmin", admin=True)
    # A job the service has no record of: an admin sees it (one direct query), its owner
    # (who did not submit it through the service) and others do not.
    assert job_attributes(client, admin, outside).json["message"]["Job_Name"] == "outside"

    response = client.post("/api/scheduler/job", headers=alice.headers, data={"payload": SEED_PAYLOAD})
    assert response.json["success"] is True
    job_id = response.json["message"]
    assert job_id.isdigit() and int(job_id) > int(outside)
    assert job_attributes(client, alice, job_id).json["message"]["Job_Name"] == "testjob"
    finished = wait_for_listed_state(client, alice, job_id, "F")
    assert finished["Exit_status"] == 0 and finished["project"] == "myproject"
    path = finished["Output_Path"].split(":", 1)[1]
    assert path.endswith("/testjob_output.qlog")
    with open(path) as handle:
        assert "Hello World" in handle.read()
    assert os.stat(path).st_uid == pwd.getpwnam(OWNER).pw_uid
    deleted = client.delete(f"/api/scheduler/job?job_id={job_id}", headers=alice.headers)
    assert deleted.json == {"success": True, "message": "Job deleted"}
    assert job_attributes(client, alice, job_id).json == {"success": False, "message": JOB_GONE}


def test_output_without_o_and_final_record_match_pbs(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    job_id = submit(client, alice, "#!/bin/sh\n#PBS -N noo\necho to-out\necho to-err >&2\nsleep 1\nexit 3\n")
    wait_for_listed_state(client, alice, job_id, "F")
    out = output(client, alice, job_id)
    assert out.status_code == 200 and out.json["message"]["data"] == "to-out\n"
    assert out.json["message"]["path"].endswith(f"/noo.o{job_id}")
    assert output(client, alice, job_id, "stderr").json["message"]["data"] == "to-err\n"
    final = client.get(f"/api/scheduler/job/final?job_id={job_id}", headers=alice.headers).json["message"]
    truth = qstat_x(job_id)
    assert final["Exit_status"] == truth["Exit_status"] == 3
    for key in ("stime", "obittime", "exec_host", "comment", "Output_Path", "Error_Path", "ctime"):
        assert final[key] == truth[key], key
    assert final["resources_used"]["walltime"] == truth["resources_used"]["walltime"]


def test_deleted_running_job_is_killed_in_pbs_and_final_says_so(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    job_id = submit(client, alice, "#!/bin/sh\n#PBS -N victim\nsleep 120\n")
    got(client, alice, job_id, "R")
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=alice.headers).status_code == 200
    assert job_attributes(client, alice, job_id).status_code == 404
    deadline = time.time() + 30
    while time.time() < deadline and qstat_x(job_id).get("job_state") != "F":
        time.sleep(0.3)
    truth = qstat_x(job_id)
    # SIGTERM killed it: 271 (256+15) when PBS saw the signal, 143 when the shell did.
    assert truth["Exit_status"] in (143, 271) and truth["substate"] == 91
    deadline = time.time() + 30
    final = {}
    while time.time() < deadline:
        final = client.get(f"/api/scheduler/job/final?job_id={job_id}", headers=alice.headers).json["message"]
        if isinstance(final, dict) and final.get("obittime") == truth["obittime"]:
            break
        time.sleep(0.3)
    assert final["Exit_status"] == truth["Exit_status"] and final["deleted"] is True
    assert (final["substate"], final["obittime"]) == (91, truth["obittime"])


def test_array_subjobs_belong_to_the_arrays_owner(pbs):
    client = pbs.app.test_client()
    alice, bob = account(pbs.app, OWNER), account(pbs.app, OTHER)
    array_id = submit(client, alice, "#!/bin/sh\n#PBS -N arr\n#PBS -J 1-2\necho sub $PBS_ARRAY_INDEX\nsleep 2\n")
    assert array_id.endswith("[]")
    first = array_id.replace("[]", "[1]")
    assert job_attributes(client, alice, first).status_code == 200  # before the reconciler saw it, too
    assert job_attributes(client, bob, first).status_code == 404
    assert client.delete(f"/api/scheduler/job?job_id={first}", headers=bob.headers).status_code == 404
    wait_for_listed_state(client, alice, array_id, "F")
    sub = got(client, alice, first, "FX")
    assert sub["Exit_status"] == 0
    out = output(client, alice, first)
    assert out.status_code == 200 and out.json["message"]["data"] == "sub 1\n"
    assert output(client, bob, first).status_code == 404
    assert array_id not in client.get("/api/scheduler/jobs", headers=bob.headers).json["message"]
    assert first not in client.get("/api/scheduler/jobs", headers=alice.headers).json["message"]


def test_owner_deletes_a_running_subjob(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    array_id = submit(client, alice, "#!/bin/sh\n#PBS -N longarr\n#PBS -J 1-2\nsleep 60\n")
    first = array_id.replace("[]", "[1]")
    got(client, alice, first, "R")
    assert client.delete(f"/api/scheduler/job?job_id={first}", headers=alice.headers).status_code == 200
    deadline = time.time() + 30
    while time.time() < deadline and qstat_x(first).get("job_state") not in ("X", "F"):
        time.sleep(0.3)
    assert qstat_x(first)["job_state"] in ("X", "F")  # killed in PBS
    assert job_attributes(client, alice, first).status_code == 404
    assert client.delete(f"/api/scheduler/job?job_id={array_id}", headers=alice.headers).status_code == 200


def test_hold_release_and_dependencies(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    held = submit(client, alice, "#!/bin/sh\n#PBS -N held\n#PBS -h\ntrue\n")
    assert got(client, alice, held, "H")["Hold_Types"] == "u"
    assert qstat_x(held)["job_state"] == "H"
    released = client.put("/api/scheduler/job", headers=alice.headers, data={"job_id": held, "action": "release"})
    assert released.json == {"success": True, "message": "Job released"}
    wait_for_listed_state(client, alice, held, "F")

    first = submit(client, alice, "#!/bin/sh\n#PBS -N first\nsleep 3\n")
    second = submit(client, alice, f"#!/bin/sh\n#PBS -N second\n#PBS -W depend=afterok:{first}\ntrue\n")
    assert got(client, alice, second, "H")["depend"].startswith(f"afterok:{first}")
    held_again = client.put("/api/scheduler/job", headers=alice.headers, data={"job_id": first, "action": "hold"})
    assert held_again.status_code in (200, 409)  # 409 once it runs: only waiting jobs can be held
    if held_again.status_code == 200:
        client.put("/api/scheduler/job", headers=alice.headers, data={"job_id": first, "action": "release"})
    wait_for_listed_state(client, alice, second, "F")
    assert qstat_x(second)["Exit_status"] == 0


def test_running_output_can_be_followed(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    job_id = submit(client, alice, "#!/bin/sh\n#PBS -N follow\necho first\nsleep 6\necho second\n")
    got(client, alice, job_id, "R")
    deadline = time.time() + 20
    seen = None
    while time.time() < deadline:
        seen = output(client, alice, job_id).json["message"]
        if isinstance(seen, dict) and seen["data"] == "first\n":
            break
        time.sleep(0.2)
    assert seen["data"] == "first\n" and seen["finished"] is False  # written directly (Keep_Files d)
    assert "d" in qstat_x(job_id)["Keep_Files"]
    wait_for_listed_state(client, alice, job_id, "F")
    assert output(client, alice, job_id).json["message"]["data"] == "first\nsecond\n"


def test_refusals_and_unknown_jobs(pbs):
    client = pbs.app.test_client()
    alice = account(pbs.app, OWNER)
    bad = client.post("/api/scheduler/job", headers=alice.headers,
                      data={"payload": encode("#!/bin/sh\n#PBS -l foo_resource=3\ntrue\n")})
    assert bad.status_code == 400 and "Unknown resource" in bad.json["stderr"]
    assert job_attributes(client, alice, "987654").json == {"success": False, "message": JOB_GONE}
    assert client.delete("/api/scheduler/job?job_id=987654", headers=alice.headers).status_code == 404
    assert job_attributes(client, alice, "12;ls").status_code == 400


def test_reads_run_no_scheduler_command_and_orphans_are_resolved(pbs):
    """GET and listings answer from the reconciler's rows: this process runs no qstat.
    A record left in T by a crash between recording and qsub is matched by its folder."""
    from soca_api.schedulers.reconciler import Reconciler

    app = pbs.app
    client = app.test_client()
    alice = account(app, OWNER)
    job_id = submit(client, alice, "#!/bin/sh\n#PBS -N quiet\ntrue\n")
    wait_for_listed_state(client, alice, job_id, "F")
    adapter = app.extensions["soca_scheduler"]
    before = (adapter.snapshot_loads, len(adapter._lookups))
    for _ in range(30):
        assert job_attributes(client, alice, job_id).status_code == 200
        client.get("/api/scheduler/jobs", headers=alice.headers)
    assert (adapter.snapshot_loads, len(adapter._lookups)) == before

    home = pwd.getpwnam(OWNER).pw_dir
    folder = os.path.join(home, "soca_job_output", f"orphan_{time.time_ns()}")
    os.mkdir(folder)
    os.chown(folder, pwd.getpwnam(OWNER).pw_uid, pwd.getpwnam(OWNER).pw_gid)
    with app.app_context():
        row = Job(backend="pbs", owner=OWNER, name="orphan", queue="normal", state="T", script="true\n",
                  request={}, job_dir=folder, created_at=utcnow())
        db.session.add(row)
        db.session.commit()
        row_id = row.id
    pbs_id = qsub_as(OWNER, "#!/bin/sh\n#PBS -N orphan\ntrue\n", folder)
    with app.app_context():
        Reconciler(app, interval=1, lease_seconds=15, grace_seconds=0).reconcile()
        resolved = db.session.get(Job, row_id)
        assert resolved.scheduler_id == pbs_id and resolved.state != "T"
    wait_for_listed_state(client, alice, pbs_id, "F")


def test_seed_curl_steps_over_gunicorn_with_its_reconciler():
    """As deployed: gunicorn (two workers) starts the reconciler; the seed's requests over
    HTTP; the listing turns F with no GET, from the one reconciler's snapshot."""
    import requests

    from tests.live import create_user, prepared_service, start_gunicorn

    require_openpbs()
    require(os.geteuid() == 0, "A root test run (jobs run as their POSIX users only under a root service)")
    ensure_posix(OTHER)
    env, base = prepared_service(SOCA_WORKERS="2", SOCA_SCHEDULER="pbs", SOCA_PBS_BIN=PBS_BIN,
                                 SOCA_SCHEDULER_CACHE_SECONDS="1")
    key = create_user(env, OTHER)
    server = start_gunicorn(env, base)
    try:
        headers = {"X-SOCA-USER": OTHER, "X-SOCA-TOKEN": key}
        submitted = requests.post(f"{base}/api/scheduler/job", headers=headers, data={"payload": SEED_PAYLOAD},
                                  timeout=30).json()
        assert submitted["success"] is True
        job_id = submitted["message"]
        got_back = requests.get(f"{base}/api/scheduler/job", params={"job_id": job_id}, headers=headers,
                                timeout=30).json()
        assert got_back["success"] is True and got_back["message"]["Job_Name"] == "testjob"
        deadline = time.time() + 60
        state = None
        while time.time() < deadline and state != "F":
            listing = requests.get(f"{base}/api/scheduler/jobs", headers=headers, timeout=30).json()["message"]
            state = listing.get(job_id, {}).get("job_state")
            time.sleep(0.3)
        assert state == "F"
        deleted = requests.delete(f"{base}/api/scheduler/job", params={"job_id": job_id}, headers=headers,
                                  timeout=30).json()
        assert deleted == {"success": True, "message": "Job deleted"}
    finally:
        server.terminate()
        server.wait(timeout=30)
