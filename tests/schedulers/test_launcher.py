"""The command launcher (soca_api/schedulers/launcher.py) driven for real: a root process
runs commands as another account through it, as a root gunicorn worker does for every
sbatch/qsub; timeouts, a crashed or wedged launcher, concurrency, big output, errors, and
no launcher left behind when the service stops."""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from soca_api.schedulers import launcher_client
from soca_api.schedulers.commands import RunAs, clean_environment, run_command
from soca_api.schedulers.errors import PermissionDenied, SchedulerTimeout, SchedulerUnavailable
from soca_api.schedulers.launcher import OutputTooLarge, run_child
from tests.external import require, require_slurm
from tests.helpers import encode, ensure_posix_account
from tests.live import create_user, prepared_service, start_gunicorn

ACCOUNT = "socalaunch"
FLOOR = 1  # outside a Flask app the floor is 1: never root


@pytest.fixture(scope="module")
def run_as() -> RunAs:
    require(os.geteuid() == 0, "A root test run (commands run as another account only under a root service)")
    account = ensure_posix_account(ACCOUNT)
    groups = tuple(os.getgrouplist(account.pw_name, account.pw_gid))
    return RunAs(account.pw_name, account.pw_uid, account.pw_gid, groups, account.pw_dir)


@pytest.fixture
def shared_dir(run_as):
    path = tempfile.mkdtemp(prefix="soca-launch-", dir="/tmp")
    os.chmod(path, 0o777)
    return path


def launcher_pid() -> int:
    pid = launcher_client.launcher_pid(FLOOR)
    assert pid is not None
    return pid


def kill_launcher() -> int:
    """SIGKILL this process's launcher and wait until it is gone whole: its leader shows as
    a zombie while its other threads still hold its sockets open."""
    current = launcher_client.connection(FLOOR)
    current.process.kill()
    current.process.wait(timeout=10)
    return current.pid


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_a_command_runs_as_the_account_through_a_small_launcher(run_as):
    uid = run_command(["id", "-u"], timeout=10, run_as=run_as)
    assert uid.ok and uid.stdout.strip() == str(run_as.uid)
    gid = run_command(["id", "-g"], timeout=10, run_as=run_as).stdout.strip()
    groups = run_command(["id", "-G"], timeout=10, run_as=run_as).stdout.split()
    assert gid == str(run_as.gid) and sorted(map(int, groups)) == sorted(set(run_as.groups) | {run_as.gid})
    pid = launcher_pid()
    with open(f"/proc/{pid}/status") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    assert int(status["PPid"]) == os.getpid()  # this process's own launcher
    assert int(status["VmRSS"].split()[0]) < 40_000  # kB: a small interpreter, not a copy of the worker
    assert int(status["Uid"].split()[0]) == 0  # it drops to the account only in each command


def test_environment_cwd_and_stdin_reach_the_command(run_as, shared_dir):
    shown = run_command(["env"], timeout=10, run_as=run_as, cwd=shared_dir)
    assert dict(line.split("=", 1) for line in shown.stdout.splitlines()) == clean_environment(run_as)
    assert run_command(["pwd"], timeout=10, run_as=run_as, cwd=shared_dir).stdout.strip() == shared_dir
    extra = run_command(["env"], timeout=10, run_as=run_as, env={"PATH": "/usr/bin:/bin", "ONLY": "this"})
    assert sorted(extra.stdout.splitlines()) == ["ONLY=this", "PATH=/usr/bin:/bin"]
    echoed = run_command(["cat"], timeout=10, run_as=run_as, input_text="line one\r\nline two ü\n")
    assert echoed.stdout == "line one\nline two ü\n"  # as subprocess's text mode gives it
    failed = run_command(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, run_as=run_as)
    assert (failed.returncode, failed.stdout, failed.stderr, failed.ok) == (3, "out\n", "err\n", False)
    assert failed.args == ("sh", "-c", "echo out; echo err >&2; exit 3")


def test_no_shell_anywhere(run_as, shared_dir):
    marker = os.path.join(shared_dir, "injected")
    result = run_command(["echo", f"; touch {marker}", "$(id)"], timeout=10, run_as=run_as)
    assert result.stdout == f"; touch {marker} $(id)\n" and not os.path.exists(marker)


