"""The PBS adapter's text dialect for real, against Slurm's Torque wrappers (qsub, qstat,
qdel from Debian's slurm-wlm-torque) on the one-node Slurm of scripts/slurm-single-node.sh.

The wrapper's qsub does not read `#PBS` lines, sbatch does and rejects the ones it does
not know (docs/reference/slurm-ci.md): the scripts here stay to `-N` and `-q`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
import uuid

import pytest

from soca_api.schedulers.errors import JobNotFound, JobRejected
from soca_api.schedulers.pbs import PbsAdapter
from soca_api.schedulers.values import JobRequest, SubmitContext
from tests.external import require_slurm
from tests.helpers import wait_for_adapter_state

pytestmark = pytest.mark.slurm

TEST_USER = "socatest"
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def submitter() -> pwd.struct_passwd:
    """The POSIX user jobs run as: never root (created when missing and we are root)."""
    require_slurm()
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], check=True, capture_output=True, timeout=30)
        return pwd.getpwnam(TEST_USER)


@pytest.fixture(scope="module")
def jobs_root(submitter, tmp_path_factory):
    if os.geteuid() != 0:
        yield str(tmp_path_factory.mktemp("slurm-jobs"))
        return
    # Under the user's home: the job runs as that user, in its job directory.
    root = os.path.join(submitter.pw_dir, "soca_job_output", f"pbs_over_slurm_{uuid.uuid4().hex[:8]}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def context(submitter, jobs_root):
    job_dir = os.path.join(jobs_root, uuid.uuid4().hex[:8])
    if os.geteuid() != 0:
        return SubmitContext(user=submitter.pw_name, job_dir=job_dir)
    return SubmitContext(user=submitter.pw_name, job_dir=job_dir, run_as_uid=submitter.pw_uid,
                         run_as_gid=submitter.pw_gid, home=submitter.pw_dir)


@pytest.fixture
def adapter() -> PbsAdapter:
    return PbsAdapter(dialect="text", timeout=15.0, cache_seconds=0.2)


def wait_for(adapter: PbsAdapter, job_id: str, states: set[str]):
    return wait_for_adapter_state(adapter, job_id, states, WAIT_SECONDS, interval=0.25)


def test_submit_and_read_until_finished(adapter, context, submitter):
    started = time.monotonic()
    job_id = adapter.submit(JobRequest(script="#!/bin/sh\n#PBS -N x\necho hi\n", name="x"), context)
    submitted = time.monotonic() - started
    assert job_id.isdigit()
    info = wait_for(adapter, job_id, {"F"})  # the wrapper shows C: normalised to F
    finished = time.monotonic() - started
    assert (info.id, info.name, info.owner, info.queue) == (job_id, "x", submitter.pw_name, "normal")
    assert info.created is not None and info.native["job_state"] == "C"
    # The wrapper names the output after the script: <script>.o<id>, in the job directory.
    output = os.path.join(context.job_dir, f"x.sh.o{job_id}")
    deadline = time.monotonic() + 5
    while not os.path.exists(output) and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(output, encoding="utf-8") as handle:
        assert handle.read().strip() == "hi"
    assert os.stat(context.job_dir).st_uid == submitter.pw_uid
    assert job_id in [job.id for job in adapter.info_all(owner=submitter.pw_name)]
    assert adapter.info_all(owner="nobody-has-this-name") == []
    print(f"\nslurm wrapper: qsub {submitted * 1000:.0f} ms, submit to finished (C) {finished:.1f} s")


def test_delete_a_running_job(adapter, context):
    job_id = adapter.submit(JobRequest(script="#!/bin/sh\n#PBS -N sleeper\nsleep 60\n", name="sleeper"), context)
    assert wait_for(adapter, job_id, {"R"}).name == "sleeper"
    adapter.delete(job_id)
    assert wait_for(adapter, job_id, {"F"}).state == "F"
    with pytest.raises(JobNotFound):  # the wrapper's qdel on a finished job: silent exit 1
        adapter.delete(job_id)


def test_unknown_job(adapter, submitter):
    with pytest.raises(JobNotFound):
        adapter.info("987654321")


def test_rejected_by_sbatch(adapter, context):
    with pytest.raises(JobRejected) as caught:
        adapter.submit(JobRequest(script="#!/bin/sh\n#PBS -q nosuchqueue\necho hi\n", name="bad"), context)
    assert "sbatch" in caught.value.detail and "partition" in caught.value.detail.lower()


def test_auto_dialect_and_queues(submitter):
    adapter = PbsAdapter(dialect="auto", timeout=15.0)
    queues = adapter.queues()
    assert adapter.dialect == "text"
    assert {"normal", "high"} <= set(queues)
