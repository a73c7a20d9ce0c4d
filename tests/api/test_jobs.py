"""The seed's flow and every local-scheduler behaviour, over HTTP, with real jobs."""
from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from soca_api.extensions import db
from soca_api.models import Job
from tests.helpers import SEED_PAYLOAD, encode, job_attributes, recorded_pid, submit, wait_for_state

JOB_GONE = "Unable to retrieve Job ID (job may have terminated and is no longer in the queue)"


def output_of(client, account, job_id, stream="stdout", **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = client.get(f"/api/scheduler/job/output?job_id={job_id}&stream={stream}&{query}",
                          headers=account.headers)
    assert response.status_code == 200, response.json
    return response.json["message"]


# -- the seed, verbatim ----------------------------------------------------------------------
def test_seed_flow_submit_get_delete_get(client, user):
    posted = client.post("/api/scheduler/job", headers=user.headers, data={"payload": SEED_PAYLOAD},
                         content_type="multipart/form-data")
    assert posted.status_code == 200
    job_id = posted.json["message"]
    assert posted.json["success"] is True and job_id.isdigit()

    got = job_attributes(client, user, job_id)
    assert got.status_code == 200
    attributes = got.json["message"]
    assert attributes["Job_Name"] == "testjob"
    assert attributes["Job_Owner"].startswith(f"{user.name}@")
    assert attributes["queue"] == "normal"
    assert attributes["job_state"] in "QRF"
    assert attributes["Join_Path"] == "oe" and attributes["project"] == "myproject"
    assert attributes["Resource_List"]["instance_type"] == "c5.large"
    assert attributes["Output_Path"].endswith("/testjob_output.qlog")
    for key in ("server", "Checkpoint", "ctime", "qtime", "mtime", "Error_Path", "Hold_Types", "Keep_Files",
                "Mail_Points", "Priority", "Rerunable", "Variable_List", "substate"):
        assert key in attributes, key

    deleted = client.delete(f"/api/scheduler/job?job_id={job_id}", headers=user.headers)
    assert deleted.json == {"success": True, "message": "Job deleted"}
    gone = job_attributes(client, user, job_id)
    assert gone.status_code == 404
    assert gone.json == {"success": False, "message": JOB_GONE}


def test_seed_job_runs_and_writes_hello_world(client, user):
    job_id = submit(client, user, encode_seed := __import__("base64").b64decode(SEED_PAYLOAD).decode())
    del encode_seed
    final = wait_for_state(client, user, job_id, "F")
    assert final["Exit_status"] == 0
    path = final["Output_Path"].split(":", 1)[1]
    assert os.path.basename(path) == "testjob_output.qlog"
    assert re.fullmatch(rf"testjob_{job_id}_[0-9a-f]{{8}}", os.path.basename(os.path.dirname(path)))
    with open(path) as handle:
        assert handle.read() == "Hello World\n"
    assert output_of(client, user, job_id)["data"] == "Hello World\n"


def test_unpadded_and_urlsafe_payloads_are_accepted(client, user):
    unpadded = SEED_PAYLOAD.rstrip("=")
    assert client.post("/api/scheduler/job", headers=user.headers, data={"payload": unpadded}).status_code == 200
    script = "#!/bin/sh\n#PBS -N url~safe\necho ok\n".replace("~", "")
    urlsafe = __import__("base64").urlsafe_b64encode(script.encode()).decode()
    assert client.post("/api/scheduler/job", headers=user.headers, data={"payload": urlsafe}).status_code == 200


# -- who sees what ---------------------------------------------------------------------------
def test_other_user_cannot_read_delete_or_list_a_job(client, make_user, admin):
    owner, stranger = make_user(), make_user()
    job_id = submit(client, owner, "#!/bin/sh\n#PBS -N private\nsleep 5\n")
    assert job_attributes(client, stranger, job_id).json == {"success": False, "message": JOB_GONE}
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=stranger.headers).status_code == 404
    assert client.get(f"/api/scheduler/job/output?job_id={job_id}", headers=stranger.headers).status_code == 404
    assert job_id not in client.get("/api/scheduler/jobs", headers=stranger.headers).json["message"]
    assert client.get(f"/api/scheduler/jobs?user={owner.name}", headers=stranger.headers).status_code == 403
    # The owner and an admin see it; the admin may delete it.
    assert job_attributes(client, owner, job_id).status_code == 200
    assert job_id in client.get(f"/api/scheduler/jobs?user={owner.name}", headers=admin.headers).json["message"]
    assert client.delete("/api/scheduler/job", headers=admin.headers, data={"job_id": job_id}).status_code == 200


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("job_id", ["12 13", "1;id", "$(id)", "12.", "abc", "1[2", "../1", "١٢"])
def test_job_id_is_validated_before_use(client, user, job_id):
    response = client.get("/api/scheduler/job", query_string={"job_id": job_id}, headers=user.headers)
    assert response.status_code == 400
    assert "job_id is invalid" in response.json["message"]


