"""PBS queue management through qmgr: the scheduler's side of creating and deleting a
queue through the API, when the site lets the service manage PBS queues
(SOCA_PBS_MANAGE_QUEUES). Used by PbsAdapter.apply_queue / remove_queue.

qmgr takes one directive as text (`-c "create queue NAME ..."`); the queue name goes into
it, so only a valid queue name (validation.QUEUE_NAME) is ever accepted here.
"""
from __future__ import annotations

from collections.abc import Callable

from soca_api.schedulers.commands import CommandResult
from soca_api.schedulers.errors import SchedulerError
from soca_api.validation import QUEUE_NAME

# qmgr's stderr as the client sees it: its first lines, never more than this.
STDERR_LINES = 5
STDERR_LIMIT = 1000

# Runs one PBS command (name, arguments) the adapter's way: its bin_dir, timeout and environment.
Run = Callable[[str, list[str]], CommandResult]


def qmgr(run: Run, directive: str) -> None:
    """Run one `qmgr -c DIRECTIVE`; a refusal raises SchedulerError (502) with qmgr's stderr."""
    result = run("qmgr", ["-c", directive])
    if not result.ok:
        stderr = "\n".join(result.stderr.strip().splitlines()[:STDERR_LINES])[:STDERR_LIMIT]
        raise SchedulerError(f"qmgr refused: {directive}", detail=stderr or None)


def _checked(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise ValueError(f"not a queue name: {name!r}")
    return name


def create_queue(run: Run, name: str, existing: list[str]) -> None:
    """Create an execution queue and start it; a queue PBS has already is adopted as it is
    (only enabled and started)."""
    name = _checked(name)
    if name not in existing:
        qmgr(run, f"create queue {name} queue_type=execution")
    qmgr(run, f"set queue {name} enabled=True,started=True")


def delete_queue(run: Run, name: str, existing: list[str]) -> None:
    """Delete the PBS queue; one PBS no longer has is left alone (the service forgets it)."""
    name = _checked(name)
    if name in existing:
        qmgr(run, f"delete queue {name}")
