"""`flask --app wsgi scheduler run`: the local runner, or the PBS/Slurm reconciler."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click
from flask import current_app
from flask.cli import AppGroup

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.local import LocalProxy

scheduler_cli = AppGroup("scheduler", help="The local runner, or the PBS/Slurm reconciler.")


@scheduler_cli.command("run")
@click.option("--cpus", type=int, default=None, help="Cpus to hand out (default SOCA_LOCAL_CPUS).")
@click.option("--exit-with-parent", is_flag=True, help="Stop when the process that started it dies.")
def run_scheduler(cpus: int | None, exit_with_parent: bool) -> None:
    """Local backend: run the local runner (one per data folder; others wait as standby).
    PBS / Slurm: run the reconciler (one per deployment, by a lease in the database)."""
    from soca_api.schedulers.local.runner import Runner
    from soca_api.schedulers.local.runner import exit_with_parent as bind_to_parent

    if exit_with_parent:
        bind_to_parent()
    # Flask declares current_app as a Flask, hiding the werkzeug LocalProxy it is; the
    # runner and the reconciler keep the app itself (they push their own contexts).
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()
    if app.config["SOCA_SCHEDULER"] != "local":
        from soca_api.schedulers.reconciler import Reconciler

        Reconciler(app, interval=app.config["SOCA_SCHEDULER_CACHE_SECONDS"],
                   lease_seconds=app.config["SOCA_RECONCILER_LEASE_SECONDS"],
                   grace_seconds=app.config["SOCA_SCHEDULER_TIMEOUT"] + 5).run_forever()
        return
    Runner(app, cpus=cpus or app.config["SOCA_LOCAL_CPUS"],
           poll_seconds=app.config["SOCA_LOCAL_POLL_SECONDS"],
           kill_delay=app.config["SOCA_LOCAL_KILL_DELAY"]).run_forever()