def test_missing_job_id_and_payload_use_socas_message(client, user):
    assert client.get("/api/scheduler/job", headers=user.headers).json["message"] == \
        "Client input malformed. job_id (str) parameter is required"
    assert client.post("/api/scheduler/job", headers=user.headers).json["message"] == \
        "Client input malformed. payload (str) parameter is required"


@pytest.mark.parametrize("payload, expected", [
    ("!!!not base64!!!", "base64"),
    (encode("#!/bin/sh\r\necho hi\r\n"), "CRLF"),
    (__import__("base64").b64encode(b"\xff\xfebad").decode(), "UTF-8"),
    (encode("   \n\n"), "empty"),
    (encode("#!/bin/sh\n#PBS -Z foo\necho\n"), "Line 2"),
    (encode("#!/bin/sh\n#PBS -l walltime=ab:cd\necho\n"), "walltime"),
    (encode("#!/bin/sh\n#PBS -l mem=12.5gb\necho\n"), "mem"),
    (encode("#!/bin/sh\n#PBS -N " + "x" * 231 + "\necho\n"), "Line 2"),
    (encode("#!/bin/sh\n#PBS -N bad/name\necho\n"), "Line 2"),
])
def test_bad_scripts_are_400_naming_the_problem(client, user, payload, expected):
    response = client.post("/api/scheduler/job", headers=user.headers, data={"payload": payload})
    assert response.status_code == 400
    assert expected.lower() in response.json["message"].lower()
    assert "echo" not in response.json["message"] or "#PBS" in response.json["message"]


def test_script_over_the_limit_is_413(app, client, user):
    app.config["SOCA_MAX_SCRIPT_BYTES"] = 1000
    try:
        response = client.post("/api/scheduler/job", headers=user.headers,
                               data={"payload": encode("#!/bin/sh\n" + "echo x\n" * 400)})
    finally:
        app.config["SOCA_MAX_SCRIPT_BYTES"] = 1024 * 1024
    assert response.status_code == 413 and response.json["success"] is False


def test_output_paths_must_stay_in_the_job_folder(client, user):
    for option in ("-o /tmp/elsewhere.log", "-e ../../escape.err", "-o ../x"):
        response = client.post("/api/scheduler/job", headers=user.headers,
                               data={"payload": encode(f"#!/bin/sh\n#PBS {option}\necho\n")})
        assert response.status_code == 400, option
        assert "inside your job folder" in response.json["message"]


def test_unknown_queue_is_refused(client, user):
    response = client.post("/api/scheduler/job", headers=user.headers,
                           data={"payload": encode("#!/bin/sh\n#PBS -q nosuchq\necho\n")})
    assert response.status_code == 400
    assert "nosuchq" in response.json["message"]


# -- states and exit statuses ----------------------------------------------------------------
def test_exit_codes_and_signals_are_reported_as_pbs_does(client, user):
    failing = submit(client, user, "#!/bin/sh\nexit 3\n")
    killed = submit(client, user, "#!/bin/sh\nkill -9 $$\n")
    assert wait_for_state(client, user, failing, "F")["Exit_status"] == 3
    assert wait_for_state(client, user, killed, "F")["Exit_status"] == 256 + 9


