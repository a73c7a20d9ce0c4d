"""Counting failures (bad keys, bad passwords) in Flask-Limiter's storage.

Only failures count, so a busy script with a good key is never slowed down, while
guessing from one address or against one user is stopped. With SOCA_REDIS_URL the
count is shared by every gunicorn worker.
"""
from __future__ import annotations

import math
import time

from flask import current_app
from limits import parse

from soca_api.extensions import limiter


def retry_after(setting: str, *identifiers: str) -> int | None:
    """Seconds to wait when any identifier is over the limit named by `setting`, else None."""
    item = parse(current_app.config[setting])
    worst = None
    for identifier in identifiers:
        if not limiter.limiter.test(item, setting, identifier):
            reset_at, _remaining = limiter.limiter.get_window_stats(item, setting, identifier)
            wait = max(1, math.ceil(reset_at - time.time()))
            worst = max(worst or 0, wait)
    return worst


def count_failure(setting: str, *identifiers: str) -> None:
    item = parse(current_app.config[setting])
    for identifier in identifiers:
        limiter.limiter.hit(item, setting, identifier)
