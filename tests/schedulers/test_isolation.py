"""Issue 9: a job runs as its own user only, sees nothing of others or of the service, and
never overwrites earlier results. Real jobs on the local scheduler, as a root service and
as a service running under an ordinary account (created here with useradd)."""
from __future__ import annotations

import os
import pwd
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from soca_api.extensions import db
from soca_api.models import Job, JobAccount
from tests.conftest import PROJECT_DIR, build_stack, make_data_dir, service_env, unique_name
from tests.external import require
from tests.helpers import (
    SEED_PAYLOAD,
    SEED_SCRIPT,
    encode,
    ensure_posix_account,
    recorded_pid,
    submit,
    wait_for_state,
)
from tests.live import free_port

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="these checks are of a root service")


def output_data(client, account, job_id) -> str:
    response = client.get(f"/api/scheduler/job/output?job_id={job_id}", headers=account.headers)
    assert response.status_code == 200, response.json
    return response.json["message"]["data"]


def probe_script(paths: list[str], pid: int | None) -> str:
    """A job that tries to read each path and to signal `pid`, printing what it managed."""
    lines = ["#!/bin/sh", "#PBS -N probe"]
    for path in paths:
        lines.append(f"if cat '{path}' >/dev/null 2>&1; then echo 'READ {path}'; else echo 'DENIED {path}'; fi")
    if pid is not None:
        lines.append(f"if kill -TERM {pid} 2>/dev/null; then echo KILLED; else echo NOKILL; fi")
    lines.append("id -u")
    return "\n".join(lines) + "\n"


def private_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def sqlite_file(app) -> str | None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


# -- root service ------------------------------------------------------------------------------
@as_root
def test_one_users_job_cannot_read_another_or_the_service_nor_kill_it(client, app, stack, make_user):
    alice, bob = make_user(), make_user()
    victim = submit(client, alice, "#!/bin/sh\n#PBS -N secretwork\necho alice-private\nsleep 20\necho done\n")
    attributes = wait_for_state(client, alice, victim, "R")
    alice_output = attributes["Output_Path"].split(":", 1)[1]
    alice_pid = recorded_pid(app, victim)
    secret, admin_key = (os.path.join(stack.data_dir, name) for name in ("secret_key", "admin_api_key"))
    for path in (secret, admin_key):
        if not os.path.exists(path):
            private_file(path, "not-for-jobs\n")
    targets = [alice_output, secret, admin_key] + [p for p in (sqlite_file(app),) if p]
    probe = submit(client, bob, probe_script(targets, alice_pid))
    assert wait_for_state(client, bob, probe, "F")["Exit_status"] == 0
    lines = output_data(client, bob, probe).splitlines()
    assert [line for line in lines if line.startswith("READ")] == [], lines
    assert "NOKILL" in lines
    with app.app_context():
        uids = dict(db.session.execute(sa.select(JobAccount.user_name, JobAccount.uid)).all())
    assert lines[-1] == str(uids[bob.name]) and uids[bob.name] != uids[alice.name]
    # Alice's job was not touched: it runs on to its end.
    final = wait_for_state(client, alice, victim, "F", timeout=40)
    assert final["Exit_status"] == 0
    assert output_data(client, alice, victim) == "alice-private\ndone\n"


@as_root
@pytest.mark.parametrize("system_name", ["games", "postgres"])
def test_api_users_named_like_system_accounts_never_run_as_them(client, app, make_user, system_name):
    try:
        system_uid = pwd.getpwnam(system_name).pw_uid
    except KeyError:
        system_uid = None
    account = make_user(name=system_name)  # one per database of the session
    job_id = submit(client, account, "#!/bin/sh\nid -u\npwd\n")
    assert wait_for_state(client, account, job_id, "F")["Exit_status"] == 0
    uid, cwd = output_data(client, account, job_id).splitlines()
    low, high = app.config["SOCA_JOB_UID_RANGE"]
    assert int(uid) != system_uid and low <= int(uid) <= high
    assert cwd.startswith(app.config["SOCA_DATA_DIR"] + "/jobs/")
    assert not os.path.exists("/usr/games/soca_job_output")


