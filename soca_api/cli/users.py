"""`flask --app wsgi user ...`: users, their admin rights, passwords and API keys."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from soca_api.cli.errors import reported
from soca_api.services import accounts, audit

user_cli = AppGroup("user", help="Manage users and their API keys.")


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
    password = _read_password(password_stdin)
    with reported():
        _user, key = accounts.create_user(name, password=password, email=email, is_admin=admin, actor=audit.CLI)
    click.echo(f"Created {'admin ' if admin else ''}user {name}. API key:")
    click.echo(key)


@user_cli.command("reset-key")
@click.argument("name")
def reset_key(name: str) -> None:
    """Revoke a user's keys and issue a new one; the last line printed is the key."""
    with reported():
        user = accounts.get_user_or_404(name)
    key = accounts.reset_key(user, actor=audit.CLI)
    click.echo(f"New API key for {name}:")
    click.echo(key)


@user_cli.command("delete")
@click.argument("name")
def user_delete(name: str) -> None:
    """Delete a user: keys revoked, sessions ended, job history kept."""
    with reported():
        accounts.delete_user(name, actor=audit.CLI)
    click.echo(f"Deleted user {name}.")


@user_cli.command("grant-admin")
@click.argument("name")
def user_grant_admin(name: str) -> None:
    """Give a user admin rights (effective on their next request)."""
    with reported():
        changed = accounts.grant_admin(name, actor=audit.CLI)
    click.echo(f"{name} is now an admin." if changed else f"{name} is already an admin.")


@user_cli.command("revoke-admin")
@click.argument("name")
def user_revoke_admin(name: str) -> None:
    """Take a user's admin rights away (never the last admin's)."""
    with reported():
        changed = accounts.revoke_admin(name, actor=audit.CLI)
    click.echo(f"{name} is no longer an admin." if changed else f"{name} is not an admin.")


@user_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin (never from the command line).")
def user_set_password(name: str, password_stdin: bool) -> None:
    """Set a user's password; every web session of the user ends."""
    password = _read_password(password_stdin)
    if password is None:  # the flag is required: the password never goes on argv
        raise click.ClickException("Use --password-stdin")
    with reported():
        accounts.set_password(name, password, actor=audit.CLI)
    click.echo(f"Password of {name} updated; their web sessions are ended.")


@user_cli.command("list")
def user_list() -> None:
    """Every user: name, admin, active, e-mail, groups."""
    for user in accounts.list_users():
        view = accounts.user_view(user)
        click.echo("\t".join([
            user.name, "admin" if user.is_admin else "user", "active" if user.is_active else "inactive",
            user.email or "-", ",".join(view["groups"]) or "-",  # type: ignore[arg-type]
        ]))
