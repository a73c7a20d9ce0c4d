"""gunicorn settings for soca-api, from the same SOCA_* variables as config.py.

With the local scheduler, the master also starts the runner (one process, restarted if
it dies) so that `make run` is all a laptop needs.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# (Imported under another name: "config" is one of gunicorn's own setting names.)
from config import server_settings as _server_settings  # noqa: E402 - the project's settings

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

_runner = {"process": None, "stop": False}


def _supervise(server) -> None:
    args = [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run", "--exit-with-parent"]
    while not _runner["stop"]:
        process = subprocess.Popen(args, cwd=os.path.dirname(os.path.abspath(__file__)))
        _runner["process"] = process
        server.log.info("local runner started (pid %s)", process.pid)
        code = process.wait()
        if _runner["stop"]:
            break
        server.log.error("local runner exited with %s; restarting in 1 s", code)
        time.sleep(1)


def when_ready(server):
    if certfile and keyfile:
        server.log.info("serving HTTPS with %s", certfile)
    if _server["start_runner"]:
        threading.Thread(target=_supervise, args=(server,), daemon=True, name="runner-supervisor").start()


def on_exit(server):
    _runner["stop"] = True
    process = _runner["process"]
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