def test_held_job_waits_in_h_until_released(client, user, make_user):
    job_id = submit(client, user, "#!/bin/sh\n#PBS -h\necho held\n")
    time.sleep(0.5)
    attributes = job_attributes(client, user, job_id).json["message"]
    assert attributes["job_state"] == "H" and attributes["Hold_Types"] == "u"
    stranger = make_user()
    assert client.put("/api/scheduler/job", headers=stranger.headers,
                      data={"job_id": job_id, "action": "release"}).status_code == 404
    released = client.put("/api/scheduler/job", headers=user.headers, data={"job_id": job_id, "action": "release"})
    assert released.json == {"success": True, "message": "Job released"}
    assert wait_for_state(client, user, job_id, "F")["Exit_status"] == 0
    again = client.put("/api/scheduler/job", headers=user.headers, data={"job_id": job_id, "action": "hold"})
    assert again.status_code == 409


def test_job_actions_are_audited_by_the_service_with_their_failures(app, client, user, make_user):
    import sqlalchemy as sa

    from soca_api.extensions import db
    from soca_api.models import AuditEvent

    def rows(job_id: str) -> list[tuple[str, str | None, bool, str | None]]:
        with app.app_context():
            found = db.session.execute(sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.success,
                                                 AuditEvent.detail)
                                       .where(AuditEvent.target == job_id).order_by(AuditEvent.id)).all()
        return [tuple(row) for row in found]

    job_id = submit(client, user, "#!/bin/sh\n#PBS -h\necho held\n")
    stranger = make_user()
    assert client.put("/api/scheduler/job", headers=stranger.headers,
                      data={"job_id": job_id, "action": "release"}).status_code == 404  # not audited
    assert client.put("/api/scheduler/job", headers=user.headers,
                      data={"job_id": job_id, "action": "release"}).status_code == 200
    wait_for_state(client, user, job_id, "F")
    assert client.put("/api/scheduler/job", headers=user.headers,
                      data={"job_id": job_id, "action": "hold"}).status_code == 409
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=user.headers).status_code == 200
    assert rows(job_id) == [
        ("job.release", user.name, True, None),
        ("job.hold", user.name, False, f"Job {job_id} has finished"),
        ("job.delete", user.name, True, None),
    ]


def test_queued_job_can_be_held(client, user):
    blocker = submit(client, user, "#!/bin/sh\n#PBS -l ncpus=2\nsleep 3\n")
    wait_for_state(client, user, blocker, "R")
    waiting = submit(client, user, "#!/bin/sh\ntrue\n")
    held = client.put("/api/scheduler/job", headers=user.headers, data={"job_id": waiting, "action": "hold"})
    assert held.json["message"] == "Job held"
    assert job_attributes(client, user, waiting).json["message"]["job_state"] == "H"
    client.delete(f"/api/scheduler/job?job_id={blocker}", headers=user.headers)
    client.delete(f"/api/scheduler/job?job_id={waiting}", headers=user.headers)


def test_start_time_in_the_future_waits_in_w(client, user):
    job_id = submit(client, user, "#!/bin/sh\n#PBS -a 2359\necho later\n")
    if job_attributes(client, user, job_id).json["message"]["job_state"] != "W":
        pytest.fail("a job with -a in the future must wait in W")


def test_running_job_is_r_with_exec_host_and_delete_kills_it(client, user, app):
    job_id = submit(client, user, "#!/bin/sh\n#PBS -N sleeper\nsleep 60\n")
    running = wait_for_state(client, user, job_id, "R")
    assert running["exec_host"] and "stime" in running
    pid = recorded_pid(app, job_id)
    assert os.path.exists(f"/proc/{pid}")
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=user.headers).status_code == 200
    assert job_attributes(client, user, job_id).status_code == 404
    deadline = time.time() + 10
    while time.time() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), "a deleted job's process must be killed"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_walltime_is_enforced(client, user):
    job_id = submit(client, user, "#!/bin/sh\n#PBS -l walltime=1\nsleep 30\n")
    final = wait_for_state(client, user, job_id, "F", timeout=15)
    assert final["Exit_status"] == -29
    assert "walltime" in final["comment"]


