"""Strict patterns for every id and name a client can send, checked before use."""
from __future__ import annotations

import re

USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
GROUP_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
# PBS queue names: at most 15 characters, starting with a letter (pbs-facts.md).
QUEUE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
# API job ids: "12", "12[]", "12[3]", with or without a server suffix.
JOB_ID = re.compile(r"^[0-9]+(\[[0-9]*\])?(\.[A-Za-z0-9_.-]+)?$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
INSTANCE_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)?$")
# Idempotency-Key header: long enough to be unique per client (a UUID is 36), no spaces.
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


def is_valid(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def strip_server_suffix(job_id: str) -> str:
    """"12[3].head" -> "12[3]" (the id must already match JOB_ID)."""
    match = JOB_ID.fullmatch(job_id)
    if not match:
        raise ValueError("invalid job id")
    return job_id.split(".", 1)[0]
