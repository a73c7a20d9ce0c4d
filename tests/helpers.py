"""Helpers for API tests: accounts, encoding and submitting scripts, waiting for states."""
from __future__ import annotations

import base64
import os
import pwd
import subprocess
import time
from dataclasses import dataclass

SEED_PAYLOAD = (
    "IyEvYmluL2Jhc2gKI1BCUyAtTiB0ZXN0am9iCiNQQlMgLVYgLWogb2UgLW8gdGVzdGpvYl9vdXRwdXQucWxvZwojUEJTIC1Q"
    "IG15cHJvamVjdAojUEJTIC1xIG5vcm1hbAojUEJTIC1sIG5vZGVzPTEsaW5zdGFuY2VfdHlwZT1jNS5sYXJnZQovYmluL2VjaG8g"
    "IkhlbGxvIFdvcmxkIgo="
)
SEED_SCRIPT = base64.b64decode(SEED_PAYLOAD).decode()

@dataclass
class Account:
    name: str
    key: str
    password: str | None
    is_admin: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"X-SOCA-USER": self.name, "X-SOCA-TOKEN": self.key}


def encode(script: str) -> str:
    return base64.b64encode(script.encode()).decode()


def submit(client, account: Account, script: str, expect: int = 200) -> str:
    response = client.post("/api/scheduler/job", headers=account.headers, data={"payload": encode(script)})
    assert response.status_code == expect, response.json
    return response.json["message"]


def job_attributes(client, account: Account, job_id: str):
    return client.get(f"/api/scheduler/job?job_id={job_id}", headers=account.headers)


def wait_for_state(client, account: Account, job_id: str, states: str, timeout: float = 20.0) -> dict:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        response = job_attributes(client, account, job_id)
        if response.status_code == 200:
            last = response.json["message"]
            if last["job_state"] in states:
                return last
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}; last seen {last}")


def wait_for_adapter_state(adapter, job_id: str, states, timeout: float, interval: float = 0.2):
    """Poll a scheduler adapter's info() until the job is in one of `states`."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        info = adapter.info(job_id)
        if info.state in states:
            return info
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {info.state} ({info.comment}) after {timeout} s, want {states}")
        time.sleep(interval)


def ensure_posix_account(name: str) -> pwd.struct_passwd:
    """A real account of that name (root only): PBS and Slurm jobs run only as real accounts."""
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


def needs_posix_account(name: str) -> None:
    """As root, give an API user of a cluster backend the POSIX account it needs."""
    if os.geteuid() == 0:
        ensure_posix_account(name)


def recorded_pid(app, job_id: str, timeout: float = 10) -> int:
    """The pid the local runner records right after it starts the job."""
    import sqlalchemy as sa

    from soca_api.extensions import db
    from soca_api.models import Job

    deadline = time.time() + timeout
    while time.time() < deadline:
        with app.app_context():
            pid = db.session.execute(sa.select(Job.pid).where(Job.scheduler_id == job_id)).scalar()
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no pid recorded for job {job_id}")



def wait_for_listed_state(client, account: Account, job_id: str, states: str, timeout: float = 60.0) -> dict:
    """Wait until the listing (never a GET of the job) shows it in one of `states`."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = client.get("/api/scheduler/jobs", headers=account.headers).json["message"].get(job_id)
        if last is not None and last["job_state"] in states:
            return last
        time.sleep(0.2)
    raise AssertionError(f"listing never showed {job_id} in {states}; last {last}")

# -- the cluster backends' tests (PBS, Slurm) ------------------------------------------
POSIX_USER = "socatest"


def ensure_posix_user() -> str:
    """The POSIX account the cluster tests submit as: socatest as root, else the caller."""
    if os.geteuid() == 0:
        ensure_posix_account(POSIX_USER)
    return POSIX_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def api_user(app, name: str):
    """An API user (and, for a root service, the POSIX account its PBS/Slurm jobs run as)."""
    from soca_api.services import accounts

    needs_posix_account(name)  # a root service runs PBS/Slurm jobs only as real accounts
    with app.app_context():
        _user, key = accounts.create_user(name)
    return Account(name, key, None, False)


def reachable_bin(name: str) -> str:
    """As root, qsub runs as the job's account: the fake must be reachable for it."""
    from tests.conftest import make_data_dir

    path = os.path.join(make_data_dir("fakepbs-"), name)
    os.makedirs(path)
    os.chmod(path, 0o1777)  # the fake appends its call log there, as whichever account runs it
    return path
