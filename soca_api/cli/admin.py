"""Command-line administration of groups and queues.

    flask --app wsgi group create|delete|add|remove|list ...
    flask --app wsgi queue create|set|delete|list|show ...

The same operations and checks as the admin API (`soca_api.services.groups`,
`soca_api.services.queues`); the services audit every change and every failed change
with the actor "cli".
"""
from __future__ import annotations

import json
from collections.abc import Callable

import click
from flask.cli import AppGroup

from soca_api.cli.errors import reported
from soca_api.services import audit, groups, queues
from soca_api.validation import GID_MAX

group_cli = AppGroup("group", help="Manage groups and their members.")
queue_cli = AppGroup("queue", help="Manage queues and their rules.")


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
@click.option("--gid", type=click.IntRange(0, GID_MAX), default=None, help="POSIX gid (unique).")
@click.option("--members", default=None, help="Comma-separated user names.")
def group_create(name: str, gid: int | None, members: str | None) -> None:
    """Create a group."""
    with reported():
        groups.create_group(name, gid=gid, members=members, actor=audit.CLI)
    click.echo(f"Created group {name}.")


@group_cli.command("delete")
@click.argument("name")
def group_delete(name: str) -> None:
    """Delete a group (refused while a queue rule names it)."""
    with reported():
        groups.delete_group(name, actor=audit.CLI)
    click.echo(f"Deleted group {name}.")


def _membership(group_name: str, user_name: str, member: bool) -> None:
    with reported():
        changed = groups.set_membership(group_name, user_name, member, actor=audit.CLI)
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
    with reported():
        queues.create_queue(name, enabled=not disabled, changes=_changes(rules), actor=audit.CLI)
    click.echo(f"Created queue {name}.")


@queue_cli.command("set")
@click.argument("name")
@click.option("--enable/--disable", "enabled", default=None, help="Accept or refuse new jobs.")
@_rule_options
def queue_set(name: str, enabled: bool | None, **rules: str | None) -> None:
    """Change a queue's rules; an empty value (--max-walltime '') clears a rule."""
    with reported():
        queues.update_queue(name, enabled=enabled, changes=_changes(rules), actor=audit.CLI)
    click.echo(f"Updated queue {name}.")


@queue_cli.command("delete")
@click.argument("name")
def queue_delete(name: str) -> None:
    """Delete a queue (refused while it has active jobs)."""
    with reported():
        queues.delete_queue(name, actor=audit.CLI)
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
    with reported():
        queue = queues.get_queue_or_404(name)
    click.echo(json.dumps(queues.describe(queue), indent=2))
