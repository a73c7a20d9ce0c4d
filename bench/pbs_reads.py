"""Reads of PBS jobs through the service against the real OpenPBS, with the reconciler.

Measures, in one process (Flask test client, SQLite): GET of a finished job and the
listing, answered from the reconciler's rows, against the baseline a per-request
service would pay (one `qstat -x -f -F json <id>` per request, throttled by qstat
itself), and how many scheduler commands the reading process ran (none expected).

    .venv/bin/python -m bench.pbs_reads [--requests 500] [--write docs/benchmarks.md]

Run as a module from the project root: it builds its service with the tests' own
fixtures (tests/conftest.py).

Needs root and OpenPBS (bash ../shared/openpbs/install.sh, PBS_USERS=pbsbob).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from datetime import UTC, datetime

PBS_BIN = "/opt/pbs/bin"
USER = "pbsbob"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def timed(count: int, call) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--write", default=None)
    args = parser.parse_args()

    from flask import Flask

    from soca_api.services import accounts
    from tests.conftest import build_stack, make_data_dir
    from tests.helpers import Account, submit

    data = make_data_dir("bench-pbs-")
    settings = {"SOCA_SCHEDULER": "pbs", "SOCA_PBS_BIN": PBS_BIN, "SOCA_SCHEDULER_CACHE_SECONDS": 1.0}
    stack = build_stack("sqlite", f"sqlite:///{data}/soca.db", None, **settings)
    app = stack.app
    assert isinstance(app, Flask)
    stack.env.update({key: str(value) for key, value in settings.items()})
    shutil.rmtree(os.path.expanduser(f"~{USER}/soca_job_output"), ignore_errors=True)
    stack.start_runner()
    try:
        with app.app_context():
            _user, key = accounts.create_user(USER)
        account = Account(USER, key, None, False)
        client = app.test_client()
        job_id = submit(client, account, "#!/bin/sh\n#PBS -N bench\ntrue\n")
        deadline = time.time() + 60
        while time.time() < deadline:
            listing = json.loads(client.get("/api/scheduler/jobs", headers=account.headers).data)
            row = listing["message"].get(job_id)
            if row and row["job_state"] == "F":
                break
            time.sleep(0.2)
        adapter = app.extensions["soca_scheduler"]
        get = timed(args.requests, lambda: client.get(f"/api/scheduler/job?job_id={job_id}",
                                                      headers=account.headers))
        listing = timed(args.requests, lambda: client.get("/api/scheduler/jobs", headers=account.headers))
        commands = adapter.snapshot_loads + len(adapter._lookups)
        baseline = timed(10, lambda: subprocess.run([f"{PBS_BIN}/qstat", "-x", "-f", "-F", "json", job_id],
                                                    capture_output=True, timeout=30))
    finally:
        stack.stop_runner()
    rows = [
        ("GET /api/scheduler/job (finished job)", get),
        ("GET /api/scheduler/jobs", listing),
        ("baseline: qstat -x -f -F json <id> per request", baseline),
    ]
    base_rate = len(baseline) / sum(baseline)
    lines = [
        f"## bench/pbs_reads.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}. OpenPBS 23.06.06 on this host, reconciler every 1 s, in-process "
        "(Flask test client), SQLite.",
        "",
        "| what | requests | throughput | p50 ms | p99 ms | ratio to the qstat baseline |",
        "|---|---|---|---|---|---|",
    ]
    for name, samples in rows:
        rate = len(samples) / sum(samples)
        lines.append(f"| {name} | {len(samples)} | {rate:,.0f}/s | {percentile(samples, 0.5) * 1000:.1f} | "
                     f"{percentile(samples, 0.99) * 1000:.1f} | {rate / base_rate:,.1f} |")
    lines += ["", f"Scheduler commands run by the reading process during the {2 * args.requests} requests: "
              f"{commands}.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
