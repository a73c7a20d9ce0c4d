"""Strict patterns and limits for every id, name and number a client can send, checked
before use. The API's spec states them from here (soca_api.apidoc), so the two never drift."""
from __future__ import annotations

import re

# User and group names: POSIX login names, at most 32 characters.
NAME_MAX = 32
USER_NAME = re.compile(rf"^[a-z_][a-z0-9_.-]{{0,{NAME_MAX - 1}}}$")
GROUP_NAME = re.compile(rf"^[a-z_][a-z0-9_.-]{{0,{NAME_MAX - 1}}}$")
# PBS queue names: at most 15 characters, starting with a letter.
QUEUE_NAME_MAX = 15
QUEUE_NAME = re.compile(rf"^[A-Za-z][A-Za-z0-9_-]{{0,{QUEUE_NAME_MAX - 1}}}$")
# API job ids: "12", "12[]", "12[3]", with or without a server suffix.
JOB_ID = re.compile(r"^[0-9]+(\[[0-9]*\])?(\.[A-Za-z0-9_.-]+)?$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
INSTANCE_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)?$")
# Idempotency-Key header: long enough to be unique per client (a UUID is 36), no spaces.
IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_MAX = 8, 128
IDEMPOTENCY_KEY = re.compile(rf"^[A-Za-z0-9_.:-]{{{IDEMPOTENCY_KEY_MIN},{IDEMPOTENCY_KEY_MAX}}}$")
# Audit log filters: an actor (a user name, "cli", "bootstrap"), an action or a prefix with *.
AUDIT_ACTOR = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
AUDIT_ACTION = re.compile(r"^(?:[a-z0-9_.]{1,64}\*?|\*)$")

# Whole numbers: anything outside is a 400, never clamped.
WHOLE_NUMBER = re.compile(r"^[0-9]{1,19}$")  # ASCII digits only (\d takes any script's)
GID_MAX = 2**31 - 1
COUNT_MAX = 999_999_999_999  # byte offsets and job cursors (12 digits)
EVENT_ID_MAX = 2**63 - 1  # the audit log's cursor: a BIGINT id
JOBS_PAGE_DEFAULT = 100
AUDIT_PAGE_MAX = 1000
OUTPUT_LENGTH_DEFAULT, OUTPUT_LENGTH_MAX = 65536, 1024 * 1024
OUTPUT_TAIL_MAX = 10_000


def is_valid(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def strip_server_suffix(job_id: str) -> str:
    """"12[3].head" -> "12[3]" (the id must already match JOB_ID)."""
    match = JOB_ID.fullmatch(job_id)
    if not match:
        raise ValueError("invalid job id")
    return job_id.split(".", 1)[0]
