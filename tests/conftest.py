"""Shared fixtures: a real database (SQLite and PostgreSQL), the real app, a real runner.

Every test that uses `client` runs once per database. The stack for a database lives for
the whole session: tests create their own users (unique names) and so never see each
other's jobs, which is also how a real multi-user service behaves.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import normalise_database_url
from tests.external import require
from tests.helpers import Account

PROJECT_DIR = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("SOCA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_names = itertools.count(1)


def postgres_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_ADMIN_URL, connect_timeout=3).close()
        return True
    except Exception:
        return False


def create_pg_database() -> str:
    import psycopg2

    name = f"soca_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def drop_pg_database(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def make_data_dir(prefix: str = "soca-test-") -> str:
    # Not under pytest's 0700 tmp: jobs may run as another account and must reach it.
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o711)
    return path


def service_env(data_dir: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCA_")}
    env.update({
        "SOCA_DATA_DIR": data_dir,
        "SOCA_DATABASE_URL": database_url,
        "SOCA_SECRET_KEY": "test-secret-" + uuid.uuid4().hex,
        "SOCA_LOCAL_CPUS": "2",
        "SOCA_LOCAL_KILL_DELAY": "1",
        "SOCA_AUTH_FAILURE_LIMIT": "1000 per minute",
    })
    env.update(extra)
    return env


def dedicated_uid_range() -> tuple[int, int]:
    start = 1_900_000_000 + (uuid.uuid4().int % 2000) * 100_000
    return start, start + 99_999


@dataclass
class Stack:
    kind: str
    app: object
    env: dict[str, str]
    data_dir: str
    runner: subprocess.Popen | None = None

    def start_runner(self) -> subprocess.Popen:
        launched = time.time()
        # The runner keeps its own copy of the log's descriptor: ours closes at once.
        with open(os.path.join(self.data_dir, "runner.log"), "ab") as log:
            self.runner = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run"],
                cwd=PROJECT_DIR, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        heartbeat = os.path.join(self.data_dir, "runner.heartbeat")
        deadline = time.time() + 30
        while time.time() < deadline:
            # Ready once this runner has beaten (after its recovery pass).
            if os.path.exists(heartbeat) and os.stat(heartbeat).st_mtime >= launched:
                return self.runner
            if self.runner.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"runner did not start: see {self.data_dir}/runner.log")

    def stop_runner(self, sig: int = 15) -> None:
        if self.runner is not None and self.runner.poll() is None:
            self.runner.send_signal(sig)
            self.runner.wait(timeout=30)
        self.runner = None


def build_stack(kind: str, database_url: str, data_dir: str | None = None, **overrides: object) -> Stack:
    from flask_migrate import upgrade

    from soca_api import create_app

    data_dir = data_dir or make_data_dir()
    # Installations side by side on one host need disjoint dedicated-uid ranges.
    uid_range = dedicated_uid_range()
    env = service_env(data_dir, database_url, SOCA_JOB_UID_RANGE=f"{uid_range[0]}-{uid_range[1]}")
    app = create_app({
        "TESTING": True,
        "SOCA_DATA_DIR": data_dir,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": env["SOCA_SECRET_KEY"],
        "SOCA_AUTH_FAILURE_LIMIT": env["SOCA_AUTH_FAILURE_LIMIT"],
        "SOCA_LOCAL_KILL_DELAY": 1.0,
        "WTF_CSRF_ENABLED": True,
        "SOCA_JOB_UID_RANGE": uid_range,
        **overrides,
    })
    with app.app_context():
        upgrade()
    return Stack(kind, app, env, data_dir)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(request):
    kind = request.param
    if kind == "sqlite":
        data_dir_db = make_data_dir("soca-db-")
        built = build_stack(kind, f"sqlite:///{data_dir_db}/soca.db")
        pg_name = None
    else:
        require(postgres_available(), f"PostgreSQL at {PG_ADMIN_URL}")
        pg_name = create_pg_database()
        built = build_stack(kind, normalise_database_url(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{pg_name}"))
    built.start_runner()
    yield built
    built.stop_runner()
    if pg_name:
        from soca_api.extensions import db

        with built.app.app_context():
            db.engine.dispose()
        drop_pg_database(pg_name)


@pytest.fixture
def app(stack):
    return stack.app


@pytest.fixture
def client(app):
    return app.test_client()


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}{os.getpid() % 1000}x{next(_names)}{uuid.uuid4().hex[:4]}"


@pytest.fixture
def make_user(app):
    from soca_api.services import accounts

    def _make(*, admin: bool = False, password: str | None = None, name: str | None = None) -> Account:
        name = name or unique_name("adm" if admin else "usr")
        with app.app_context():
            _user, key = accounts.create_user(name, password=password, is_admin=admin)
        return Account(name, key, password, admin)

    return _make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def admin(make_user):
    return make_user(admin=True)
