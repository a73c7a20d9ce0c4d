"""`flask --app wsgi group|queue|user ...`: the admin CLI, driven through Flask's CLI runner."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from soca_api import security
from tests.admin_fixtures import account as new_account
from tests.admin_fixtures import (
    add_job,
    audit_events,
    fresh_app,
    group_name,
    make_queue,
    queue_name,
    user_row,
)
from tests.conftest import PROJECT_DIR, service_env

PASSWORD = "Cli-Password-77"


@pytest.fixture
def isolated_app():
    yield from fresh_app()


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args: str, input: str | None = None, ok: bool = True):
        result = runner.invoke(args=list(args), input=input)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    return invoke


# -- groups --------------------------------------------------------------------------------
def test_group_commands(app, cli, make_user):
    alice, bob = make_user(), make_user()
    name = group_name()
    assert "Created group" in cli("group", "create", name, "--members", alice.name).output
    assert f"Added {bob.name} to group {name}." in cli("group", "add", name, bob.name).output
    assert "already in group" in cli("group", "add", name, bob.name).output
    line = next(line for line in cli("group", "list").output.splitlines() if line.startswith(name + "\t"))
    assert line == f"{name}\tgid=-\t{','.join(sorted([alice.name, bob.name]))}"
    assert f"Removed {alice.name}" in cli("group", "remove", name, alice.name).output
    assert "Deleted group" in cli("group", "delete", name).output
    assert "does not exist" in cli("group", "delete", name, ok=False).output
    actions = [e.action for e in audit_events(app, actor="cli", target=name)]
    assert actions == ["group.create", "group.update", "group.update", "group.update", "group.delete",
                       "group.delete"]
    assert audit_events(app, actor="cli", target=name)[-1].success is False


def test_group_create_validates(cli):
    assert "group is invalid" in cli("group", "create", "Bad Group", ok=False).output
    assert "does not exist" in cli("group", "create", group_name(), "--members", "nobody_here_x", ok=False).output


# -- queues --------------------------------------------------------------------------------
def test_queue_commands(app, cli):
    name = queue_name()
    cli("queue", "create", name, "--allowed-groups", "physics", "--max-walltime", "12:00:00",
        "--default-resources", "instance_type=c5.large")
    shown = json.loads(cli("queue", "show", name).output)
    assert shown["enabled"] is True
    assert shown["rules"]["allowed_groups"] == ["physics"]
    assert shown["rules"]["max_walltime"] == "12:00:00"
    assert shown["rules"]["default_resources"] == {"instance_type": "c5.large"}

    cli("queue", "set", name, "--disable", "--max-walltime", "", "--max-cpus-per-job", "8")
    shown = json.loads(cli("queue", "show", name).output)
    assert shown["enabled"] is False
    assert shown["rules"]["max_walltime"] is None and shown["rules"]["max_cpus_per_job"] == 8
    assert shown["rules"]["allowed_groups"] == ["physics"]

    line = next(line for line in cli("queue", "list").output.splitlines() if line.startswith(name + "\t"))
    assert line == f"{name}\tdisabled\tallowed_groups, max_cpus_per_job, default_resources"

    cli("queue", "delete", name)
    assert "does not exist" in cli("queue", "show", name, ok=False).output
    actions = [e.action for e in audit_events(app, actor="cli", target=name)]
    assert actions == ["queue.create", "queue.update", "queue.delete"]


def test_queue_rules_are_validated_on_the_command_line(app, cli):
    name = queue_name()
    result = cli("queue", "create", name, "--max-cpus-per-job", "zero", ok=False)
    assert "max_cpus_per_job is invalid" in result.output
    assert "does not exist" in cli("queue", "show", name, ok=False).output
    failed = audit_events(app, actor="cli", target=name, action="queue.create")
    assert [e.success for e in failed] == [False]


def test_queue_with_active_jobs_is_kept(app, cli, make_user):
    name = make_queue(app)
    add_job(app, make_user().name, name, "Q")
    assert "active job" in cli("queue", "delete", name, ok=False).output


# -- users ---------------------------------------------------------------------------------
def test_user_admin_rights_and_deletion(app, cli, make_user, admin):
    bob = make_user()  # `admin` exists, so bob is never the last admin
    assert "is now an admin" in cli("user", "grant-admin", bob.name).output
    assert user_row(app, bob.name).is_admin is True
    assert "already an admin" in cli("user", "grant-admin", bob.name).output
    assert "no longer an admin" in cli("user", "revoke-admin", bob.name).output
    assert user_row(app, bob.name).is_admin is False

    line = next(line for line in cli("user", "list").output.splitlines() if line.startswith(bob.name + "\t"))
    assert line == f"{bob.name}\tuser\tactive\t-\t-"

    epoch = user_row(app, bob.name).session_epoch
    assert f"Deleted user {bob.name}." in cli("user", "delete", bob.name).output
    row = user_row(app, bob.name)
    assert row.deleted_at is not None and row.is_active is False and row.session_epoch == epoch + 1
    assert bob.name not in cli("user", "list").output
    client = app.test_client()
    assert client.get("/api/scheduler/jobs", headers=bob.headers).status_code == 401


def test_set_password_reads_stdin_and_ends_sessions(app, cli, make_user):
    bob = make_user()
    epoch = user_row(app, bob.name).session_epoch
    cli("user", "set-password", bob.name, "--password-stdin", input=PASSWORD + "\n")
    row = user_row(app, bob.name)
    assert security.check_password(row.password_hash, PASSWORD) and row.session_epoch == epoch + 1
    assert "at least 10 characters" in cli("user", "set-password", bob.name, "--password-stdin",
                                            input="short\n", ok=False).output
    assert "--password-stdin" in cli("user", "set-password", bob.name, ok=False).output


def test_last_admin_stays(isolated_app):
    from soca_api import cli

    cli.init_app(isolated_app)
    runner = isolated_app.test_cli_runner()
    only = new_account(isolated_app, admin=True)
    result = runner.invoke(args=["user", "revoke-admin", only.name])
    assert result.exit_code != 0 and "last admin" in result.output
    result = runner.invoke(args=["user", "delete", only.name])
    assert result.exit_code != 0 and "last admin" in result.output
    assert user_row(isolated_app, only.name).is_admin is True


def test_commands_are_wired_in_the_real_cli(tmp_path):
    """`flask --app wsgi queue --help` in a subprocess, as an operator runs it."""
    env = service_env(str(tmp_path), f"sqlite:///{tmp_path}/t.db")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "--help"], cwd=PROJECT_DIR,
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert {"queue", "group", "user"} <= set(result.stdout.split())
    for group, commands in (("queue", {"create", "delete", "set", "list", "show"}),
                            ("group", {"create", "delete", "add", "remove", "list"}),
                            ("user", {"delete", "grant-admin", "revoke-admin", "set-password", "list"})):
        shown = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", group, "--help"], cwd=PROJECT_DIR,
                               env=env, capture_output=True, text=True, timeout=60, check=False)
        assert commands <= set(shown.stdout.split()), shown.stdout
