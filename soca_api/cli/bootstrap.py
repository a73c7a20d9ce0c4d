"""`flask --app wsgi bootstrap`: the first admin of a fresh database."""
from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app

from soca_api.extensions import db
from soca_api.models import User
from soca_api.services import accounts, audit


@click.command("bootstrap")
@click.option("--admin-name", default="admin", show_default=True)
def bootstrap(admin_name: str) -> None:
    """On a fresh database, create an admin and keep its key in the data folder (0600)."""
    if db.session.execute(db.select(User).where(User.is_admin.is_(True))).first() is not None:
        click.echo("An admin exists already; `flask --app wsgi user reset-key NAME` prints a new key.")
        return
    _user, key = accounts.create_user(admin_name, is_admin=True, actor=audit.BOOTSTRAP)
    key_file = Path(current_app.config["SOCA_DATA_DIR"]) / "admin_api_key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an older file of another mode stays private too
        handle.write(key + "\n")
    click.echo(f"Created admin user '{admin_name}'. Its API key is in {key_file} (mode 0600):")
    click.echo(f"    cat {key_file}")
