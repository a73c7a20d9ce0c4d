"""Command-line administration of groups, queues and users.

    flask --app wsgi group create|delete|add|remove|list ...
    flask --app wsgi queue create|set|delete|list|show ...
    flask --app wsgi user delete|grant-admin|revoke-admin|set-password|list ...

The same operations and checks as the admin API (`soca_api.api.admin`,
`soca_api.services.queues`); every change and every failed change is audited with the
actor "cli". `init_app(app)` registers the `group` and `queue` groups; the `user`
commands are added to `soca_api.cli.user_cli`.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from flask import Flask
from flask.cli import AppGroup

from soca_api.cli import _read_password, user_cli
from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.services import accounts, audit, groups, queues

ACTOR = "cli"

group_cli = AppGroup("group", help="Manage groups and their members.")
queue_cli = AppGroup("queue", help="Manage queues and their rules.")


@contextmanager
def _action(action: str, target: str | None) -> Iterator[None]:
    """Turn an ApiError into a CLI error, auditing the failure (nothing half-done is kept)."""
    try:
        yield
    except ApiError as exc:
        db.session.rollback()
        audit.record(action, actor=ACTOR, target=target, success=False, detail=exc.message)
        raise click.ClickException(exc.message) from None


def _done(action: str, target: str | None, detail: str | None = None) -> None:
    audit.record(action, actor=ACTOR, target=target, detail=detail)


def _rule_options(func: Callable) -> Callable:
    """One option per queue rule (`--max-walltime 24:00:00`); an empty value clears it."""
    for name in reversed(queues.RULE_FIELDS):
        func = click.option(f"--{name.replace('_', '-')}", name, default=None, metavar="TEXT",
                            help=queues.RULE_HELP[name] + ".")(func)
    return func


def _changes(options: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in options.items() if name in queues.RULE_FIELDS and value is not None}


# -- groups --------------------------------------------------------------------------------
@group_cli.command("create")
@click.argument("name")
@click.option("--gid", type=click.IntRange(0, 2**31 - 1), default=None, help="POSIX gid (unique).")
@click.option("--members", default=None, help="Comma-separated user names.")
def group_create(name: str, gid: int | None, members: str | None) -> None:
    """Create a group."""
    with _action("group.create", name):
        group = groups.create_group(name, gid=gid, members=accounts.split_names("members", members) if members else [])
    _done("group.create", name, f"gid={group.gid} members={','.join(sorted(m.name for m in group.members))}")
    click.echo(f"Created group {name}.")


@group_cli.command("delete")
@click.argument("name")
def group_delete(name: str) -> None:
    """Delete a group (refused while a queue rule names it)."""
    with _action("group.delete", name):
        groups.delete_group(name)
    _done("group.delete", name)
    click.echo(f"Deleted group {name}.")


def _membership(group_name: str, user_name: str, member: bool) -> None:
    verb = "add" if member else "remove"
    with _action("group.update", group_name):
        group = groups.get_group_or_404(group_name)
        changed = groups.set_membership(group, accounts.get_user_or_404(user_name), member)
    _done("group.update", group_name, f"{verb} {user_name}" + ("" if changed else " (no change)"))
    if member:
        click.echo(f"Added {user_name} to group {group_name}." if changed
                   else f"{user_name} is already in group {group_name}.")
    else:
        click.echo(f"Removed {user_name} from group {group_name}." if changed
                   else f"{user_name} is not in group {group_name}.")


@group_cli.command("add")
@click.argument("group")
@click.argument("user")
def group_add(group: str, user: str) -> None:
    """Add USER to GROUP."""
    _membership(group, user, True)


@group_cli.command("remove")
@click.argument("group")
@click.argument("user")
def group_remove(group: str, user: str) -> None:
    """Remove USER from GROUP."""
    _membership(group, user, False)


@group_cli.command("list")
def group_list() -> None:
    """Every group: name, gid, members."""
    for group in groups.list_groups():
        view = groups.group_view(group)
        gid = "-" if view["gid"] is None else view["gid"]
        click.echo(f"{group.name}\tgid={gid}\t{','.join(view['members'])}")  # type: ignore[arg-type]


# -- queues --------------------------------------------------------------------------------
@queue_cli.command("create")
@click.argument("name")
@click.option("--disabled", is_flag=True, help="Create the queue disabled (jobs are refused).")
@_rule_options
def queue_create(name: str, disabled: bool, **rules: str | None) -> None:
    """Create a queue, optionally with rules."""
    with _action("queue.create", name):
        queue = queues.create_queue(name, enabled=not disabled, changes=_changes(rules))
    _done("queue.create", name, f"enabled={queue.enabled} rules={queue.rules}")
    click.echo(f"Created queue {name}.")


@queue_cli.command("set")
@click.argument("name")
@click.option("--enable/--disable", "enabled", default=None, help="Accept or refuse new jobs.")
@_rule_options
def queue_set(name: str, enabled: bool | None, **rules: str | None) -> None:
    """Change a queue's rules; an empty value (--max-walltime '') clears a rule."""
    with _action("queue.update", name):
        queue = queues.update_queue(name, enabled=enabled, changes=_changes(rules))
    _done("queue.update", name, f"enabled={queue.enabled} rules={queue.rules}")
    click.echo(f"Updated queue {name}.")


