"""What a scheduler adapter raises: the SchedulerError family.

Adapters know nothing of HTTP; each error carries the status the API answers with and a
message that is safe to show to the client.
"""
from __future__ import annotations


class SchedulerError(Exception):
    """Base of every adapter failure. `message` is safe to show to the client."""

    status = 502

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail  # the scheduler's own words (e.g. qsub stderr), safe to show


class JobRejected(SchedulerError):
    """The scheduler refused the job (unknown queue or resource, limits, bad dependency)."""

    status = 400


class JobNotFound(SchedulerError):
    """Unknown, purged or deleted job."""

    status = 404


class PermissionDenied(SchedulerError):
    status = 403


class SchedulerUnavailable(SchedulerError):
    """Server down or command missing."""

    status = 503


class SchedulerTimeout(SchedulerError):
    status = 504


class QueueRejected(SchedulerError):
    """The scheduler cannot serve a queue of that name (e.g. Slurm has no such partition)."""

    status = 400
