"""Command-line administration, `flask --app wsgi COMMAND ...`:

    user create|reset-key|delete|grant-admin|revoke-admin|set-password|list   (cli/users.py)
    group create|delete|add|remove|list, queue create|set|delete|list|show   (cli/admin.py)
    bootstrap                                                                 (cli/bootstrap.py)
    scheduler run                                                             (cli/scheduler.py)

The commands call the same services as the API and the web pages, with the actor "cli"
(audit.CLI): the services audit every change and every failed change.
"""
from __future__ import annotations

from flask import Flask

from soca_api.cli import admin, bootstrap, scheduler, users


def init_app(app: Flask) -> None:
    for command in (users.user_cli, admin.group_cli, admin.queue_cli, bootstrap.bootstrap,
                    scheduler.scheduler_cli):
        app.cli.add_command(command)