@as_root
def test_refuse_policy_and_cluster_backends_answer_403(app, client, make_user):
    account = make_user()
    app.config["SOCA_UNMAPPED_JOB_USERS"] = "refuse"
    try:
        response = client.post("/api/scheduler/job", headers=account.headers,
                               data={"payload": encode("#!/bin/sh\ntrue\n")})
    finally:
        app.config["SOCA_UNMAPPED_JOB_USERS"] = "dedicated"
    assert response.status_code == 403 and "no POSIX account" in response.json["message"]
    from soca_api.schedulers import job_accounts
    from soca_api.schedulers.pbs import PbsAdapter
    from soca_api.schedulers.slurm import SlurmAdapter
    from soca_api.services import identity
    with app.app_context():
        with pytest.raises(job_accounts.IdentityRefused, match="pbs scheduler"):
            identity.resolve(account.name, PbsAdapter())
        with pytest.raises(job_accounts.IdentityRefused):
            identity.resolve("games", SlurmAdapter())
        assert job_accounts.eligible_account("root", 0, []) is None
        assert job_accounts.eligible_account("socajobs", 1000, ["socajobs"]) is None


@as_root
def test_two_installations_in_a_row_keep_the_first_jobs_output():
    """Fresh database, same homes: the record ids start at 1 again, the folders do not repeat."""
    account = ensure_posix_account("socajobs")
    outputs = []
    for run in ("first", "second"):
        db_dir = make_data_dir("soca-db-")
        stack = build_stack("sqlite", f"sqlite:///{db_dir}/soca.db")
        stack.start_runner()
        try:
            from soca_api.services import accounts
            with stack.app.app_context():
                _user, key = accounts.create_user(account.pw_name)
            from tests.helpers import Account
            user = Account(account.pw_name, key, None, False)
            client = stack.app.test_client()
            job_id = submit(client, user, f"#!/bin/sh\n#PBS -N again\necho {run}\n")
            assert job_id == "1"
            final = wait_for_state(client, user, job_id, "F")
            outputs.append(final["Output_Path"].split(":", 1)[1])
        finally:
            stack.stop_runner()
            shutil.rmtree(stack.data_dir, ignore_errors=True)
            shutil.rmtree(db_dir, ignore_errors=True)
    assert outputs[0] != outputs[1]
    assert all(path.startswith(account.pw_dir + "/soca_job_output/again_1_") for path in outputs)
    with open(outputs[0]) as handle:
        assert handle.read() == "first\n"
    with open(outputs[1]) as handle:
        assert handle.read() == "second\n"


@as_root
def test_a_link_or_file_in_the_way_is_a_4xx_and_records_nothing(app, client, make_user):
    account = make_user()
    user_dir = os.path.join(app.config["SOCA_DATA_DIR"], "jobs", account.name)
    elsewhere = tempfile.mkdtemp(prefix="soca-elsewhere-")
    os.symlink(elsewhere, user_dir)
    try:
        with app.app_context():
            before = db.session.execute(sa.select(sa.func.count()).select_from(Job)).scalar()
        response = client.post("/api/scheduler/job", headers=account.headers,
                               data={"payload": encode("#!/bin/sh\ntrue\n")})
        assert response.status_code == 409, response.json
        assert "symbolic link or a file" in response.json["message"]
        with app.app_context():
            assert db.session.execute(sa.select(sa.func.count()).select_from(Job)).scalar() == before
            assert db.session.execute(sa.select(Job).where(Job.owner == account.name)).first() is None
        assert os.listdir(elsewhere) == []
        os.unlink(user_dir)
        with open(user_dir, "w"):
            pass  # a plain file instead of a folder
        response = client.post("/api/scheduler/job", headers=account.headers,
                               data={"payload": encode("#!/bin/sh\ntrue\n")})
        assert response.status_code == 409, response.json
    finally:
        if os.path.lexists(user_dir):
            os.unlink(user_dir)
        shutil.rmtree(elsewhere)


@as_root
def test_output_endpoint_never_reads_a_file_the_job_swapped_in(app, client, make_user, stack):
    account = make_user()
    secret = os.path.join(stack.data_dir, "secret_key")
    if not os.path.exists(secret):
        private_file(secret, "not-for-jobs\n")
    # The job replaces its own output by a link to the secret key: a root read would leak it.
    job_id = submit(client, account, f"#!/bin/sh\n#PBS -N swap\n#PBS -o out.log\nrm -f out.log\n"
                                     f"ln -s {secret} out.log\n")
    wait_for_state(client, account, job_id, "F")
    response = client.get(f"/api/scheduler/job/output?job_id={job_id}", headers=account.headers)
    assert response.status_code == 403 and "cannot be read" in response.json["message"]