def test_cpus_are_slots_jobs_wait_while_taken(client, user):
    first = submit(client, user, "#!/bin/sh\n#PBS -l ncpus=2\nsleep 3\n")
    wait_for_state(client, user, first, "R")
    second = submit(client, user, "#!/bin/sh\n#PBS -l ncpus=1\necho second\n")
    time.sleep(0.5)
    assert job_attributes(client, user, second).json["message"]["job_state"] == "Q"
    wait_for_state(client, user, second, "F", timeout=15)
    too_big = submit(client, user, "#!/bin/sh\n#PBS -l select=4:ncpus=1\necho never\n")
    time.sleep(0.3)
    attributes = job_attributes(client, user, too_big).json["message"]
    assert attributes["job_state"] == "Q" and "4 cpus" in attributes.get("comment", "")
    client.delete(f"/api/scheduler/job?job_id={too_big}", headers=user.headers)


# -- environment and identity ------------------------------------------------------------------
def test_job_gets_pbs_environment_and_not_the_services(client, user):
    job_id = submit(client, user,
                    "#!/bin/sh\n#PBS -N envjob\n#PBS -v COLOR=blue,SIZE=3\n#PBS -l select=1:ncpus=2\nenv\n")
    wait_for_state(client, user, job_id, "F")
    env = dict(line.split("=", 1) for line in output_of(client, user, job_id)["data"].splitlines() if "=" in line)
    assert env["PBS_JOBID"] == job_id and env["PBS_JOBNAME"] == "envjob"
    assert env["PBS_QUEUE"] == "normal" and env["PBS_O_LOGNAME"] == user.name
    assert re.fullmatch(rf"envjob_{job_id}_[0-9a-f]{{8}}", os.path.basename(env["PBS_O_WORKDIR"]))
    assert env["COLOR"] == "blue" and env["SIZE"] == "3" and env["NCPUS"] == "2"
    with open(env["PBS_NODEFILE"]) if os.path.exists(env["PBS_NODEFILE"]) else open(os.devnull) as _:
        pass
    assert not [name for name in env if name.startswith("SOCA_") or "DATABASE" in name or "SECRET" in name]


def test_default_output_names_and_stderr(client, user):
    job_id = submit(client, user, "#!/bin/sh\n#PBS -N names\necho out\necho err >&2\n")
    final = wait_for_state(client, user, job_id, "F")
    # The folder name is unique forever (<name>_<id>_<random>); the file names are PBS's.
    assert re.search(rf"/names_{job_id}_[0-9a-f]{{8}}/names\.o{job_id}$", final["Output_Path"])
    assert re.search(rf"/names_{job_id}_[0-9a-f]{{8}}/names\.e{job_id}$", final["Error_Path"])
    assert output_of(client, user, job_id, "stderr")["data"] == "err\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="run-as-user needs a root service")
