"""gunicorn settings for soca-api, from the same SOCA_* variables as config.py.

The master also starts `flask scheduler run` (one process, restarted if it dies): the
local runner on the local backend, the reconciler on PBS and Slurm (one per deployment:
on other instances it waits as a standby), so that `make run` is all a host needs.
"""
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import gunicorn.util

# (Imported under another name: "config" is one of gunicorn's own setting names.)
from config import server_settings as _server_settings
from soca_api.gunicorn_errors import json_error_writer

_server = _server_settings()
bind = f"{_server['host']}:{_server['port']}"
workers = _server["workers"]
# Chosen by measurement (docs/benchmarks.md, README "Serving"): gthread threads keep
# hundreds of pollers' connections alive between polls and overlap database waits; the
# service keeps no per-thread state outside Flask's contexts.
worker_class = _server["worker_class"]
threads = _server["threads"]
keepalive = _server["keepalive"]
# No shared control socket in ~/.gunicorn: several services (and test servers) may run at once.
control_socket_disable = True
timeout = _server["worker_timeout"]
accesslog = _server["access_log"] or None  # empty: no access log
logger_class = "soca_api.access_log.AccessLogger"  # the same lines, a fraction of the cost
# HTTPS when both are set (the seed requires a valid certificate in production).
certfile = _server["tls_cert"] or None
keyfile = _server["tls_key"] or None
umask = 0o077  # the database and keys the service writes are for its own account only

# gunicorn answers 414/431/400 itself, before the app: in the service's JSON envelope.
gunicorn.util.write_error = json_error_writer(_server["hsts_seconds"] if certfile and keyfile else 0)


@dataclass
class _RunnerState:
    """The scheduler runner's process, and whether the master told it to stop for good."""

    process: subprocess.Popen[bytes] | None = None
    stop: bool = False


_runner = _RunnerState()


def _supervise(server) -> None:
    args = [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run", "--exit-with-parent"]
    while not _runner.stop:
        process = subprocess.Popen(args, cwd=os.path.dirname(os.path.abspath(__file__)))
        _runner.process = process
        server.log.info("scheduler runner started (pid %s)", process.pid)
        code = process.wait()
        if _runner.stop:
            break
        if code == 0:
            # The runner exits 0 only when told to stop: usually the whole service is
            # stopping (a SIGTERM to its process group, which reaches the runner before
            # the master acts on it). Not an error; restart only if the master serves on.
            server.log.info("scheduler runner stopped (exit 0)")
            if _master_stopping(server, wait=3.0):
                break
            server.log.info("scheduler runner restarting: the service still runs")
            continue
        server.log.error("scheduler runner exited with %s; restarting in 1 s", code)
        time.sleep(1)


def _master_stopping(server, wait: float) -> bool:
    """Whether the master is shutting down (it drops its listeners first), within `wait` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _runner.stop or not server.LISTENERS:
            return True
        time.sleep(0.1)
    return False


def when_ready(server):
    if certfile and keyfile:
        server.log.info("serving HTTPS with %s", certfile)
    if _server["start_runner"]:
        threading.Thread(target=_supervise, args=(server,), daemon=True, name="runner-supervisor").start()


def on_exit(server):
    _runner.stop = True
    process = _runner.process
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