@as_root
def test_a_0700_data_folder_is_made_traversable_and_the_seed_flow_works():
    db_dir = make_data_dir("soca-db-")
    data_dir = tempfile.mkdtemp(prefix="soca-0700-", dir="/tmp")
    os.chmod(data_dir, 0o700)
    stack = build_stack("sqlite", f"sqlite:///{db_dir}/soca.db", data_dir=data_dir)
    stack.start_runner()
    try:
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o711
        from soca_api.services import accounts
        from tests.helpers import Account
        with stack.app.app_context():
            _user, key = accounts.create_user(unique_name("seed"))
            name = _user.name
        user = Account(name, key, None, False)
        client = stack.app.test_client()
        posted = client.post("/api/scheduler/job", headers=user.headers, data={"payload": SEED_PAYLOAD})
        job_id = posted.json["message"]
        assert wait_for_state(client, user, job_id, "F")["Exit_status"] == 0
        assert output_data(client, user, job_id) == "Hello World\n"
    finally:
        stack.stop_runner()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(db_dir, ignore_errors=True)


@as_root
def test_a_data_folder_behind_a_closed_parent_is_refused_naming_the_path():
    db_dir = make_data_dir("soca-db-")
    closed = tempfile.mkdtemp(prefix="soca-closed-", dir="/tmp")  # 0700: job accounts cannot pass
    data_dir = os.path.join(closed, "data")
    os.mkdir(data_dir, 0o711)
    stack = build_stack("sqlite", f"sqlite:///{db_dir}/soca.db", data_dir=data_dir)
    stack.start_runner()
    try:
        client = stack.app.test_client()
        health = client.get("/api/health")
        assert health.status_code == 503
        assert closed in health.json["message"]["scheduler"]
        from soca_api.services import accounts
        from tests.helpers import Account
        with stack.app.app_context():
            _user, key = accounts.create_user(unique_name("closed"))
            user = Account(_user.name, key, None, False)
        job_id = submit(client, user, SEED_SCRIPT)
        deadline = time.time() + 20
        comment = ""
        while time.time() < deadline and closed not in comment:
            comment = client.get(f"/api/scheduler/job?job_id={job_id}",
                                 headers=user.headers).json["message"].get("comment", "")
            time.sleep(0.1)
        assert closed in comment and "Not Running" in comment
    finally:
        stack.stop_runner()
        shutil.rmtree(closed, ignore_errors=True)
        shutil.rmtree(db_dir, ignore_errors=True)


# -- a service running as an ordinary account ---------------------------------------------------
@pytest.fixture(scope="module")
def service_account():
    """A throwaway POSIX account for the service itself (removed afterwards)."""
    require(os.geteuid() == 0, "A root test run (it creates a throwaway service account)")
    name = f"socasvc{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def as_account(account: pwd.struct_passwd) -> dict[str, object]:
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def account_python(account: pwd.struct_passwd) -> tuple[list[str], dict[str, str]] | None:
    """An interpreter the account can run with the project's packages: this one, or (when
    it lies in a folder the account cannot reach, e.g. a pyenv under /root) the system's
    Python of the same version with this environment's site-packages."""
    import site
    import sysconfig

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [([sys.executable], {})]
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system:
        paths = [sysconfig.get_paths()["purelib"], *site.getsitepackages(), str(PROJECT_DIR)]
        candidates.append(([system], {"PYTHONPATH": ":".join(dict.fromkeys(paths))}))
    for command, extra in candidates:
        try:
            probe = subprocess.run([*command, "-c", "import soca_api, flask, gunicorn, flask_migrate"],
                                   cwd=PROJECT_DIR, capture_output=True, timeout=60,
                                   env={**os.environ, **extra}, **as_account(account))
        except OSError:
            continue
        if probe.returncode == 0:
            return command, extra
    return None


