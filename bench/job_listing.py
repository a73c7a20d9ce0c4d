"""Benchmark of GET /api/scheduler/jobs with 100,000 jobs in the history.

The baseline is the same listing on a history of 100 jobs, measured in the same process;
the ratio says how much a large history costs. Runs in-process (Flask test client) on
SQLite, and on PostgreSQL when --postgres URL is given.

    .venv/bin/python bench/job_listing.py [--jobs 100000] [--postgres postgresql://postgres@127.0.0.1/postgres]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

QUERIES = [
    ("default listing (active + recent)", "/api/scheduler/jobs"),
    ("state=F, first page of 100", "/api/scheduler/jobs?state=F&limit=100"),
    ("state=F, a deep page", None),  # filled in with a `before` cursor from the middle
    ("queue=high filter", "/api/scheduler/jobs?queue=high"),
]


def make_app(database_url: str):
    from flask_migrate import upgrade

    from soca_api import create_app

    data_dir = tempfile.mkdtemp(prefix="soca-bench-list-", dir="/tmp")
    app = create_app({"SOCA_DATA_DIR": data_dir, "SQLALCHEMY_DATABASE_URI": database_url,
                      "SECRET_KEY": uuid.uuid4().hex, "TESTING": True})
    with app.app_context():
        upgrade()
    return app


def fill(app, owner: str, count: int) -> int:
    """`count` finished jobs for `owner` (and as many for another user), 20 active ones."""
    from soca_api.extensions import db
    from soca_api.models import Job

    long_ago = datetime.utcnow() - timedelta(days=30)
    rows: list[dict[str, object]] = []
    for index in range(count * 2):
        user = owner if index % 2 else "someoneelse"
        rows.append({"backend": "local", "scheduler_id": f"x{index}", "owner": user, "name": "old",
                     "queue": "high" if index % 7 == 0 else "normal", "state": "F", "script": "#!/bin/sh\n",
                     "request": {}, "created_at": long_ago, "modified_at": long_ago, "finished_at": long_ago,
                     "exit_status": 0, "ncpus": 1, "nodes": 1, "rerunable": True, "hold": False,
                     "run_count": 1, "delete_requested": False})
    for index in range(20):
        rows.append({"backend": "local", "scheduler_id": f"a{index}", "owner": owner, "name": "active",
                     "queue": "normal", "state": "H", "script": "#!/bin/sh\n", "request": {},
                     "created_at": datetime.utcnow(), "modified_at": datetime.utcnow(), "ncpus": 1, "nodes": 1,
                     "rerunable": True, "hold": True, "run_count": 0, "delete_requested": False})
    with app.app_context():
        for start in range(0, len(rows), 5000):
            db.session.execute(sa.insert(Job), rows[start:start + 5000])
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # What autovacuum does after a bulk change; without statistics the planner
            # guesses row counts from an empty table.
            db.session.execute(sa.text("ANALYZE jobs"))
            db.session.commit()
        middle = db.session.execute(sa.select(Job.id).where(Job.owner == owner, Job.state == "F")
                                    .order_by(Job.id).offset(count // 2).limit(1)).scalar_one()
    return middle


def measure(app, headers, path: str, repeat: int = 60) -> tuple[float, float]:
    client = app.test_client()
    client.get(path, headers=headers)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.json
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def run(database_url: Callable[[], str], jobs: int, label: str) -> list[tuple]:
    from soca_api.services import accounts

    results = {}
    for size in (100, jobs):
        app = make_app(database_url())
        with app.app_context():
            _user, key = accounts.create_user("lister")
        headers = {"X-SOCA-USER": "lister", "X-SOCA-TOKEN": key}
        middle = fill(app, "lister", size)
        for name, path in QUERIES:
            path = path or f"/api/scheduler/jobs?state=F&limit=100&before={middle}"
            results[(name, size)] = measure(app, headers, path)
    rows = []
    for name, _path in QUERIES:
        p50, p99 = results[(name, jobs)]
        base50, _ = results[(name, 100)]
        rows.append((label, name, f"{1000 / p50:.0f}/s", f"{p50:.1f}", f"{p99:.1f}", f"{p50 / base50:.2f}"))
    return rows


def pg_database(admin_url: str) -> Callable[[], str]:
    import psycopg2

    def create() -> str:
        name = f"soca_bench_{uuid.uuid4().hex[:8]}"
        conn = psycopg2.connect(admin_url)
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return "postgresql+psycopg2://" + admin_url.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"

    return create


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="finished jobs of the listing user")
    parser.add_argument("--postgres", default="", help="admin URL of a PostgreSQL server to also measure")
    options = parser.parse_args()
    rows = run(lambda: f"sqlite:///{tempfile.mkdtemp(dir='/tmp')}/list.db", options.jobs, "sqlite")
    if options.postgres:
        rows += run(pg_database(options.postgres), options.jobs, "postgresql")
    header = ("database", f"listing ({options.jobs:,} jobs of the user)", "throughput", "p50 ms", "p99 ms",
              "ratio to 100-job baseline")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
