"""SlurmAdapter against the real one-node Slurm (scripts/slurm-single-node.sh start).

When the tests run as root, jobs are submitted as a plain POSIX user (`socatest`, created
here if missing) exactly as the service does it: privileges dropped in the sbatch child,
job directory under that user's home.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from soca_api.pbs.script import parse_script
from soca_api.schedulers.errors import JobNotFound, JobRejected, SchedulerError, SchedulerUnavailable
from soca_api.schedulers.slurm import adapter as slurm_module
from soca_api.schedulers.slurm.adapter import SUBMIT_REJECTED, SlurmAdapter
from soca_api.schedulers.values import ArraySpec, Dependency, JobInfo, JobRequest, SubmitContext
from tests.external import require_slurm
from tests.helpers import wait_for_adapter_state

pytestmark = pytest.mark.slurm

TEST_USER = "socatest"
FINISH_TIMEOUT = 30.0

SEED_SCRIPT = """#!/bin/bash
#PBS -N testjob
#PBS -V -j oe -o testjob_output.qlog
#PBS -P myproject
#PBS -q normal
#PBS -l nodes=1,instance_type=c5.large
/bin/echo "Hello World"
"""


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True, timeout=30)
        return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def adapter() -> SlurmAdapter:
    require_slurm()
    return SlurmAdapter(timeout=20.0)


@pytest.fixture(scope="module")
def account(adapter) -> pwd.struct_passwd:
    if os.geteuid() == 0:
        return _ensure_user(TEST_USER)
    return pwd.getpwuid(os.getuid())  # not root: jobs run as ourselves


@pytest.fixture(scope="module")
def jobs_root(account):
    root = os.path.join(account.pw_dir, f"soca-api-tests-{uuid.uuid4().hex[:8]}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def context(account, jobs_root) -> SubmitContext:
    job_dir = os.path.join(jobs_root, uuid.uuid4().hex[:12])
    if os.geteuid() != 0:
        return SubmitContext(user=account.pw_name, job_dir=job_dir, home=account.pw_dir)
    return SubmitContext(
        user=account.pw_name,
        job_dir=job_dir,
        run_as_uid=account.pw_uid,
        run_as_gid=account.pw_gid,
        run_as_groups=tuple(os.getgrouplist(account.pw_name, account.pw_gid)),
        home=account.pw_dir,
    )


def job(body: str, **fields: object) -> JobRequest:
    fields.setdefault("name", "t")
    fields.setdefault("name_given", True)
    fields.setdefault("join", "oe")
    return JobRequest(script=f"#!/bin/bash\n{body}\n", **fields)  # type: ignore[arg-type]


def wait_for(adapter: SlurmAdapter, job_id: str, states: str = "F", timeout: float = FINISH_TIMEOUT) -> JobInfo:
    return wait_for_adapter_state(adapter, job_id, states, timeout)


def test_seed_script_runs_as_the_user(adapter, context, account):
    job_id = adapter.submit(parse_script(SEED_SCRIPT), context)
    assert job_id.isdigit()

    info = wait_for(adapter, job_id)
    assert info.exit_status == 0
    assert (info.name, info.owner, info.queue, info.project) == ("testjob", account.pw_name, "normal", "myproject")
    assert info.native["user_name"] == account.pw_name and info.native["user_id"] == account.pw_uid
    assert info.resource_list["instance_type"] == "c5.large"
    output = os.path.join(context.job_dir, "testjob_output.qlog")
    assert info.output_path == output and info.join == "oe"
    with open(output) as handle:
        assert handle.read() == "Hello World\n"
    assert os.stat(output).st_uid == account.pw_uid
    job_dir = os.stat(context.job_dir)
    assert job_dir.st_uid == account.pw_uid and job_dir.st_mode & 0o777 == 0o700

    listed = {j.id: j for j in adapter.info_all(owner=account.pw_name)}
    assert listed[job_id].state == "F" and listed[job_id].exit_status == 0


def test_exit_code_and_pbs_environment(adapter, context):
    job_id = adapter.submit(job('echo "$PBS_O_WORKDIR $a"; exit 3', variables={"a": "x y"}), context)
    info = wait_for(adapter, job_id)
    assert info.exit_status == 3
    with open(os.path.join(context.job_dir, f"t.o{job_id}")) as handle:
        assert handle.read() == f"{context.job_dir} x y\n"


def test_hold_then_release(adapter, context):
    job_id = adapter.submit(job("true", hold=True), context)
    info = adapter.info(job_id)
    assert (info.state, info.hold_types) == ("H", "u")
    adapter.release(job_id)
    assert wait_for(adapter, job_id).exit_status == 0


def settled(adapter: SlurmAdapter, job_id: str, want: tuple[str, str], timeout: float = 15.0) -> tuple[str, str]:
    """Reads come from a snapshot refreshed in the background: an action shows within
    an interval or two, never synchronously."""
    deadline = time.monotonic() + timeout
    while True:
        info = adapter.info(job_id)
        seen = (info.state, info.hold_types)
        if seen == want or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_hold_a_waiting_job(adapter, context):
    later = datetime.now() + timedelta(hours=1)
    job_id = adapter.submit(job("true", start_after=later), context)
    try:
        assert settled(adapter, job_id, ("W", "n")) == ("W", "n")
        adapter.hold(job_id)
        assert settled(adapter, job_id, ("H", "u")) == ("H", "u")
        adapter.release(job_id)
        assert settled(adapter, job_id, ("W", "n")) == ("W", "n")
    finally:
        adapter.delete(job_id)
    assert settled(adapter, job_id, ("F", "n"))[0] == "F"


def test_dependency_afterok(adapter, context):
    first = adapter.submit(job("sleep 2"), context)
    second = adapter.submit(job("true", dependencies=[Dependency("afterok", (first,))]), context)
    waiting = adapter.info(second)
    assert waiting.state == "H" or (waiting.state == "Q" and waiting.comment == "Dependency")
    assert waiting.depend == f"afterok:{first}"
    assert wait_for(adapter, first).exit_status == 0
    assert wait_for(adapter, second).exit_status == 0


def test_array_of_three(adapter, context):
    job_id = adapter.submit(job('echo "task $SLURM_ARRAY_TASK_ID"', array=ArraySpec(1, 3)), context)
    assert job_id.endswith("[]")
    number = job_id[:-2]
    parent = wait_for(adapter, job_id)
    assert (parent.id, parent.exit_status, parent.array_indices) == (job_id, 0, "1-3")
    for index in (1, 2, 3):
        task = adapter.info(f"{number}[{index}]")
        assert (task.id, task.state, task.exit_status) == (f"{number}[{index}]", "F", 0)
        with open(os.path.join(context.job_dir, f"t.o{number}.{index}")) as handle:
            assert handle.read() == f"task {index}\n"
    assert adapter.info(number).id == job_id  # the bare array id answers as the parent
    with pytest.raises(JobNotFound):
        adapter.info(f"{number}[7]")


def test_delete_running_job(adapter, context):
    job_id = adapter.submit(job("sleep 60"), context)
    wait_for(adapter, job_id, states="R")
    adapter.delete(job_id)
    info = wait_for(adapter, job_id)
    assert (info.exit_status, info.substate) == (271, 91)
    with pytest.raises(JobNotFound):
        adapter.delete(job_id)  # already finished


def test_unknown_partition_is_rejected(adapter, context):
    with pytest.raises(JobRejected) as caught:
        adapter.submit(job("true", queue="nosuchq"), context)
    assert caught.value.message == SUBMIT_REJECTED
    assert caught.value.detail == "sbatch: error: invalid partition specified: nosuchq"


def test_unsatisfiable_instance_type_is_rejected(adapter, context):
    with pytest.raises(JobRejected) as caught:
        adapter.submit(job("true", resources={"instance_type": "m5.large"}), context)
    assert "Invalid feature specification" in caught.value.detail
    ignoring = SlurmAdapter(instance_type_mode="ignore")
    job_id = ignoring.submit(job("true", resources={"instance_type": "m5.large"}), context)
    assert wait_for(ignoring, job_id).exit_status == 0


def test_untranslatable_request_is_rejected(adapter, context):
    with pytest.raises(JobRejected) as caught:
        adapter.submit(job("true", variables={"a": "1,2"}), context)
    assert "comma" in caught.value.detail


@pytest.mark.parametrize("job_id", ["99999999", "99999999[]", "99999999[2]", "bogus"])
def test_unknown_job(adapter, job_id):
    with pytest.raises(JobNotFound) as caught:
        adapter.info(job_id)
    assert caught.value.message.startswith("Unable to retrieve Job ID")
    with pytest.raises(JobNotFound):
        adapter.delete(job_id)
    with pytest.raises(JobNotFound):
        adapter.hold(job_id)
    with pytest.raises(JobNotFound):
        adapter.release(job_id)


def test_info_all_shares_one_squeue(adapter, monkeypatch, account, context):
    shared = SlurmAdapter(cache_seconds=1.0)
    job_id = shared.submit(job("true"), context)
    calls: list[tuple[str, ...]] = []
    real_run = slurm_module.run_command

    def counting(args, **kwargs):
        calls.append(tuple(args))
        time.sleep(0.05)  # widen the window in which other callers must wait, not run
        return real_run(args, **kwargs)

    monkeypatch.setattr(slurm_module, "run_command", counting)
    results: list[list[JobInfo]] = []
    threads = [threading.Thread(target=lambda: results.append(shared.info_all(owner=account.pw_name)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [c[0] for c in calls] == ["squeue"]
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert job_id in {j.id for j in results[0]}
    assert all(j.owner == account.pw_name for j in results[0])
    assert shared.info_all() is not None and len(calls) == 1  # still fresh
    time.sleep(1.1)
    shared.info_all()
    assert len(calls) == 2


def test_queues_and_health(adapter):
    assert adapter.queues() == ["normal", "high"]
    assert adapter.health() == (True, "ok")


def test_timings(adapter, context):
    """Rough costs, printed for the record (pytest -s): one submit, one info."""
    t0 = time.perf_counter()
    job_id = adapter.submit(job("true"), context)
    submit = time.perf_counter() - t0
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        adapter.info(job_id)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    print(f"\nslurm submit {submit * 1000:.1f} ms, info median {samples[10] * 1000:.1f} ms")
    assert submit < 2.0 and samples[10] < 0.5
    wait_for(adapter, job_id)


def test_script_file_is_private_and_fresh(adapter, context, account):
    first = adapter.submit(job("true"), context)
    second = adapter.submit(replace(job("true"), name="u"), context)
    scripts = [n for n in os.listdir(context.job_dir) if n.startswith("soca-job-")]
    assert len(scripts) == 2
    for name in scripts:
        status = os.stat(os.path.join(context.job_dir, name))
        assert status.st_uid == account.pw_uid and status.st_mode & 0o077 == 0
    wait_for(adapter, first)
    wait_for(adapter, second)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root service writes into other users' directories")
def test_user_planted_link_is_not_followed(adapter, context, account, tmp_path):
    target = tmp_path / "root-only"
    target.mkdir()
    os.makedirs(context.job_dir)
    os.chown(context.job_dir, account.pw_uid, account.pw_gid)
    link = os.path.join(context.job_dir, "link")
    os.symlink(target, link)
    os.lchown(link, account.pw_uid, account.pw_gid)
    with pytest.raises(SchedulerError, match="Unable to write the job script"):
        adapter.submit(job("true"), replace(context, job_dir=os.path.join(link, "sub")))
    with pytest.raises(SchedulerError, match="Unable to write the job script"):
        adapter.submit(job("true"), replace(context, job_dir=link))
    assert list(target.iterdir()) == []


def test_missing_commands_are_an_outage():
    broken = SlurmAdapter(bin_dir="/nonexistent/slurm/bin")
    with pytest.raises(SchedulerUnavailable):
        broken.info("1")
    assert broken.health()[0] is False