def test_service_as_an_ordinary_account_sandboxes_every_job(service_account):
    require(shutil.which("bwrap") is not None, "bubblewrap (apt-get install bubblewrap) for the job sandbox")
    python = account_python(service_account)
    require(python is not None, f"the project and a Python readable by an ordinary account ({PROJECT_DIR})")
    interpreter, python_env = python
    data_dir = tempfile.mkdtemp(prefix="soca-nonroot-", dir="/tmp")
    os.chown(data_dir, service_account.pw_uid, service_account.pw_gid)
    os.chmod(data_dir, 0o700)
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db")
    del env["SOCA_SECRET_KEY"]  # the service keeps its own secret_key file, as by default
    port = free_port()
    env.update({"SOCA_PORT": str(port), "SOCA_WORKERS": "1", "HOME": data_dir, **python_env})
    flask = [*interpreter, "-m", "flask", "--app", "wsgi"]
    base = f"http://127.0.0.1:{port}"

    def cli(*args: str) -> str:
        return subprocess.run(flask + list(args), cwd=PROJECT_DIR, env=env, check=True, capture_output=True,
                              text=True, timeout=120, **as_account(service_account)).stdout

    server = None
    try:
        cli("db", "upgrade")
        cli("bootstrap", "--admin-name", "boss")
        keys = {name: cli("user", "create", name).strip().splitlines()[-1] for name in ("alice", "bob")}
        headers = {name: {"X-SOCA-USER": name, "X-SOCA-TOKEN": key} for name, key in keys.items()}
        log = open(os.path.join(data_dir, "gunicorn.log"), "ab")  # noqa: SIM115 - closed below
        server = subprocess.Popen([*interpreter, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                  cwd=PROJECT_DIR, env=env,
                                  stdout=log, stderr=log, **as_account(service_account))
        log.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        health = requests.get(f"{base}/api/health", timeout=5)
        assert health.status_code == 200, health.text

        def post(name: str, script: str) -> str:
            answer = requests.post(f"{base}/api/scheduler/job", headers=headers[name],
                                   data={"payload": encode(script)}, timeout=30)
            assert answer.status_code == 200, answer.text
            return answer.json()["message"]

        def wait(name: str, job_id: str, states: str, timeout: float = 40) -> dict:
            end = time.time() + timeout
            while time.time() < end:
                got = requests.get(f"{base}/api/scheduler/job", params={"job_id": job_id}, headers=headers[name],
                                   timeout=10)
                if got.status_code == 200 and got.json()["message"]["job_state"] in states:
                    return got.json()["message"]
                time.sleep(0.1)
            raise AssertionError(f"job {job_id} never reached {states}")

        def output(name: str, job_id: str) -> str:
            got = requests.get(f"{base}/api/scheduler/job/output", params={"job_id": job_id},
                               headers=headers[name], timeout=10)
            assert got.status_code == 200, got.text
            return got.json()["message"]["data"]

        # The seed flow, with a 0700 data folder.
        seed = requests.post(f"{base}/api/scheduler/job", headers=headers["alice"], data={"payload": SEED_PAYLOAD},
                             timeout=30).json()["message"]
        assert wait("alice", seed, "F")["Exit_status"] == 0
        assert output("alice", seed) == "Hello World\n"

        victim = post("alice", "#!/bin/sh\n#PBS -N secretwork\necho alice-private\nsleep 15\necho done\n")
        attributes = wait("alice", victim, "R")
        alice_output = attributes["Output_Path"].split(":", 1)[1]
        alice_pid = None
        deadline = time.time() + 20
        while alice_pid is None and time.time() < deadline:  # recorded just after the job starts
            with sqlite3.connect(f"file:{data_dir}/soca.db?mode=ro", uri=True) as connection:
                alice_pid = connection.execute("SELECT pid FROM jobs WHERE scheduler_id = ?",
                                               (victim,)).fetchone()[0]
            time.sleep(0.1)
        assert alice_pid is not None
        targets = [alice_output, os.path.dirname(alice_output) + "/", f"{data_dir}/secret_key",
                   f"{data_dir}/admin_api_key", f"{data_dir}/soca.db"]
        assert os.path.exists(f"{data_dir}/admin_api_key") and os.path.exists(f"{data_dir}/secret_key")
        probe = post("bob", probe_script(targets, alice_pid)
                     + "ls /proc | grep -c '^[0-9]' ; ls /home /root 2>&1 | head -3\n")
        assert wait("bob", probe, "F")["Exit_status"] == 0
        lines = output("bob", probe).splitlines()
        assert [line for line in lines if line.startswith("READ")] == [], lines
        assert "NOKILL" in lines
        final = wait("alice", victim, "F")
        assert final["Exit_status"] == 0
        assert output("alice", victim) == "alice-private\ndone\n"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_runner_without_a_sandbox_refuses_jobs_and_says_why(service_account):
    """No bwrap on the service's PATH: health is 503 naming bubblewrap, jobs wait with the reason."""
    python = account_python(service_account)
    require(python is not None, f"the project and a Python readable by an ordinary account ({PROJECT_DIR})")
    interpreter, python_env = python
    flask = [*interpreter, "-m", "flask", "--app", "wsgi"]
    data_dir = tempfile.mkdtemp(prefix="soca-nobwrap-", dir="/tmp")
    os.chown(data_dir, service_account.pw_uid, service_account.pw_gid)
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db", PATH="/nonexistent", HOME=data_dir,
                      **python_env)
    runner = None
    try:
        subprocess.run(flask + ["db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True, capture_output=True,
                       timeout=120, **as_account(service_account))
        runner = subprocess.Popen(flask + ["scheduler", "run"], cwd=PROJECT_DIR, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_account(service_account))
        blocked = os.path.join(data_dir, "runner.blocked")
        deadline = time.time() + 30
        heartbeat = os.path.join(data_dir, "runner.heartbeat")
        while time.time() < deadline and not (os.path.exists(blocked) and os.path.exists(heartbeat)):
            time.sleep(0.1)
        with open(blocked) as handle:
            reason = handle.read()
        assert "bubblewrap" in reason and "SOCA_LOCAL_SANDBOX=off" in reason
        from soca_api.schedulers.local import LocalAdapter
        ok, message = LocalAdapter(data_dir).health()
        assert not ok and "bubblewrap" in message
    finally:
        if runner is not None:
            runner.terminate()
            runner.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_folder_names_are_unique_and_links_are_never_followed(tmp_path):
    from soca_api.schedulers import jobfiles

    names = {jobfiles.unique_folder_name("job", 1) for _ in range(50)}
    assert len(names) == 50 and all(re.fullmatch(r"job_1_[0-9a-f]{8}", n) for n in names)
    base = tmp_path / "base"
    made = jobfiles.create_job_dir(str(base), ("alice",), "job_1_x", None)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    with pytest.raises(jobfiles.JobFileError, match="never reused"):
        jobfiles.create_job_dir(str(base), ("alice",), "job_1_x", None)
    (base / "bob").symlink_to(tmp_path)
    with pytest.raises(jobfiles.JobFileError, match="symbolic link"):
        jobfiles.create_job_dir(str(base), ("bob",), "job_2_y", None)
    os.symlink(tmp_path / "victim", os.path.join(made, "sub"))
    with pytest.raises(jobfiles.JobFileError):
        jobfiles.open_in_job_dir(made, made + "/sub/out.log", os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "victim").exists()


@as_root
def test_a_reinstall_on_the_same_data_folder_never_reuses_a_dedicated_uid_or_folder():
    """Fresh database, same data folder: the uid that owns the first user's folder is not
    handed to the next user, and the first job's output stays as it was."""
    from soca_api.services import accounts
    from tests.helpers import Account

    data_dir = make_data_dir()
    results = []
    try:
        for run in ("first", "second"):
            db_dir = make_data_dir("soca-db-")
            stack = build_stack("sqlite", f"sqlite:///{db_dir}/soca.db", data_dir=data_dir)
            stack.start_runner()
            try:
                with stack.app.app_context():
                    user, key = accounts.create_user(unique_name(run))
                    name = user.name
                account = Account(name, key, None, False)
                client = stack.app.test_client()
                job_id = submit(client, account, f"#!/bin/sh\n#PBS -N again\necho {run}\nid -u\n")
                final = wait_for_state(client, account, job_id, "F")
                assert job_id == "1" and final["Exit_status"] == 0
                text, uid = output_data(client, account, job_id).splitlines()
                results.append((final["Output_Path"].split(":", 1)[1], int(uid), text))
            finally:
                stack.stop_runner()
                shutil.rmtree(db_dir, ignore_errors=True)
        (first_path, first_uid, _), (second_path, second_uid, _) = results
        assert first_uid != second_uid and first_path != second_path
        with open(first_path) as handle:
            assert handle.read().startswith("first\n")
        assert os.stat(first_path).st_uid == first_uid
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