def test_the_timeout_kills_the_whole_process_group(run_as, shared_dir):
    pid_file = os.path.join(shared_dir, "grandchild")
    started = time.monotonic()
    with pytest.raises(SchedulerTimeout, match=r"did not answer within 1 seconds \(sh\)"):
        run_command(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout=1, run_as=run_as)
    assert time.monotonic() - started < 3
    with open(pid_file) as handle:
        grandchild = int(handle.read())
    assert wait_gone(grandchild, 2), "the command's own child outlived the timeout"
    assert run_command(["true"], timeout=10, run_as=run_as).ok  # the launcher serves on


def test_the_direct_path_kills_the_group_too(shared_dir):
    pid_file = os.path.join(shared_dir, "direct-grandchild")
    with pytest.raises(SchedulerTimeout):
        run_command(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout=1)
    with open(pid_file) as handle:
        assert wait_gone(int(handle.read()), 2)


def test_missing_or_unrunnable_commands_are_scheduler_unavailable(run_as, shared_dir):
    with pytest.raises(SchedulerUnavailable, match="^Scheduler command not found: no-such-sbatch$"):
        run_command(["no-such-sbatch", "--version"], timeout=10, run_as=run_as)
    with pytest.raises(SchedulerUnavailable, match="^Scheduler command not found: qsub$"):
        run_command(["/nonexistent/bin/qsub"], timeout=10, run_as=run_as)
    private = os.path.join(shared_dir, "private-tool")
    with open(private, "w") as handle:
        handle.write("#!/bin/sh\necho no\n")
    os.chmod(private, 0o700)  # root's only: the account cannot run it
    with pytest.raises(SchedulerUnavailable, match="^Scheduler command cannot be run: private-tool$"):
        run_command([private], timeout=10, run_as=run_as)
    with pytest.raises(ValueError):
        run_command([], timeout=10, run_as=run_as)


def test_big_output_comes_back_whole(run_as):
    size = 24 * 1024 * 1024
    result = run_command(["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' a; head -c {size} /dev/zero >&2"],
                         timeout=30, run_as=run_as)
    assert len(result.stdout) == size and set(result.stdout) == {"a"}
    assert len(result.stderr) == size


def test_output_past_the_bound_kills_the_command():
    with pytest.raises(OutputTooLarge):
        run_child(["sh", "-c", "yes"], timeout=10, cwd="/", env={"PATH": "/usr/bin:/bin"}, max_output=1 << 20)


def test_concurrent_calls_from_many_threads_run_side_by_side(run_as):
    answers: dict[int, str] = {}

    def one(number: int) -> None:
        answers[number] = run_command(["sh", "-c", f"sleep 0.5; echo {number}"], timeout=10, run_as=run_as).stdout

    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert answers == {n: f"{n}\n" for n in range(12)}
    assert time.monotonic() - started < 3, "calls were served one after the other"


def test_a_crashed_launcher_is_restarted(run_as):
    run_command(["true"], timeout=10, run_as=run_as)
    first = kill_launcher()
    assert run_command(["id", "-u"], timeout=10, run_as=run_as).stdout.strip() == str(run_as.uid)
    assert launcher_pid() != first


def test_a_launcher_dying_mid_command_fails_that_call_without_retrying_it(run_as, shared_dir):
    run_command(["true"], timeout=10, run_as=run_as)
    counter = os.path.join(shared_dir, "runs")
    killer = threading.Timer(0.5, os.kill, args=(launcher_pid(), signal.SIGKILL))
    killer.start()
    with pytest.raises(SchedulerUnavailable, match="^Scheduler command interrupted: sh$"):
        run_command(["sh", "-c", f"echo run >> {counter}; sleep 2"], timeout=10, run_as=run_as)
    killer.join()
    time.sleep(2)
    with open(counter) as handle:
        assert handle.read() == "run\n"  # once: a command that may have run is never run again
    assert run_command(["true"], timeout=10, run_as=run_as).ok


def test_a_wedged_launcher_is_killed_and_replaced(run_as, monkeypatch):
    monkeypatch.setattr(launcher_client, "ANSWER_GRACE_SECONDS", 0.5)
    run_command(["true"], timeout=10, run_as=run_as)
    wedged = launcher_pid()
    os.kill(wedged, signal.SIGSTOP)
    try:
        with pytest.raises(SchedulerTimeout):
            run_command(["true"], timeout=0.5, run_as=run_as)
        assert wait_gone(wedged)
    finally:
        if alive(wedged):
            os.kill(wedged, signal.SIGKILL)
    assert run_command(["true"], timeout=10, run_as=run_as).ok
    assert launcher_pid() != wedged