def test_job_runs_as_the_users_posix_account(client, make_user):
    name = "socajobs"
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    account = pwd.getpwnam(name)
    try:
        owner = make_user(name=name)
    except Exception:
        pytest.fail("could not create the API user for the POSIX account")
    job_id = submit(owner_client := client, owner, "#!/bin/sh\n#PBS -N whoami\nid -un; id -u; echo $HOME; pwd\n")
    final = wait_for_state(owner_client, owner, job_id, "F")
    lines = output_of(client, owner, job_id)["data"].splitlines()
    assert lines[0] == name and lines[1] == str(account.pw_uid)
    assert lines[2] == account.pw_dir
    assert os.path.dirname(lines[3]) == os.path.join(account.pw_dir, "soca_job_output")
    assert re.fullmatch(rf"whoami_{job_id}_[0-9a-f]{{8}}", os.path.basename(lines[3]))
    assert os.stat(lines[3]).st_uid == account.pw_uid
    assert final["Exit_status"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root service")
def test_user_without_posix_account_never_runs_as_root(client, user):
    job_id = submit(client, user, "#!/bin/sh\nid -u\n")
    wait_for_state(client, user, job_id, "F")
    assert output_of(client, user, job_id)["data"].strip() != "0"


# -- arrays and dependencies -------------------------------------------------------------------
def test_array_job_has_parent_and_subjobs(client, user):
    job_id = submit(client, user, "#!/bin/sh\n#PBS -N arr\n#PBS -J 1-3\necho index=$PBS_ARRAY_INDEX\n")
    assert job_id.endswith("[]")
    base = job_id[:-2]
    parent = wait_for_state(client, user, job_id, "F")
    assert parent["array"] == "True" and parent["array_indices_submitted"] == "1-3"
    for index in (1, 2, 3):
        sub = wait_for_state(client, user, f"{base}[{index}]", "F")
        assert sub["Exit_status"] == 0
        assert output_of(client, user, f"{base}[{index}]")["data"] == f"index={index}\n"


def test_afterok_dependency_waits_then_runs(client, user):
    first = submit(client, user, "#!/bin/sh\nsleep 1\n")
    second = submit(client, user, f"#!/bin/sh\n#PBS -W depend=afterok:{first}\necho after\n")
    assert job_attributes(client, user, second).json["message"]["job_state"] == "H"
    wait_for_state(client, user, first, "F")
    assert wait_for_state(client, user, second, "F")["Exit_status"] == 0


def test_dependency_that_can_never_be_met_ends_the_job(client, user):
    ok = submit(client, user, "#!/bin/sh\ntrue\n")
    wait_for_state(client, user, ok, "F")
    never = submit(client, user, f"#!/bin/sh\n#PBS -W depend=afternotok:{ok}\necho never\n")
    final = wait_for_state(client, user, never, "F")
    assert "never be satisfied" in final["comment"]
    anyway = submit(client, user, f"#!/bin/sh\n#PBS -W depend=afterany:{ok}\necho any\n")
    assert wait_for_state(client, user, anyway, "F")["Exit_status"] == 0


def test_dependency_on_unknown_or_foreign_job_is_refused(client, make_user):
    alice, bob = make_user(), make_user()
    foreign = submit(client, bob, "#!/bin/sh\ntrue\n")
    for dep in ("999999", foreign):
        response = client.post("/api/scheduler/job", headers=alice.headers,
                               data={"payload": encode(f"#!/bin/sh\n#PBS -W depend=afterok:{dep}\ntrue\n")})
        assert response.status_code == 400 and "does not exist" in response.json["message"]


# -- listing, output, final record, history ----------------------------------------------------
def test_listing_filters_and_pages(client, user):
    ids = [submit(client, user, f"#!/bin/sh\n#PBS -N list{i}\n#PBS -h\ntrue\n") for i in range(5)]
    listing = client.get("/api/scheduler/jobs", headers=user.headers).json
    assert set(ids) <= set(listing["message"])
    assert listing["message"][ids[0]]["Job_Name"] == "list0"
    held = client.get("/api/scheduler/jobs?state=H&queue=normal", headers=user.headers).json["message"]
    assert set(ids) <= set(held)
    page1 = client.get("/api/scheduler/jobs?state=H&limit=2", headers=user.headers).json
    assert len(page1["message"]) == 2 and page1["next_before"]
    page2 = client.get(f"/api/scheduler/jobs?state=H&limit=2&before={page1['next_before']}",
                       headers=user.headers).json
    assert not set(page1["message"]) & set(page2["message"])
    assert client.get("/api/scheduler/jobs?state=Z", headers=user.headers).status_code == 400
    for job_id in ids:
        client.delete(f"/api/scheduler/job?job_id={job_id}", headers=user.headers)


def test_output_range_and_tail(client, user):
    job_id = submit(client, user, "#!/bin/sh\nfor i in 1 2 3 4 5; do echo line$i; done\n")
    wait_for_state(client, user, job_id, "F")
    assert output_of(client, user, job_id, tail=2)["data"] == "line4\nline5\n"
    part = output_of(client, user, job_id, offset=6, length=6)
    assert part["data"] == "line2\n" and part["next_offset"] == 12 and part["eof"] is False


def test_finished_job_history_then_final_record(app, client, user):
    job_id = submit(client, user, "#!/bin/sh\nexit 4\n")
    assert wait_for_state(client, user, job_id, "F")["Exit_status"] == 4
    app.config["SOCA_JOB_HISTORY_SECONDS"] = 0
    try:
        assert job_attributes(client, user, job_id).json == {"success": False, "message": JOB_GONE}
    finally:
        app.config["SOCA_JOB_HISTORY_SECONDS"] = 300
    final = client.get(f"/api/scheduler/job/final?job_id={job_id}", headers=user.headers)
    assert final.status_code == 200 and final.json["message"]["Exit_status"] == 4
    running = submit(client, user, "#!/bin/sh\nsleep 5\n")
    assert client.get(f"/api/scheduler/job/final?job_id={running}", headers=user.headers).status_code == 409
    client.delete(f"/api/scheduler/job?job_id={running}", headers=user.headers)


def test_delete_of_finished_job_still_visible_removes_it(client, user):
    job_id = submit(client, user, "#!/bin/sh\ntrue\n")
    wait_for_state(client, user, job_id, "F")
    assert client.delete(f"/api/scheduler/job?job_id={job_id}", headers=user.headers).json["message"] == "Job deleted"
    assert job_attributes(client, user, job_id).status_code == 404


# -- restarts ------------------------------------------------------------------------------
def test_runner_restart_requeues_rerunable_and_fails_others_without_orphans(client, user, stack, app):
    rerun = submit(client, user, "#!/bin/sh\n#PBS -N rerun\necho run >> runs.txt\nsleep 2\n")
    once = submit(client, user, "#!/bin/sh\n#PBS -N once\n#PBS -r n\nsleep 30\n")
    wait_for_state(client, user, rerun, "R")
    wait_for_state(client, user, once, "R")
    queued = submit(client, user, "#!/bin/sh\n#PBS -N queued\necho still here\n")
    pids = {job_id: recorded_pid(app, job_id) for job_id in (rerun, once)}
    stack.stop_runner(signal.SIGKILL)  # the runner dies; its jobs' processes survive it
    assert _alive(pids[once])
    stack.start_runner()
    assert not _alive(pids[once]) and not _alive(pids[rerun]), "no orphan may survive the restart"
    failed = wait_for_state(client, user, once, "F")
    assert failed["Exit_status"] == -4
    rerun_final = wait_for_state(client, user, rerun, "F", timeout=30)
    assert rerun_final["Exit_status"] == 0
    workdir = rerun_final["Output_Path"].split(":", 1)[1].rsplit("/", 1)[0]
    with open(os.path.join(workdir, "runs.txt")) as handle:
        assert handle.read() == "run\nrun\n"
    assert wait_for_state(client, user, queued, "F")["Exit_status"] == 0


def test_output_ranges_never_split_a_character(client, user):
    job_id = submit(client, user, "#!/bin/sh\nprintf 'h\\303\\251llo\\n'\n")  # "héllo"
    wait_for_state(client, user, job_id, "F")
    first = output_of(client, user, job_id, offset=0, length=2)
    assert first["data"] == "h" and first["next_offset"] == 1
    rest = output_of(client, user, job_id, offset=first["next_offset"], length=100)
    assert rest["data"] == "\u00e9llo\n"


def test_a_second_runner_waits_as_standby_and_takes_over(client, user, stack, app):
    """Two runners on one data folder: one works, the other waits; no job runs twice."""
    import subprocess
    import sys

    from tests.conftest import PROJECT_DIR

    standby = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run"],
                               cwd=PROJECT_DIR, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)  # the standby is up and blocked on the lock
        ids = [submit(client, user, "#!/bin/sh\necho once >> count.txt\n") for _ in range(8)]
        for job_id in ids:
            wait_for_state(client, user, job_id, "F")
        with app.app_context():
            runs = db.session.execute(sa.select(Job.run_count).where(Job.scheduler_id.in_(ids))).scalars().all()
        assert runs == [1] * len(ids)
        stack.stop_runner()  # the active runner leaves; the standby takes the lock
        after = submit(client, user, "#!/bin/sh\necho taken over\n")
        assert wait_for_state(client, user, after, "F", timeout=20)["Exit_status"] == 0
    finally:
        standby.terminate()
        standby.wait(timeout=30)
        stack.start_runner()
