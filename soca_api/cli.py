"""Command-line administration: `flask --app wsgi user ...`, `... bootstrap`, `... scheduler run`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import User
from soca_api.services import accounts, audit

user_cli = AppGroup("user", help="Manage users and their API keys.")


def _fail(exc: ApiError) -> None:
    raise click.ClickException(exc.message)


def _read_password(password_stdin: bool) -> str | None:
    if not password_stdin:
        return None
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.ClickException("No password on standard input")
    return password


@user_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Give the user admin rights.")
@click.option("--email", default=None, help="The user's e-mail address.")
@click.option("--password-stdin", is_flag=True, help="Read a password from the first line of stdin.")
def create_user(name: str, admin: bool, email: str | None, password_stdin: bool) -> None:
    """Create a user; the last line printed is its API key."""
    try:
        _user, key = accounts.create_user(name, password=_read_password(password_stdin), email=email,
                                          is_admin=admin)
    except ApiError as exc:
        _fail(exc)
    audit.record("user.create", actor="cli", target=name, detail="admin" if admin else None)
    click.echo(f"Created {'admin ' if admin else ''}user {name}. API key:")
    click.echo(key)


@user_cli.command("reset-key")
@click.argument("name")
def reset_key(name: str) -> None:
    """Revoke a user's keys and issue a new one; the last line printed is the key."""
    try:
        user = accounts.get_user_or_404(name)
    except ApiError as exc:
        _fail(exc)
    key = accounts.reset_key(user)
    audit.record("api_key.reset", actor="cli", target=name)
    click.echo(f"New API key for {name}:")
    click.echo(key)


@click.command("bootstrap")
@click.option("--admin-name", default="admin", show_default=True)
def bootstrap(admin_name: str) -> None:
    """On a fresh database, create an admin and keep its key in the data folder (0600)."""
    if db.session.execute(db.select(User).where(User.is_admin.is_(True))).first() is not None:
        click.echo("An admin exists already; `flask --app wsgi user reset-key NAME` prints a new key.")
        return
    _user, key = accounts.create_user(admin_name, is_admin=True)
    audit.record("user.create", actor="bootstrap", target=admin_name, detail="admin")
    key_file = Path(current_app.config["SOCA_DATA_DIR"]) / "admin_api_key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an older file of another mode stays private too
        handle.write(key + "\n")
    click.echo(f"Created admin user '{admin_name}'. Its API key is in {key_file} (mode 0600):")
    click.echo(f"    cat {key_file}")


scheduler_cli = AppGroup("scheduler", help="The local runner, or the PBS/Slurm reconciler.")


@scheduler_cli.command("run")
@click.option("--cpus", type=int, default=None, help="Cpus to hand out (default SOCA_LOCAL_CPUS).")
@click.option("--exit-with-parent", is_flag=True, help="Stop when the process that started it dies.")
def run_scheduler(cpus: int | None, exit_with_parent: bool) -> None:
    """Local backend: run the local runner (one per data folder; others wait as standby).
    PBS / Slurm: run the reconciler (one per deployment, by a lease in the database)."""
    from soca_api.schedulers.local.runner import Runner, exit_with_parent as bind_to_parent

    if exit_with_parent:
        bind_to_parent()
    app = current_app._get_current_object()
    if app.config["SOCA_SCHEDULER"] != "local":
        from soca_api.schedulers.reconciler import Reconciler

        Reconciler(app, interval=app.config["SOCA_SCHEDULER_CACHE_SECONDS"],
                   lease_seconds=app.config["SOCA_RECONCILER_LEASE_SECONDS"],
                   grace_seconds=app.config["SOCA_SCHEDULER_TIMEOUT"] + 5).run_forever()
        return
    Runner(app, cpus=cpus or app.config["SOCA_LOCAL_CPUS"],
           poll_seconds=app.config["SOCA_LOCAL_POLL_SECONDS"],
           kill_delay=app.config["SOCA_LOCAL_KILL_DELAY"]).run_forever()


def init_app(app: Flask) -> None:
    app.cli.add_command(user_cli)
    app.cli.add_command(bootstrap)
    app.cli.add_command(scheduler_cli)
    from soca_api import cli_admin  # imported here: it adds commands to user_cli above

    cli_admin.init_app(app)