def test_root_and_uids_below_the_floor_are_refused(run_as):
    for uid, gid in ((0, run_as.gid), (run_as.uid, 0)):
        with pytest.raises(PermissionDenied):
            run_command(["id"], timeout=10, run_as=RunAs("x", uid, gid, (), "/"))
    # The launcher checks on its own too, whatever the worker sends.
    connection = launcher_client.connection(run_as.uid)
    base = {"args": ["id", "-u"], "cwd": "/", "env": {"PATH": "/usr/bin:/bin"}, "timeout": 5.0,
            "uid": run_as.uid, "gid": run_as.gid, "groups": []}
    answer, blobs = connection.call(base, [], 10)
    assert answer["returncode"] == 0 and blobs[0].decode().strip() == str(run_as.uid)
    for bad in ({"uid": 0}, {"uid": run_as.uid - 1}, {"uid": str(run_as.uid)}, {"uid": True}, {"gid": 0},
                {"gid": None}, {"groups": "0"}, {"args": "id"}, {"args": []}, {"timeout": -1},
                {"env": {"A": 1}}, {"cwd": 3}):
        answer, _ = connection.call({**base, **bad}, [], 10)
        assert answer.get("error") == "refused", bad
    assert connection.alive  # a refused request does not take the launcher down


def test_commands_as_the_service_itself_never_start_a_launcher():
    launcher_client.shutdown()
    assert run_command(["true"], timeout=10).ok
    assert launcher_client.launcher_pid(FLOOR) is None


def test_shutdown_stops_the_launcher_and_what_it_runs(run_as, shared_dir):
    run_command(["true"], timeout=10, run_as=run_as)
    pid = launcher_pid()
    pid_file = os.path.join(shared_dir, "running")
    ended: list[object] = []

    def interrupted() -> None:
        # Killed with the launcher: the call ends either way, as an interrupted call or as
        # the killed command's own answer, whichever the launcher had time to send.
        try:
            ended.append(run_command(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=30,
                                     run_as=run_as).returncode)
        except SchedulerUnavailable as exc:
            ended.append(exc)

    runner = threading.Thread(target=interrupted)
    runner.start()
    deadline = time.monotonic() + 5
    while not os.path.exists(pid_file) or not Path(pid_file).read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with open(pid_file) as handle:
        command = int(handle.read())
    launcher_client.shutdown()
    runner.join(10)
    assert ended in ([-signal.SIGKILL], [ended[0]]) and len(ended) == 1
    assert isinstance(ended[0], SchedulerUnavailable) or ended[0] == -signal.SIGKILL
    assert wait_gone(pid) and wait_gone(command)


def _launchers_of(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for child in map(int, children):
            with open(f"/proc/{child}/cmdline", "rb") as handle:
                if b"launcher.py" in handle.read():
                    found.append(child)
    return found


def test_a_stopping_service_leaves_no_launcher_behind(run_as):
    """gunicorn on Slurm as root: sbatch goes through each worker's launcher; SIGTERM to
    the whole service (master, workers, runner) leaves no launcher and logs no error."""
    require_slurm()
    ensure_posix_account("socatest")
    env, base = prepared_service(SOCA_SCHEDULER="slurm", SOCA_WORKERS="2")
    key = create_user(env, "socatest")
    server = start_gunicorn(env, base)
    headers = {"X-SOCA-USER": "socatest", "X-SOCA-TOKEN": key}
    job_ids = []
    try:
        held = "#!/bin/sh\n#PBS -N launchertest\n#PBS -h\ntrue\n"
        for _ in range(4):  # both workers, most likely
            answer = requests.post(f"{base}/api/scheduler/job", headers=headers,
                                   data={"payload": encode(held)}, timeout=30)
            assert answer.status_code == 200, answer.text
            job_ids.append(answer.json()["message"])
        workers = list(map(int, subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                               text=True).stdout.split()))
        launchers = _launchers_of(workers)
        assert launchers, "no worker started a launcher"
        # The reconciler installs its SIGTERM handler once started: a stop before that
        # ends it with -15 (logged as an error), which is not what this test is about.
        heartbeat = os.path.join(env["SOCA_DATA_DIR"], "runner.heartbeat")
        deadline = time.monotonic() + 30
        while not os.path.exists(heartbeat) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for job_id in job_ids:
            requests.delete(f"{base}/api/scheduler/job?job_id={job_id}", headers=headers, timeout=30)
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        for pid in [server.pid, *map(int, children)]:
            os.kill(pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert all(wait_gone(pid) for pid in launchers), "a launcher outlived its worker"
    with open(os.path.join(env["SOCA_DATA_DIR"], "gunicorn.log")) as handle:
        log = handle.read()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]
