"""PBS job ids: the API's ids checked and shortened, qsub's answer read back.

PBS prints `12.server`, `12[].server` and `12[3].server`; the API shows them without the
server suffix. Slurm's Torque wrapper answers qsub with a bare `23`.
"""
from __future__ import annotations

import re

from soca_api.schedulers.errors import SchedulerError
from soca_api.schedulers.pbs.qstat import short_job_id
from soca_api.validation import JOB_ID

_QSUB_ID = re.compile(r"^(?P<id>\d+(?:\[\d*\])?)(?:\.[A-Za-z0-9_.-]+)?$")


def api_short_id(job_id: str) -> str:
    """Validate an API job id ("123", "123.srv", "123[]", "123[4].srv") and drop the server."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ValueError("invalid job id")
    return short_job_id(job_id)


def is_subjob(short_id: str) -> bool:
    return "[" in short_id and not short_id.endswith("[]")


def parse_qsub_output(stdout: str) -> str:
    """`11313.server` -> "11313", `1234[].server` -> "1234[]", Slurm's bare `23` -> "23"."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    match = _QSUB_ID.fullmatch(lines[-1]) if lines else None
    if match is None:
        # Never echo what qsub printed: it may repeat the script or the environment.
        raise SchedulerError("The scheduler accepted no job: qsub printed no job id")
    return match.group("id")
