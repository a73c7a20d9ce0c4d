"""Choosing and holding the scheduler adapter named by SOCA_SCHEDULER."""
from __future__ import annotations

from flask import Flask, current_app

from soca_api.schedulers.base import SchedulerAdapter

BACKENDS = ("local", "pbs", "slurm")


def make_adapter(config) -> SchedulerAdapter:
    backend = config["SOCA_SCHEDULER"]
    timeout = float(config["SOCA_SCHEDULER_TIMEOUT"])
    cache = float(config["SOCA_SCHEDULER_CACHE_SECONDS"])
    if backend == "local":
        from soca_api.schedulers.local import LocalAdapter

        return LocalAdapter(data_dir=config["SOCA_DATA_DIR"])
    if backend == "pbs":
        from soca_api.schedulers.pbs import PbsAdapter

        adapter = PbsAdapter(bin_dir=config["SOCA_PBS_BIN"], timeout=timeout,
                             dialect=config["SOCA_PBS_DIALECT"], cache_seconds=cache)
        adapter.manage_queues(bool(config["SOCA_PBS_MANAGE_QUEUES"]))
        return adapter
    if backend == "slurm":
        from soca_api.schedulers.slurm import SlurmAdapter

        return SlurmAdapter(bin_dir=config["SOCA_SLURM_BIN"], timeout=timeout,
                            instance_type_mode=config["SOCA_SLURM_INSTANCE_TYPE"], cache_seconds=cache)
    raise ValueError(f"SOCA_SCHEDULER must be one of {', '.join(BACKENDS)}, not {backend!r}")


def init_app(app: Flask) -> None:
    app.extensions["soca_scheduler"] = make_adapter(app.config)


def get_adapter() -> SchedulerAdapter:
    return current_app.extensions["soca_scheduler"]
