"""Real services the tests need. Missing ones skip locally but fail under CI=true."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """Skip (developer machine) or fail (CI) when a service the test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true but is not available")
    pytest.skip(f"{what} is not available (it is required under CI=true)")


def slurm_available() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.split())


def require_slurm() -> None:
    require(slurm_available(), "A running Slurm (scripts/slurm-single-node.sh start)")


PBS_BIN = "/opt/pbs/bin"


def openpbs_available() -> bool:
    """OpenPBS (../shared/openpbs/install.sh) answering, with its node up."""
    qstat = os.path.join(PBS_BIN, "qstat")
    if not os.access(qstat, os.X_OK):
        return False
    try:
        out = subprocess.run([os.path.join(PBS_BIN, "pbsnodes"), "-a"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and ("state = free" in out.stdout or "state = job-busy" in out.stdout)


def require_openpbs() -> None:
    require(openpbs_available(), "A running OpenPBS (bash ../shared/openpbs/install.sh)")
