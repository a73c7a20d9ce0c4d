"""Helpers for the admin, queue-rule and admin CLI tests, on top of tests/conftest.py.

The shared stack is one database for the whole session, so every helper here makes
objects with unique names; tests that need a database of their own (the last admin, the
seed's own queue "normal") use `isolated_app`.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from soca_api.models import Job
from tests.conftest import build_stack, make_data_dir, unique_name
from tests.helpers import Account


def queue_name() -> str:
    name = unique_name("q")
    assert len(name) <= 15
    return name


def group_name() -> str:
    return unique_name("g")


def make_queue(app, name: str | None = None, *, enabled: bool = True, **rules: str) -> str:
    from soca_api.services import queues

    name = name or queue_name()
    with app.app_context():
        queues.create_queue(name, enabled=enabled, changes=rules)
    return name


def make_group(app, *members: str, name: str | None = None) -> str:
    from soca_api.services import groups

    name = name or group_name()
    with app.app_context():
        groups.create_group(name, members=list(members))
    return name


def add_job(app, owner: str, queue: str, state: str, **columns) -> int:
    """A job row as the job service would record it. The backend is not "local", so the
    session's runner never picks it up."""
    from soca_api.extensions import db

    with app.app_context():
        job = Job(backend="fake", owner=owner, name="fake", queue=queue, state=state, script="#!/bin/sh\n",
                  request={}, **columns)
        db.session.add(job)
        db.session.commit()
        return job.id


def user_row(app, name: str):
    """A detached copy of the user's columns, read fresh from the database."""
    from soca_api.extensions import db
    from soca_api.models import User

    with app.app_context():
        user = db.session.execute(db.select(User).where(User.name == name)).scalar_one()
        db.session.expunge(user)
        return user


def audit_events(app, **filters) -> list:
    from soca_api.extensions import db
    from soca_api.models import AuditEvent

    with app.app_context():
        query = db.select(AuditEvent).order_by(AuditEvent.id)
        for key, value in filters.items():
            query = query.where(getattr(AuditEvent, key) == value)
        events = list(db.session.execute(query).scalars())
        for event in events:
            db.session.expunge(event)
        return events


def fake_adapter(backend: str, names: list[str] | None = None, *, fail: bool = False,
                 manage_queues: bool = False, **settings: object):
    """The real PBS or Slurm adapter, its queues answered from `names` (a list the test may
    change) or failing as an unreachable scheduler: what it does with a queue is its own."""
    from soca_api.schedulers.errors import SchedulerUnavailable
    from soca_api.schedulers.pbs import PbsAdapter
    from soca_api.schedulers.slurm import SlurmAdapter

    real = {"pbs": PbsAdapter, "slurm": SlurmAdapter}[backend]

    class FakeAdapter(real):
        def queues(self) -> list[str]:
            if fail:
                raise SchedulerUnavailable("Scheduler command not found: qstat")
            return list(self.names)

    adapter = FakeAdapter(**settings)
    adapter.names = names if names is not None else []
    if manage_queues:
        adapter.manage_queues()
    return adapter


def fake_qmgr(directory: str, *, exit_code: int = 0, stderr: str = "") -> str:
    """A `qmgr` that logs its argument list (one line per call) and answers as told."""
    os.makedirs(directory, exist_ok=True)
    log = os.path.join(directory, "qmgr.log")
    script = os.path.join(directory, "qmgr")
    with open(script, "w") as handle:
        handle.write("#!/bin/sh\n"
                     f'printf "%s|" "$@" >> "{log}"\n'
                     f'echo >> "{log}"\n'
                     + (f'echo "{stderr}" >&2\n' if stderr else "")
                     + f"exit {exit_code}\n")
    os.chmod(script, 0o755)
    return log


def fresh_app() -> Iterator:
    """An app on a fresh SQLite database of its own (no runner); yields it once.

    Test modules wrap it in their own `isolated_app` fixture."""
    data_dir = make_data_dir("soca-admin-")
    built = build_stack("sqlite", f"sqlite:///{data_dir}/t.db")
    yield built.app
    from soca_api.extensions import db

    with built.app.app_context():
        db.engine.dispose()
    shutil.rmtree(built.data_dir, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def account(app, *, admin: bool = False, password: str | None = None) -> Account:
    from soca_api.services import accounts

    name = unique_name("adm" if admin else "usr")
    with app.app_context():
        _user, key = accounts.create_user(name, password=password, is_admin=admin)
    return Account(name, key, password, admin)
