"""Benchmark of the local scheduler through the API, against a live gunicorn (2 workers).

Measures: submissions per second, GET p50/p99 with 50 concurrent pollers, submit-to-R
latency on an idle host, executed tiny jobs per second. A baseline (a hello-world WSGI app
under the same gunicorn settings, same client) runs in the same process, so the ratios
say how much of the HTTP ceiling the service reaches on this machine.

    .venv/bin/python bench/local_jobs.py [--seconds 5] [--write docs/benchmarks.md]

Every request goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

from serving import free_port, wait_http

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
HELD_SCRIPT = "#!/bin/sh\n#PBS -N bench\n#PBS -h\ntrue\n"
TINY_SCRIPT = "#!/bin/sh\n#PBS -N tiny\ntrue\n"
SLEEP_SCRIPT = "#!/bin/sh\n#PBS -N idle\nsleep 2\n"
BASELINE_APP = '''
def app(environ, start_response):
    body = b'{"success": true, "message": "ok"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''


class Service:
    """A fresh data folder, database and gunicorn with its runner."""

    def __init__(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="soca-bench-", dir="/tmp")
        os.chmod(self.data_dir, 0o711)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SOCA_")}
        self.env.update(SOCA_DATA_DIR=self.data_dir, SOCA_PORT=str(self.port), SOCA_WORKERS="2",
                        SOCA_ACCESS_LOG="", SOCA_AUTH_FAILURE_LIMIT="100000 per minute")
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run(flask + ["db", "upgrade"], cwd=PROJECT_DIR, env=self.env, check=True, capture_output=True)
        out = subprocess.run(flask + ["user", "create", "bench"], cwd=PROJECT_DIR, env=self.env, check=True,
                             capture_output=True, text=True).stdout
        self.headers = {"X-SOCA-USER": "bench", "X-SOCA-TOKEN": out.strip().splitlines()[-1]}
        self.process = subprocess.Popen([os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                        cwd=PROJECT_DIR, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_http(self.port, "/api/health")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Baseline:
    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="soca-baseline-")
        with open(os.path.join(self.folder, "hello.py"), "w") as handle:
            handle.write(BASELINE_APP)
        self.port = free_port()
        self.process = subprocess.Popen(
            [os.path.join(BIN, "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{self.port}", "hello:app"],
            cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.port, "/")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def multipart(payload: str) -> tuple[bytes, str]:
    boundary = "socabenchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{payload}\r\n"
            f"--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _client_loop(args) -> list[float]:
    """One client process: `threads` keep-alive connections, each looping until the deadline."""
    port, method, path, headers, body, threads, seconds, max_requests, interval = args
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if interval:
            time.sleep(random.uniform(0, interval))  # real pollers are not synchronised
        mine = []
        for _ in range(max_requests):
            if time.monotonic() >= deadline:
                break
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path} answered {response.status}")
            took = time.perf_counter() - started
            mine.append(took)
            if interval:
                time.sleep(max(0.0, interval - took))  # a poller asks again after its interval
        conn.close()
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies


def load(port: int, method: str, path: str, headers: dict, body: bytes | None, clients: int,
         seconds: float, processes: int = 2, interval: float = 0.0) -> dict[str, float]:
    """`clients` connections; each sends its next request at once (interval 0: saturation)
    or `interval` seconds after the previous one started (pollers)."""
    per_process = max(1, clients // processes)
    args = [(port, method, path, headers, body, per_process, seconds, 100000, interval)] * processes
    started = time.monotonic()
    with multiprocessing.Pool(processes) as pool:
        results = pool.map(_client_loop, args)
    elapsed = time.monotonic() - started
    latencies = sorted(x for chunk in results for x in chunk)
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def api(service: Service, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    headers = dict(service.headers)
    if content_type:
        headers["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return data


def submit(service: Service, script: str) -> str:
    body, content_type = multipart(base64.b64encode(script.encode()).decode())
    return api(service, "POST", "/api/scheduler/job", body, content_type)["message"]


def submit_to_running(service: Service, samples: int = 15) -> dict[str, float]:
    delays = []
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    for _ in range(samples):
        job_id = submit(service, SLEEP_SCRIPT)
        started = time.perf_counter()
        for _ in range(2000):
            conn.request("GET", f"/api/scheduler/job?job_id={job_id}", headers=service.headers)
            state = json.loads(conn.getresponse().read())["message"]["job_state"]
            if state == "R":
                break
            time.sleep(0.002)
        delays.append(time.perf_counter() - started)
        api(service, "DELETE", f"/api/scheduler/job?job_id={job_id}")
        time.sleep(0.3)  # idle host again before the next sample
    delays.sort()
    return {"p50_ms": 1000 * statistics.median(delays), "p99_ms": 1000 * delays[-1], "samples": samples}


def tiny_jobs_per_second(service: Service, count: int = 300) -> dict[str, float]:
    started = time.monotonic()
    ids = [submit(service, TINY_SCRIPT) for _ in range(count)]
    last = ids[-1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listing = api(service, "GET", "/api/scheduler/jobs?limit=1000")["message"]
        if all(listing.get(i, {}).get("job_state") == "F" for i in ids) and last in listing:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    return {"jobs": count, "seconds": elapsed, "throughput": count / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load phase")
    parser.add_argument("--poll-intervals", default="1,0.1",
                        help="seconds between two GETs of one poller (50 pollers), comma-separated")
    parser.add_argument("--write", default=os.path.join(PROJECT_DIR, "docs", "benchmarks.md"),
                        help="Markdown file to append the results to ('' to skip)")
    options = parser.parse_args()

    baseline = Baseline()
    try:
        base_get = load(baseline.port, "GET", "/", {}, None, 50, options.seconds)
        intervals = [float(x) for x in options.poll_intervals.split(",") if x]
        base_polls = {i: load(baseline.port, "GET", "/", {}, None, 50, options.seconds, interval=i) for i in intervals}
    finally:
        baseline.stop()

    service = Service()
    try:
        body, content_type = multipart(base64.b64encode(HELD_SCRIPT.encode()).decode())
        submits = load(service.port, "POST", "/api/scheduler/job", {**service.headers, "Content-Type": content_type},
                       body, 8, options.seconds)
        job_id = submit(service, HELD_SCRIPT)
        get_path = f"/api/scheduler/job?job_id={job_id}"
        polls = {i: load(service.port, "GET", get_path, service.headers, None, 50, options.seconds, interval=i)
                 for i in intervals}
        get_max = load(service.port, "GET", get_path, service.headers, None, 50, options.seconds)
        # Clear the held jobs so the remaining phases see an idle host.
        subprocess.run([sys.executable, "-c", (
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update jobs set state='F', "
            "deleted_at=CURRENT_TIMESTAMP where state='H'\"); c.commit()"), f"{service.data_dir}/soca.db"],
            check=True)
        to_running = submit_to_running(service)
        tiny = tiny_jobs_per_second(service)
    finally:
        service.stop()

    rows = [
        ("submissions/s (8 clients)", f"{submits['throughput']:.0f}/s", f"{submits['p50_ms']:.1f}",
         f"{submits['p99_ms']:.1f}", f"{submits['throughput'] / base_get['throughput']:.2f}", ">= 300/s"),
        *[(f"GET job, 50 pollers every {i:g} s", f"{polls[i]['throughput']:.0f}/s", f"{polls[i]['p50_ms']:.1f}",
           f"{polls[i]['p99_ms']:.1f}", f"{polls[i]['p99_ms'] / base_polls[i]['p99_ms']:.2f} (p99)", "p99 <= 20 ms")
          for i in intervals],
        ("GET job, 50 clients, no pause", f"{get_max['throughput']:.0f}/s", f"{get_max['p50_ms']:.1f}",
         f"{get_max['p99_ms']:.1f}", f"{get_max['throughput'] / base_get['throughput']:.2f}", "-"),
        *[(f"baseline hello-world, 50 pollers every {i:g} s", f"{base_polls[i]['throughput']:.0f}/s",
           f"{base_polls[i]['p50_ms']:.1f}", f"{base_polls[i]['p99_ms']:.1f}", "1.00 (p99)", "-") for i in intervals],
        ("baseline hello-world, 50 clients", f"{base_get['throughput']:.0f}/s", f"{base_get['p50_ms']:.1f}",
         f"{base_get['p99_ms']:.1f}", "1.00", "-"),
        ("submit to R, idle host", "-", f"{to_running['p50_ms']:.0f}", f"{to_running['p99_ms']:.0f}", "-",
         "<= 200 ms"),
        (f"tiny jobs executed ({tiny['jobs']})", f"{tiny['throughput']:.1f}/s", "-", "-", "-", ">= 20/s"),
    ]
    header = ("measure", "throughput", "p50 ms", "p99 ms", "ratio to baseline", "target")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    table = "\n".join(lines)
    print(table)
    if options.write:
        machine = (f"{platform.node()}, {os.cpu_count()} cores, {platform.platform()}, "
                   f"Python {platform.python_version()}")
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(options.write, "a") as handle:
            handle.write(f"\n## bench/local_jobs.py — {stamp}\n\nMachine: {machine}. "
                         f"Load phases of {options.seconds:g} s; client and server share the machine.\n\n"
                         f"{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
