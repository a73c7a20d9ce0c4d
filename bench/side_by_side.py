"""Side by side: the service on each backend against slurmrestd and a scheduler-per-request
baseline, with the same client (wrk, keep-alive) in the same run.

    .venv/bin/python bench/side_by_side.py [--seconds 5] [--jobs 1000] [--pbs-bin /opt/pbs/bin]
                                           [--job-user socatest] [--against ../older-checkout]
                                           [--settings 2x16,2x8]
                                           [--write docs/benchmarks.md]

Measures
- GET one job (`GET /api/scheduler/job?job_id=`) at 1, 50 and 200 connections: the service
  on the local backend, on Slurm and on PBS (where they run here); slurmrestd's
  `GET /slurm/v0.0.38/job/{id}` (where the Debian package is installed); a hello-world
  Flask app under the service's gunicorn settings (the ceiling of any Flask app here); and
  a baseline app that runs one `qstat -f` (or `scontrol show job`) per request, what a
  naive wrapper of the CLI does. In rounds (`--rounds`): every server is up at once and
  each round drives every target in turn; the table gives medians, and the median of each
  round's ratio.
- Listing `--jobs` held jobs: the service's `GET /api/scheduler/jobs?limit=1000` (local
  backend) against slurmrestd's `GET /slurm/v0.0.38/jobs` with as many held Slurm jobs.
- Submitting: the API on Slurm (and PBS) against the raw `sbatch` (`qsub`), one at a time
  and in turn (one API submission, one raw call, ...), both as the same POSIX account
  (`--job-user`: a root service runs PBS and Slurm jobs only as a real account of the API
  user's name).

PBS is measured only when asked: `--pbs-bin DIR` names where OpenPBS's commands live (on
a machine with Slurm's Torque wrappers as /usr/bin/qsub, /opt/pbs/bin), `--pbs` takes the
ones on PATH.

slurmrestd refuses to run as root and, with rest_auth/local, answers only on a unix socket:
it runs as `nobody` there, with `socat` (as `nobody` too) bridging a TCP port to it so
that wrk drives it like the others. The bridge's copy costs slurmrestd a little: its
numbers are, if anything, low. Nothing is restarted: slurmctld is used as it runs.

Every server listens on 127.0.0.1; every loop is bounded; every job submitted here is
cancelled at the end (Slurm jobs by their unique name).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from statistics import median

from serving import free_port, wait_http

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
HELD_SCRIPT = "#!/bin/sh\n#PBS -N sbs\n#PBS -h\ntrue\n"
CONNECTIONS = (1, 50, 200)
BASELINE_APP = '''
import os, subprocess
COMMAND = os.environ["BENCH_STATUS_COMMAND"].split()
def app(environ, start_response):
    job_id = environ.get("QUERY_STRING", "").partition("job_id=")[2]
    done = subprocess.run(COMMAND + [job_id], capture_output=True, timeout=30)
    body = b'{"success": true, "message": %d}' % len(done.stdout)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''
HELLO_APP = '''
from flask import Flask, jsonify
app = Flask(__name__)
@app.get("/")
def hello():
    return jsonify(success=True, message="hello")
'''


def request(port: int, method: str, path: str, headers: dict, body: bytes | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data or b"{}")


def wrk(port: int, path: str, headers: dict, connections: int, seconds: float) -> dict[str, float]:
    """wrk with keep-alive connections; throughput and latency percentiles."""
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout

    def millis(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"throughput": float(rate.group(1)) if rate else 0.0, "p50": millis("50"), "p99": millis("99"),
            "errors": int(errors.group(1)) if errors else 0}


class Service:
    """The service under gunicorn.conf.py (the settings `make run` uses) on one backend."""

    def __init__(self, scheduler: str, user: str | None = None, pbs_bin: str = "",
                 project_dir: str = PROJECT_DIR, extra_env: dict[str, str] | None = None) -> None:
        self.scheduler = scheduler
        self.data_dir = tempfile.mkdtemp(prefix=f"soca-sbs-{scheduler}-", dir="/tmp")
        os.chmod(self.data_dir, 0o711)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SOCA_")}
        self.env.update(SOCA_DATA_DIR=self.data_dir, SOCA_PORT=str(self.port), SOCA_SCHEDULER=scheduler,
                        SOCA_ACCESS_LOG="", SOCA_AUTH_FAILURE_LIMIT="100000 per minute")
        if pbs_bin:
            self.env["SOCA_PBS_BIN"] = pbs_bin
        self.env.update(extra_env or {})
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run(flask + ["db", "upgrade"], cwd=project_dir, env=self.env, check=True, capture_output=True)
        name = user or "sbs" + uuid.uuid4().hex[:6]
        out = subprocess.run(flask + ["user", "create", name], cwd=project_dir, env=self.env, check=True,
                             capture_output=True, text=True).stdout
        self.headers = {"X-SOCA-USER": name, "X-SOCA-TOKEN": out.strip().splitlines()[-1]}
        self.process = subprocess.Popen([os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                        cwd=project_dir, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_http(self.port, "/api/health", any_answer=True)
        self.job_ids: list[str] = []

    def submit(self, script: str = HELD_SCRIPT) -> str:
        payload = base64.b64encode(script.encode()).decode()
        body = f"payload={payload.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}".encode()
        status, answer = request(self.port, "POST", "/api/scheduler/job",
                                 {**self.headers, "Content-Type": "application/x-www-form-urlencoded"}, body)
        if status != 200:
            raise RuntimeError(f"submit on {self.scheduler} answered {status}: {answer}")
        self.job_ids.append(answer["message"])
        return answer["message"]

    def stop(self) -> None:
        for job_id in self.job_ids if self.scheduler != "local" else ():
            with contextlib.suppress(OSError):
                request(self.port, "DELETE", f"/api/scheduler/job?job_id={job_id}", self.headers)
        self.process.terminate()
        self.process.wait(timeout=60)


class StatusPerRequest:
    """A WSGI app under gunicorn running one status command per request (`command`), or,
    without one, a hello-world Flask app under the service's own gunicorn settings: the
    ceiling of any Flask app on this machine."""

    def __init__(self, command: str | None) -> None:
        self.folder = tempfile.mkdtemp(prefix="soca-sbs-baseline-")
        with open(os.path.join(self.folder, "status_app.py"), "w") as handle:
            handle.write(BASELINE_APP if command else HELLO_APP)
        self.port = free_port()
        env = dict(os.environ, BENCH_STATUS_COMMAND=command or "")
        sys.path.insert(0, PROJECT_DIR)
        from config import server_settings

        served = server_settings()
        workers, threads = (2, 4) if command else (served["workers"], served["threads"])
        self.process = subprocess.Popen(
            [os.path.join(BIN, "gunicorn"), "--workers", str(workers), "--threads", str(threads), "--worker-class",
             "gthread" if command else served["worker_class"], "--bind", f"127.0.0.1:{self.port}",
             "status_app:app"],
            cwd=self.folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.port, "/?job_id=0", any_answer=True)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


class SlurmRestd:
    """slurmrestd as `nobody` on a unix socket, reached through a socat TCP bridge."""

    VERSION = "v0.0.38"

    def __init__(self) -> None:
        nobody = pwd.getpwnam("nobody")
        self.folder = tempfile.mkdtemp(prefix="soca-sbs-restd-")
        os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
        socket_path = os.path.join(self.folder, "restd.sock")
        self.port = free_port()

        def as_nobody() -> None:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        self.restd = subprocess.Popen(["slurmrestd", "-a", "rest_auth/local", "-s", f"openapi/{self.VERSION}",
                                       f"unix:{socket_path}"], preexec_fn=as_nobody,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(socket_path):
                break
            time.sleep(0.1)
        self.bridge = subprocess.Popen(["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr,backlog=512",
                                        f"UNIX-CONNECT:{socket_path}"], preexec_fn=as_nobody,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.port, f"/slurm/{self.VERSION}/ping", any_answer=True)

    def stop(self) -> None:
        for process in (self.bridge, self.restd):
            process.terminate()
            process.wait(timeout=30)


def slurm_running() -> bool:
    if not shutil.which("sinfo"):
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    return out.returncode == 0 and any(s in ("idle", "mixed", "allocated") for s in out.stdout.split())


def pbs_running(pbs_bin: str = "") -> bool:
    qstat = os.path.join(pbs_bin, "qstat") if pbs_bin else shutil.which("qstat")
    if not qstat or not os.access(qstat, os.X_OK):
        return False
    out = subprocess.run([qstat, "-B"], capture_output=True, text=True, timeout=10)
    return out.returncode == 0 and "Active" in out.stdout


def as_account(user: str | None) -> dict:
    """subprocess arguments that run a command as `user` (root only), as the service does."""
    if not user or os.geteuid() != 0:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid), "cwd": account.pw_dir}


def submit_side_by_side(service: Service, command: list[str], count: int, user: str | None) -> tuple[dict, dict]:
    """`count` submissions through the API and `count` raw CLI calls, one at a time and in
    turn, so that both see the same machine (other processes' load comes and goes):
    ({throughput, p50, p99} of the API, the same of the raw CLI)."""
    api: list[float] = []
    raw: list[float] = []
    service.submit()  # the worker's first request pays for its lazy set-up: not measured
    for _ in range(count):
        started = time.perf_counter()
        service.submit()
        api.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=60, **as_account(user))
        raw.append(time.perf_counter() - started)

    def summary(seconds: list[float]) -> dict:
        ordered = sorted(seconds)
        return {"throughput": len(ordered) / sum(ordered), "p50": 1000 * ordered[len(ordered) // 2],
                "p99": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}

    return summary(api), summary(raw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load phase")
    parser.add_argument("--rounds", type=int, default=3, help="GET rounds (the table gives medians)")
    parser.add_argument("--jobs", type=int, default=1000, help="held jobs in the listing phase")
    parser.add_argument("--submits", type=int, default=20, help="submissions per submit measure")
    parser.add_argument("--pbs", action="store_true", help="also the PBS backend, with the qsub/qstat on PATH")
    parser.add_argument("--pbs-bin", default="", help="also the PBS backend, with the commands of this folder "
                        "(e.g. /opt/pbs/bin where /usr/bin/qsub is Slurm's Torque wrapper)")
    parser.add_argument("--job-user", default="socatest" if os.geteuid() == 0 else None,
                        help="API user (and POSIX account) that submits on Slurm and PBS; a root service "
                        "needs a real account of that name")
    parser.add_argument("--skip", default="", help="comma-separated phases to leave out: get, list, submit")
    parser.add_argument("--against", help="another checkout of the service (e.g. a `git worktree` of an older "
                        "commit) driven in the same GET rounds, as 'against (backend)'")
    parser.add_argument("--settings", default="", help="gunicorn settings to compare on the local backend in the "
                        "same GET rounds, as WORKERSxTHREADS (e.g. 2x16,2x8,2x4)")
    parser.add_argument("--write", help="append the table to this markdown file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    args.load_before = os.getloadavg()[0]
    pbs_bin = args.pbs_bin
    slurm, pbs = slurm_running(), pbs_running(pbs_bin) and (args.pbs or bool(pbs_bin))
    pbs_command = (lambda name: os.path.join(pbs_bin, name)) if pbs_bin else (lambda name: name)
    skip = set(filter(None, args.skip.split(",")))
    restd_installed = bool(shutil.which("slurmrestd") and shutil.which("socat")) and slurm
    rows: list[tuple] = []  # (measure, target, conns, throughput, p50, p99, ratio, note)
    name = f"sbs{uuid.uuid4().hex[:8]}"
    user = args.job_user
    try:
        # -- GET storms ------------------------------------------------------------------
        # Every server runs at once and each round drives them in turn at each connection
        # count, so a slow spell of the machine (these VMs vary by 2x from minute to
        # minute) hits every target of a round alike; the table gives the medians.
        servers: dict[str, tuple[int, str, dict]] = {}  # target -> (port, path, headers)
        stoppable: list = []
        slurm_job = None
        if slurm:
            slurm_job = subprocess.run(["sbatch", "--parsable", "--hold", "-J", name, "--wrap", "true"],
                                       capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        try:
            for scheduler in (["local"] + ["slurm"] * slurm + ["pbs"] * pbs) if "get" not in skip else ():
                service = Service(scheduler, None if scheduler == "local" else user, pbs_bin)
                stoppable.append(service)
                servers[f"service ({scheduler})"] = (service.port, f"/api/scheduler/job?job_id={service.submit()}",
                                                     service.headers)
                if args.against:
                    other = Service(scheduler, None if scheduler == "local" else user, pbs_bin, args.against)
                    stoppable.append(other)
                    servers[f"against ({scheduler})"] = (other.port, f"/api/scheduler/job?job_id={other.submit()}",
                                                         other.headers)
            for setting in args.settings.split(",") if args.settings and "get" not in skip else ():
                workers, _, threads = setting.partition("x")
                tuned = Service("local", extra_env={"SOCA_WORKERS": workers, "SOCA_THREADS": threads})
                stoppable.append(tuned)
                servers[f"service (local, {workers} x {threads})"] = (
                    tuned.port, f"/api/scheduler/job?job_id={tuned.submit()}", tuned.headers)
            if restd_installed and "get" not in skip:
                restd = SlurmRestd()
                stoppable.append(restd)
                servers["slurmrestd"] = (restd.port, f"/slurm/{SlurmRestd.VERSION}/job/{slurm_job}", {})
            if "get" not in skip:
                hello = StatusPerRequest(None)
                stoppable.append(hello)
                servers["hello-world Flask"] = (hello.port, "/?job_id=0", {})
            baselines = [("scontrol show job", "scontrol", slurm), (f"{pbs_command('qstat')} -f", "qstat", pbs)]
            for status_command, label, enabled in baselines if "get" not in skip else ():
                if not enabled:
                    continue
                baseline = StatusPerRequest(status_command)
                stoppable.append(baseline)
                probe = slurm_job
                if label == "qstat":
                    probe = subprocess.run([pbs_command("qsub"), "-h", "-N", name, "--", "/bin/true"],
                                           capture_output=True, text=True, check=True, timeout=60,
                                           **as_account(user)).stdout.strip()
                servers[f"{label} per request"] = (baseline.port, f"/?job_id={probe}", {})
            get_results: dict[tuple[str, int], list[dict]] = {}
            for round_number in range(args.rounds if servers else 0):
                for conns in CONNECTIONS:
                    for target, (port, path, headers) in servers.items():
                        result = wrk(port, path, headers, conns, args.seconds)
                        get_results.setdefault((target, conns), []).append(result)
                        print(f"round {round_number + 1} GET {target} c={conns}: {result}", flush=True)
        finally:
            for server in stoppable:
                server.stop()
        reference = "slurmrestd" if "slurmrestd" in servers else "service (local)"
        for (target, conns), results in get_results.items():
            bases = get_results.get((reference, conns), [])
            # The ratio of each round (same minute), then their median.
            ratios = [r["throughput"] / b["throughput"] for r, b in zip(results, bases, strict=True) if b["throughput"]]
            errors = sum(r["errors"] for r in results)
            rows.append(("GET one job", target, conns, median(r["throughput"] for r in results),
                         median(r["p50"] for r in results), median(r["p99"] for r in results),
                         median(ratios) if ratios else float("nan"), f"{errors} non-2xx" if errors else ""))

        # -- listing ----------------------------------------------------------------------
        if "list" not in skip:
            service = Service("local")
            try:
                for _ in range(args.jobs):
                    service.submit()
                listing = wrk(service.port, "/api/scheduler/jobs?limit=1000", service.headers, 1, args.seconds)
                print(f"list service/local: {listing}", flush=True)
            finally:
                service.stop()
            restd_listing = None
            if restd_installed:
                for _ in range(args.jobs - 1):
                    subprocess.run(["sbatch", "--hold", "-J", name, "--wrap", "true"], capture_output=True,
                                   check=True, timeout=60)
                restd = SlurmRestd()
                try:
                    restd_listing = wrk(restd.port, f"/slurm/{SlurmRestd.VERSION}/jobs", {}, 1, args.seconds)
                    print(f"list slurmrestd: {restd_listing}", flush=True)
                finally:
                    restd.stop()
            ratio = listing["throughput"] / restd_listing["throughput"] \
                if restd_listing and restd_listing["throughput"] else float("nan")
            rows.append((f"list {args.jobs} jobs", "service (local)", 1, listing["throughput"], listing["p50"],
                         listing["p99"], ratio, ""))
            if restd_listing:
                rows.append((f"list {args.jobs}+ jobs", "slurmrestd /jobs", 1, restd_listing["throughput"],
                             restd_listing["p50"], restd_listing["p99"], 1.0, ""))

        # -- submit -----------------------------------------------------------------------
        for scheduler, enabled, raw in (("slurm", slurm, ["sbatch", "--hold", "-J", name, "--wrap", "true"]),
                                        ("pbs", pbs, [pbs_command("qsub"), "-h", "-N", name, "--", "/bin/true"])):
            if not enabled or "submit" in skip:
                continue
            service = Service(scheduler, user, pbs_bin)
            try:
                api, raw_cli = submit_side_by_side(service, raw, args.submits, user)
            finally:
                service.stop()
            rows.append(("submit, one at a time", f"service ({scheduler})", 1, api["throughput"], api["p50"],
                         api["p99"], api["throughput"] / raw_cli["throughput"],
                         f"p50 ratio {raw_cli['p50'] / api['p50']:.2f}"))
            rows.append(("submit, one at a time", f"raw {os.path.basename(raw[0])} as {user or 'self'}", 1,
                         raw_cli["throughput"], raw_cli["p50"], raw_cli["p99"], 1.0, "in turn with the API's"))
    finally:
        if slurm:
            subprocess.run(["scancel", "-n", name], capture_output=True, timeout=120)
        if pbs:
            ids = subprocess.run([pbs_command("qselect"), "-N", name], capture_output=True, text=True,
                                 timeout=60).stdout.split()
            if ids:
                subprocess.run([pbs_command("qdel"), *ids], capture_output=True, timeout=120)

    table = render(rows, args)
    print(table)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + table)
    return 0


def render(rows: list[tuple], args) -> str:
    def number(value: float, fmt: str) -> str:
        return "-" if value != value else format(value, fmt)  # NaN: not measured

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = ("| measure | target | conns | req/s | p50 ms | p99 ms | ratio | note |\n"
              "|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {m} | {t} | {c} | {number(r, '.0f')} | {number(a, '.1f')} | {number(b, '.1f')} | "
             f"{number(q, '.2f')} | {n} |" for m, t, c, r, a, b, q, n in rows]
    return (f"## bench/side_by_side.py — {stamp}\n\nMachine: {platform.node()}, {os.cpu_count()} cores, "
            f"{platform.platform()}, Python {platform.python_version()}; load average before the run "
            f"{args.load_before:.2f}. Phases of {args.seconds:g} s, wrk keep-alive; GET: medians of {args.rounds} "
            f"rounds, each round driving every target in turn, ratios to slurmrestd at the same connection count "
            f"in the same round; the listing's ratio to slurmrestd /jobs, submit's to the raw CLI.\n\n"
            + header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
