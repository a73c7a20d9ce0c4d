"""PbsAdapter against the replay fake (tests/fakepbs): recorded OpenPBS answers for exact
command lines, and faults (a hanging qsub, garbage, a missing command).

The fixtures were recorded with full ids (`qstat -f -F json 1.pbshost`); the adapter asks
with the short id (`... 1`), which OpenPBS answers identically (fixture 17d shows `9999`
expanded to `9999.pbshost`), so each recording is replayed under the adapter's argv.
There is no recording of `qstat -f -F json` for all jobs: that answer is assembled from
the recorded single-job answers of the same server (same header, their `Jobs` merged).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
import threading
import time

import pytest

from soca_api.pbs.script import parse_script
from soca_api.schedulers.errors import (
    JobNotFound,
    JobRejected,
    PermissionDenied,
    SchedulerError,
    SchedulerTimeout,
    SchedulerUnavailable,
)
from soca_api.schedulers.pbs import PbsAdapter
from soca_api.schedulers.pbs.adapter import JOB_GONE, SUBMIT_REJECTED
from soca_api.schedulers.pbs.translate import script_file_name
from soca_api.schedulers.values import JobRequest, SubmitContext
from tests.fakepbs.fakepbs import FakePbs, load_fixture

SEED = """#!/bin/bash
#PBS -N testjob
#PBS -V -j oe -o testjob_output.qlog
#PBS -P myproject
#PBS -q normal
#PBS -l nodes=1,instance_type=c5.large
/bin/echo "Hello World"
"""
SNAPSHOT = ["qstat", "-x", "-t", "-f", "-F", "json"]


def qsub(script: str, name: str | None = None) -> list[str]:
    """qsub's command line for a request without -N/-k directives (the adapter adds the
    name it records and direct write of the output files)."""
    return ["qsub", "-N", name or script[:-3], "-k", "doe", script]


def all_jobs_json(*fixtures: str) -> str:
    """`qstat -f -F json` of all jobs, assembled from single-job recordings."""
    document: dict = {}
    for name in fixtures:
        recorded = json.loads(load_fixture(name).stdout)
        jobs = {**document.get("Jobs", {}), **recorded.get("Jobs", {})}
        document = {**recorded, "Jobs": jobs}
    if not fixtures:
        document = {"timestamp": 1795869108, "pbs_version": "23.06.06", "pbs_server": "pbshost"}
    return json.dumps(document, indent=4)


@pytest.fixture
def fake(tmp_path):
    fake = FakePbs(str(tmp_path / "bin"))
    fake.expect_unmatched = False
    yield fake
    if not fake.expect_unmatched:
        assert fake.unmatched() == [], "the adapter ran a command line the scenario does not know"


def make_adapter(fake: FakePbs, **kwargs) -> PbsAdapter:
    options = {"timeout": 5.0, "dialect": "json", "cache_seconds": 5.0, **kwargs}
    return PbsAdapter(bin_dir=fake.bin_dir, **options)


@pytest.fixture
def adapter(fake):
    return make_adapter(fake)


def context_for(tmp_path, name: str = "job_1") -> SubmitContext:
    return SubmitContext(user="alice", job_dir=str(tmp_path / "home" / "alice" / "soca_job_output" / name))


# -- submit ------------------------------------------------------------------------------

def test_submit_seed_script(fake, adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("SOCA_TEST_SECRET", "do-not-leak")
    fake.add_fixture(qsub("testjob.sh"), "03_qsub_seed_asis_after_create_resource.txt")
    context = context_for(tmp_path)
    assert adapter.submit(JobRequest(script=SEED, name="testjob"), context) == "1"
    (call,) = fake.calls("qsub")
    assert call["cwd"] == context.job_dir
    assert call["script"]["text"] == SEED and call["script"]["mode"] == 0o600
    assert stat.S_IMODE(os.stat(context.job_dir).st_mode) == 0o700
    # A clean environment: no service variable reaches the scheduler, PATH has bin_dir.
    assert set(call["env"]) <= {"PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME"}
    assert call["path"].split(":")[0] == fake.bin_dir


def test_submit_array_returns_bracketed_id(fake, adapter, tmp_path):
    fake.add_fixture(qsub("testjob.sh"), "42_qsub_array_J1-3.txt")
    assert adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path)) == "16[]"


def test_submit_bare_id_as_slurm_wrapper_prints_it(fake, adapter, tmp_path):
    fake.add(qsub("x.sh"), stdout="23\n")
    assert adapter.submit(JobRequest(script="#PBS -N x\necho hi\n", name="x"), context_for(tmp_path)) == "23"


def test_script_file_name_is_safe():
    assert script_file_name("testjob") == "testjob.sh"
    assert script_file_name("../../etc/passwd") == "_.._etc_passwd.sh"  # no "/", not hidden
    assert script_file_name(".hidden") == "hidden.sh"
    assert script_file_name("") == "job.sh"
    assert script_file_name("a b;c") == "a_b_c.sh"


# Every row of docs/reference/pbs-facts.md "Command results" for qsub. Recorded where a recording exists.
REJECTIONS = [
    ("01_qsub_seed_asis_unknown_resource.txt", None, None),
    ("30_qsub_unknown_queue.txt", None, None),
    ("30b_qsub_unknown_queue_directive.txt", None, None),
    ("31_qsub_bad_walltime.txt", None, None),
    ("33f_qsub_bad_select.txt", None, None),
    ("33g_qsub_unknown_resource_cmdline.txt", None, None),
    ("33_qsub_directive_unknown_option.txt", None, None),
    ("33b_qsub_directive_missing_arg.txt", None, None),
    ("33c_qsub_directive_bad_name.txt", None, None),
    ("32h_qsub_jobname_231chars_directive.txt", None, None),
    ("32e_qsub_jobname_with_space.txt", None, None),
    ("24_qsub_cmdline_nodes_and_select_conflict.txt", None, None),
    (None, "qsub: Job violates queue and/or server resource limits\n", 188),
    (None, "qsub: Queue is not enabled\n", 173),
    (None, "qsub: Access to queue is denied\n", 174),
    (None, "qsub: Invalid Job Dependency\n", 206),
    (None, "qsub: script contains cr, lf\n", 1),
    (None, "qsub: directive error: -l walltime=1:00:00 \n", 1),
]


@pytest.mark.parametrize("fixture, stderr, code", REJECTIONS)
def test_qsub_rejections_are_400_with_qsub_words(fake, adapter, tmp_path, fixture, stderr, code):
    if fixture:
        fake.add_fixture(qsub("testjob.sh"), fixture)
        stderr = load_fixture(fixture).stderr
    else:
        fake.add(qsub("testjob.sh"), stderr=stderr, exit_code=code)
    with pytest.raises(JobRejected) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    error = caught.value
    assert error.status == 400 and error.message == SUBMIT_REJECTED
    assert error.detail == stderr.splitlines()[0].strip()
    assert "Hello World" not in error.message + error.detail


def test_qsub_detail_is_trimmed(fake, adapter, tmp_path):
    fake.add(qsub("testjob.sh"), stderr="qsub: Unknown resource Resource_List." + "x" * 5000 + "\n", exit_code=187)
    with pytest.raises(JobRejected) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    assert len(caught.value.detail) <= 300


def test_server_down_is_503(fake, adapter, tmp_path):
    fake.add(qsub("testjob.sh"), stderr="qsub: cannot connect to server pbshost (errno=15010)\n", exit_code=1)
    with pytest.raises(SchedulerUnavailable) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    assert caught.value.status == 503


def test_sbatch_failure_behind_the_slurm_wrapper_is_a_rejection(fake, adapter, tmp_path):
    # Slurm's qsub reports sbatch's failure on stdout, with the command it ran.
    stdout = ("There was an error running the Slurm sbatch command.\nThe command was:\n"
              "'/usr/bin/sbatch -e x.sh.e%A -o x.sh.o%A x.sh 2>&1'\nand the output was:\n"
              "'sbatch: error: Batch job submission failed: Invalid partition name specified\n'\n")
    fake.add(qsub("x.sh"), stdout=stdout, exit_code=1)
    with pytest.raises(JobRejected) as caught:
        adapter.submit(JobRequest(script="#PBS -q nope\necho hi\n", name="x"), context_for(tmp_path))
    assert caught.value.detail == "sbatch: error: Batch job submission failed: Invalid partition name specified"


def test_our_own_failure_is_502_not_the_users(fake, adapter, tmp_path):
    fake.add_fixture(qsub("testjob.sh"), "33e_qsub_nonexistent_script.txt")
    with pytest.raises(SchedulerError) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    assert type(caught.value) is SchedulerError and caught.value.status == 502


@pytest.mark.parametrize("stdout", ["Segmentation fault\n#PBS -N testjob\n/bin/echo \"Hello World\"\n", "", "\n\n"])
def test_garbage_or_no_id_from_qsub_is_502(fake, adapter, tmp_path, stdout):
    fake.add(qsub("testjob.sh"), stdout=stdout)
    with pytest.raises(SchedulerError) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    error = caught.value
    assert type(error) is SchedulerError and error.status == 502
    assert "Hello" not in error.message and "PBS" not in error.message and error.detail is None


def test_hanging_qsub_times_out_while_other_calls_proceed(fake, tmp_path):
    fake.add(qsub("testjob.sh"), sleep=30)
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt"))
    adapter = make_adapter(fake, timeout=1.0)
    other: dict = {}

    def poll() -> None:
        time.sleep(0.2)  # qsub is hanging by now
        started = time.monotonic()
        other["state"] = adapter.info("1").state
        other["seconds"] = time.monotonic() - started
        other["done_at"] = time.monotonic()

    thread = threading.Thread(target=poll)
    started = time.monotonic()
    thread.start()
    with pytest.raises(SchedulerTimeout) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    elapsed = time.monotonic() - started
    thread.join()
    assert caught.value.status == 504
    assert 1.0 <= elapsed < 2.0, elapsed
    assert other["state"] == "Q" and other["done_at"] - started < 1.0, other
    print(f"\nqsub hang: SchedulerTimeout after {elapsed:.2f} s (timeout 1 s); "
          f"a concurrent info() took {other['seconds'] * 1000:.0f} ms")


def test_missing_qsub_is_503(tmp_path):
    fake = FakePbs(str(tmp_path / "bin"), commands=("qstat", "qdel"))
    adapter = make_adapter(fake)
    with pytest.raises(SchedulerUnavailable) as caught:
        adapter.submit(JobRequest(script=SEED, name="testjob"), context_for(tmp_path))
    assert caught.value.status == 503 and "qsub" in caught.value.message


def test_missing_qstat_is_503(tmp_path):
    adapter = make_adapter(FakePbs(str(tmp_path / "bin"), commands=("qsub",)))
    with pytest.raises(SchedulerUnavailable):
        adapter.info("1")
    with pytest.raises(SchedulerUnavailable):
        PbsAdapter(bin_dir=str(tmp_path / "nowhere"), dialect="auto").info("1")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_submit_as_the_user_when_root():
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="fakepbs-runas-")
    try:
        os.chmod(base, 0o755)  # the fake runs as nobody: it must reach its scenario and log
        fake = FakePbs(os.path.join(base, "bin"))
        os.chmod(fake.bin_dir, 0o777)
        fake.add(qsub("testjob.sh"), stdout="7.pbshost\n")
        context = SubmitContext(user="nobody", job_dir=os.path.join(base, "home", "soca_job_output", "j1"),
                                run_as_uid=nobody.pw_uid, run_as_gid=nobody.pw_gid, home=os.path.join(base, "home"))
        assert make_adapter(fake).submit(JobRequest(script=SEED, name="testjob"), context) == "7"
        (call,) = fake.calls("qsub")
        assert (call["uid"], call["gid"]) == (nobody.pw_uid, nobody.pw_gid)
        assert call["script"]["uid"] == nobody.pw_uid
        for directory in (context.job_dir, os.path.dirname(context.job_dir)):
            info = os.stat(directory)
            assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (nobody.pw_uid, 0o700)
    finally:
        shutil.rmtree(base)


# -- info --------------------------------------------------------------------------------

@pytest.mark.parametrize("job_id, fixture, state", [
    ("1", "04_qstat_f_json_queued.txt", "Q"),
    ("1.pbshost", "04_qstat_f_json_queued.txt", "Q"),
    ("2", "11_qstat_f_json_running.txt", "R"),
    ("15", "41_qstat_f_json_held.txt", "H"),
    ("16[]", "43_qstat_f_json_array_queued.txt", "Q"),
])
def test_info_from_the_snapshot(fake, adapter, job_id, fixture, state):
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt", "11_qstat_f_json_running.txt",
                                            "41_qstat_f_json_held.txt", "43_qstat_f_json_array_queued.txt"))
    info = adapter.info(job_id)
    assert (info.id, info.state, info.owner) == (job_id.split(".")[0], state, "alice")
    if job_id == "16[]":
        assert info.array_indices == "1-3"
    assert [c["argv"] for c in fake.calls()] == [SNAPSHOT]
    assert fake.calls()[0]["cwd"] == "/"


def test_subjob_absent_from_snapshot_is_asked_directly(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json("43_qstat_f_json_array_queued.txt"))
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "16[1]"], "44b_qstat_f_json_subjob_short_queued.txt")
    info = adapter.info("16[1]")
    assert (info.id, info.state) == ("16[1]", "Q")


def test_finished_job_comes_from_history(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "1"], "07_qstat_x_f_json_after_finish.txt")
    info = adapter.info("1")
    assert (info.state, info.exit_status, info.substate) == ("F", 0, 92)
    # One direct query with -x (never a second, throttled, qstat); a finished job is
    # final: asking again runs nothing.
    adapter.info("1")
    assert len(fake.calls("qstat")) == 2


def test_finished_subjob_comes_from_history(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "16[1]"], "46b_qstat_f_json_subjob_finished_no_x.txt")
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "16[1]"], "46_qstat_x_f_json_subjob_finished.txt")
    assert adapter.info("16[1].pbshost").state == "F"


def test_deleted_job_finishes_with_271(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    fake.add(["qstat", "-x", "-f", "-F", "json", "2"],
             stdout=load_fixture("06_qstat_f_json_after_finish_no_x.txt").stdout,
             stderr="qstat: 2.pbshost Job has finished, use -x or -H to obtain historical job information\n",
             exit_code=35, source="06 with the id of 14b")
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "2"], "14b_qstat_x_f_json_after_qdel_later.txt")
    info = adapter.info("2")
    assert (info.state, info.substate, info.exit_status) == ("F", 91, 271)


def test_unknown_job_is_404_without_a_history_query(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt"))
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "9999"], "17b_qstat_f_json_unknown_id.txt")
    with pytest.raises(JobNotFound) as caught:
        adapter.info("9999")
    assert caught.value.status == 404 and caught.value.message == JOB_GONE
    assert [c["argv"] for c in fake.calls()] == [SNAPSHOT, ["qstat", "-x", "-f", "-F", "json", "9999"]]


def test_finished_then_purged_is_404(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "9999"], "06_qstat_f_json_after_finish_no_x.txt")
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "9999"], "17c_qstat_x_f_json_unknown_id.txt")
    with pytest.raises(JobNotFound):
        adapter.info("9999")


@pytest.mark.parametrize("bad", ["12 13", "1;rm -rf /", "abc", "", "1[", "$(id)", "-f", "1.pbs host", None, 12])
def test_invalid_ids_never_reach_a_command(fake, adapter, bad):
    for call in (adapter.info, adapter.delete, adapter.hold, adapter.release):
        with pytest.raises(ValueError):
            call(bad)
    assert fake.calls() == []


def test_info_all_filters_by_owner(fake, adapter):
    text = all_jobs_json("04_qstat_f_json_queued.txt", "11_qstat_f_json_running.txt")
    fake.add(SNAPSHOT, stdout=text.replace('"alice@pbshost"', '"bob@pbshost"', 1))
    assert sorted(j.id for j in adapter.info_all()) == ["1", "2"]
    assert [j.id for j in adapter.info_all(owner="alice")] == ["2"]
    assert [j.id for j in adapter.info_all(owner="bob")] == ["1"]
    assert adapter.info_all(owner="carol") == []
    assert len(fake.calls()) == 1


def test_empty_queue(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    assert adapter.info_all() == []


def test_invalid_json_snapshot_is_502(fake, adapter):
    fake.add(SNAPSHOT, stdout=load_fixture("04_qstat_f_json_queued.txt").stdout[:300])
    with pytest.raises(SchedulerError) as caught:
        adapter.info("1")
    assert caught.value.status == 502 and "PBS_O" not in (caught.value.detail or "")


def test_server_down_on_qstat_is_503(fake, adapter):
    fake.add(SNAPSHOT, stderr="Connection refused\nqstat: cannot connect to server pbshost (errno=15010)\n",
             exit_code=1)
    with pytest.raises(SchedulerUnavailable):
        adapter.info("1")


# -- the shared snapshot (docs/reference/soca-contract.md defect 7) --------------------------------------

def _concurrently(count: int, call) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_info_calls_share_one_qstat(fake):
    # The fake qstat takes 0.3 s, so the 50 callers really overlap one refresh.
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt", "11_qstat_f_json_running.txt"), sleep=0.3)
    adapter = make_adapter(fake)
    started = time.monotonic()
    results = _concurrently(50, lambda: adapter.info("2").state)
    elapsed = time.monotonic() - started
    assert results == ["R"] * 50
    assert len(fake.calls("qstat")) == 1
    print(f"\n50 concurrent info(): {len(fake.calls('qstat'))} qstat run, {elapsed:.2f} s in all")


def test_concurrent_lookups_of_an_absent_job_share_one_query(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    fake.add(["qstat", "-x", "-f", "-F", "json", "9999"], stdout=load_fixture("17b_qstat_f_json_unknown_id.txt").stdout,
             stderr="qstat: Unknown Job Id 9999.pbshost\n", exit_code=153, sleep=0.3, source="17b, slowed")
    results = _concurrently(20, lambda: adapter.info("9999"))
    assert all(isinstance(r, JobNotFound) for r in results)
    assert len(fake.calls("qstat")) == 2  # the snapshot and one direct query


def test_concurrent_callers_share_a_timeout(fake):
    fake.add(SNAPSHOT, sleep=30)
    adapter = make_adapter(fake, timeout=1.0)
    started = time.monotonic()
    results = _concurrently(10, lambda: adapter.info("1"))
    assert all(isinstance(r, SchedulerTimeout) for r in results)
    assert time.monotonic() - started < 2.0
    assert len(fake.calls("qstat")) == 1


def test_snapshot_refreshes_after_cache_seconds(fake):
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt"))
    adapter = make_adapter(fake, cache_seconds=0.3)
    for _ in range(5):
        adapter.info("1")
    assert len(fake.calls("qstat")) == 1
    time.sleep(0.35)
    # A stale snapshot answers at once; one background refresh follows.
    adapter.info("1")
    deadline = time.monotonic() + 5
    while len(fake.calls("qstat")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    for _ in range(5):
        adapter.info("1")
    assert len(fake.calls("qstat")) == 2


def test_new_job_absent_from_snapshot_is_found_directly_then_cached(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json())
    fake.add_fixture(["qstat", "-x", "-f", "-F", "json", "1"], "04_qstat_f_json_queued.txt")
    for _ in range(10):
        assert adapter.info("1").state == "Q"
    assert len(fake.calls("qstat")) == 2


# -- delete, hold, release -----------------------------------------------------------------

def test_delete_then_the_snapshot_is_asked_again(fake, adapter):
    fake.add(SNAPSHOT, stdout=all_jobs_json("11_qstat_f_json_running.txt"))
    fake.add_fixture(["qdel", "2"], "13_qdel_running_job.txt")
    assert adapter.info("2").state == "R"
    assert adapter.delete("2.pbshost") is None
    fake.add(SNAPSHOT, stdout=all_jobs_json("13b_qstat_f_json_right_after_qdel.txt"))
    adapter.info("2")  # answered at once from the last snapshot; a refresh starts
    deadline = time.monotonic() + 5
    while "terminated" not in (adapter.info("2").comment or "") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "terminated" in adapter.info("2").comment
    assert [c["argv"][0] for c in fake.calls()] == ["qstat", "qdel", "qstat"]


@pytest.mark.parametrize("fixture, argv", [
    ("16b_qdel_unknown_id_noserver.txt", ["qdel", "9999"]),
    ("15_qdel_finished_job.txt", ["qdel", "1"]),
    ("14c_qdel_already_deleted_job.txt", ["qdel", "2"]),
    ("46c_qdel_subjob_finished.txt", ["qdel", "16[2]"]),
])
def test_delete_unknown_or_finished_is_404(fake, adapter, fixture, argv):
    fake.add_fixture(argv, fixture)
    with pytest.raises(JobNotFound) as caught:
        adapter.delete(argv[1])
    assert caught.value.message == JOB_GONE


def test_delete_silent_failure_of_the_slurm_wrapper_is_404(fake, adapter):
    fake.add(["qdel", "23"], exit_code=1)
    with pytest.raises(JobNotFound):
        adapter.delete("23")


def test_delete_someone_elses_job_is_403(fake, adapter):
    fake.add(["qdel", "5"], stderr="qdel: Unauthorized Request  5.pbshost\n", exit_code=159)
    with pytest.raises(PermissionDenied) as caught:
        adapter.delete("5")
    assert caught.value.status == 403


def test_delete_when_server_down_is_503(fake, adapter):
    fake.add(["qdel", "5"], stderr="qdel: cannot connect to server pbshost (errno=15010)\n", exit_code=1)
    with pytest.raises(SchedulerUnavailable):
        adapter.delete("5")


def test_hold_and_release(fake, adapter):
    fake.add(["qhold", "15"])
    fake.add_fixture(["qrls", "15"], "41c_qrls_held.txt")
    fake.add(["qhold", "9999"], stderr="qhold: Unknown Job Id 9999.pbshost\n", exit_code=153)
    adapter.hold("15")
    adapter.release("15.pbshost")
    with pytest.raises(JobNotFound):
        adapter.hold("9999")


# -- queues ---------------------------------------------------------------------------------

OPENPBS_QSTAT_Q = (
    "Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n"
    "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"
    "workq                0     0 yes yes     0     0     0     0     0     0 Exec\n"
    "normal               0     3 yes yes     1     1     1     0     0     0 Exec\n"
    "high                 0     1 yes yes     0     0     1     0     0     0 Exec\n"
)


def test_queues_are_parsed_and_cached(fake, adapter):
    fake.add(["qstat", "-Q"], stdout=OPENPBS_QSTAT_Q, source="OpenPBS qstat -Q layout (not recorded)")
    assert adapter.queues() == ["workq", "normal", "high"]
    assert adapter.queues() == ["workq", "normal", "high"]
    assert adapter.health() == (True, "ok")
    assert len(fake.calls()) == 1


def test_queues_without_qstat_q_fall_back_to_the_jobs(fake, adapter):
    fake.add(["qstat", "-Q"], stderr="Unknown option: Q\n", exit_code=2)
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt", "11_qstat_f_json_running.txt"))
    assert adapter.queues() == ["normal"]


def test_health_reports_a_down_server(fake, adapter):
    fake.add(["qstat", "-Q"], stderr="qstat: cannot connect to server pbshost (errno=15010)\n", exit_code=1)
    assert adapter.health() == (False, "The scheduler is not reachable")


# -- dialects -------------------------------------------------------------------------------

def test_auto_detects_openpbs_once(fake):
    fake.add(["qstat", "--version"], stdout="pbs_version = 23.06.06\n", source="OpenPBS --version (not recorded)")
    fake.add(SNAPSHOT, stdout=all_jobs_json("04_qstat_f_json_queued.txt"))
    adapter = make_adapter(fake, dialect="auto", cache_seconds=60)
    assert adapter.info("1").state == "Q"
    assert adapter.info("1").state == "Q"
    assert adapter.dialect == "json"
    assert [c["argv"] for c in fake.calls()] == [["qstat", "--version"], SNAPSHOT]


def test_auto_detects_the_text_dialect_of_slurms_wrapper(fake):
    fake.add(["qstat", "--version"], stderr="Unknown option: version\nUsage:\n    qstat [-f] ...\n", exit_code=2,
             source="what /usr/bin/qstat (slurm-wlm-torque) prints")
    fake.add(["qstat", "-f"], stdout="Job Id:\t23\n\tJob_Name = x\n\tJob_Owner = socatest@localhost\n"
                                     "\tjob_state = C\n\tqueue = normal\n\teuser = socatest(1001)\n\n")
    adapter = make_adapter(fake, dialect="auto")
    info = adapter.info("23")
    assert (adapter.dialect, info.state, info.owner) == ("text", "F", "socatest")


def test_text_dialect_with_openpbs_text(fake):
    snapshot = "".join(load_fixture(name).stdout for name in ("12_qstat_f_plain_running.txt",
                                                              "41b_qstat_f_plain_held.txt"))
    fake.add(["qstat", "-f"], stdout=snapshot)
    fake.add_fixture(["qstat", "-f", "1"], "08b_qstat_f_plain_after_finish_no_x.txt")
    fake.add_fixture(["qstat", "-x", "-f", "1"], "08_qstat_x_f_plain_after_finish.txt")
    adapter = make_adapter(fake, dialect="text")
    assert adapter.info("2").state == "R"
    assert adapter.info("15").state == "H"
    finished = adapter.info("1")
    assert (finished.state, finished.exit_status) == ("F", 0)
    assert sorted(j.id for j in adapter.info_all(owner="alice")) == ["15", "2"]


def test_text_dialect_no_jobs_at_all_on_slurms_wrapper(fake):
    fake.add(["qstat", "-f"], exit_code=153)  # the wrapper's answer when it has no job
    fake.add(["qstat", "-f", "23"], exit_code=153)
    adapter = make_adapter(fake, dialect="text")
    assert adapter.info_all() == []
    with pytest.raises(JobNotFound):
        adapter.info("23")


def test_unknown_command_line_fails_loudly(fake, adapter):
    fake.expect_unmatched = True
    with pytest.raises(SchedulerError):
        adapter.info("1")
    (call,) = fake.unmatched()
    assert call["argv"] == SNAPSHOT


def test_bad_dialect():
    with pytest.raises(ValueError):
        PbsAdapter(dialect="xml")


def test_queue_and_defaults_the_script_does_not_set_go_on_the_command_line():
    from soca_api.schedulers.pbs.translate import added_options

    request = parse_script("#!/bin/sh\n#PBS -l ncpus=2\ntrue\n")
    request.queue = "normal"
    request.resources["walltime"] = "01:00:00"  # a queue default
    assert added_options(request) == ["-q", "normal", "-l", "walltime=01:00:00"]
    seed = parse_script("#!/bin/sh\n#PBS -q high\n#PBS -l nodes=1,instance_type=c5.large\ntrue\n")
    assert added_options(seed) == []


def test_a_link_planted_at_the_script_name_is_never_written_through(fake, adapter, tmp_path):
    fake.add(qsub("testjob.sh"), stdout="1.pbshost\n")
    context = context_for(tmp_path)
    os.makedirs(context.job_dir, exist_ok=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, os.path.join(context.job_dir, "testjob.sh"))
    with pytest.raises(OSError):
        adapter.submit(parse_script("#!/bin/sh\n#PBS -N testjob\ntrue\n"), context)
    assert victim.read_text() == "precious\n"
    assert fake.calls("qsub") == []