@queue_cli.command("delete")
@click.argument("name")
def queue_delete(name: str) -> None:
    """Delete a queue (refused while it has active jobs)."""
    with _action("queue.delete", name):
        queues.delete_queue(name)
    _done("queue.delete", name)
    click.echo(f"Deleted queue {name}.")


@queue_cli.command("list")
def queue_list() -> None:
    """Every queue: name, enabled or disabled, the rules that are set."""
    for queue in queues.list_queues():
        rules = ", ".join(queues.Rules.from_json(queue.rules).to_json()) or "no rules"
        click.echo(f"{queue.name}\t{'enabled' if queue.enabled else 'disabled'}\t{rules}")


@queue_cli.command("show")
@click.argument("name")
def queue_show(name: str) -> None:
    """A queue and every rule, as JSON."""
    try:
        queue = queues.get_queue_or_404(name)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(queues.describe(queue), indent=2))


# -- users (added to the existing `user` group) ---------------------------------------------
@user_cli.command("delete")
@click.argument("name")
def user_delete(name: str) -> None:
    """Delete a user: keys revoked, sessions ended, job history kept."""
    with _action("user.delete", name):
        revoked = accounts.delete_user(accounts.get_user_or_404(name))
    _done("user.delete", name, f"{revoked} key(s) revoked")
    click.echo(f"Deleted user {name}.")


@user_cli.command("grant-admin")
@click.argument("name")
def user_grant_admin(name: str) -> None:
    """Give a user admin rights (effective on their next request)."""
    with _action("user.grant_admin", name):
        changed = accounts.set_admin(accounts.get_user_or_404(name), True)
    _done("user.grant_admin", name, None if changed else "no change")
    click.echo(f"{name} is now an admin." if changed else f"{name} is already an admin.")


@user_cli.command("revoke-admin")
@click.argument("name")
def user_revoke_admin(name: str) -> None:
    """Take a user's admin rights away (never the last admin's)."""
    with _action("user.revoke_admin", name):
        changed = accounts.set_admin(accounts.get_user_or_404(name), False)
    _done("user.revoke_admin", name, None if changed else "no change")
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
    with _action("user.password_reset", name):
        accounts.set_password(accounts.get_user_or_404(name), password)
    _done("user.password_reset", name, "cli")
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


def init_app(app: Flask) -> None:
    """Register `group` and `queue` (the `user` commands ride on soca_api.cli.user_cli)."""
    app.cli.add_command(group_cli)
    app.cli.add_command(queue_cli)
