"""A job's stdout and stderr, read for its owner: a byte range or the last lines, opened
as the job's account would see them.
"""
from __future__ import annotations

import os

from soca_api.errors import JOB_GONE, ApiError
from soca_api.models import Job, User
from soca_api.schedulers import get_adapter, jobfiles
from soca_api.services import identity
from soca_api.services.jobs.records import find_record


def read_output(user: User, job_id: str, stream: str, *, offset: int | None, length: int,
                tail: int | None) -> dict[str, object]:
    """A byte range or the last lines of the job's stdout or stderr, for its owner only."""
    found_by = job_id  # the record's scheduler id
    record = find_record(found_by, include_deleted=True)
    path = None
    if record is None and "[" in job_id and not job_id.endswith("[]"):
        # A subjob the reconciler has not recorded yet: the array's path, with its index.
        found_by = job_id.split("[", 1)[0] + "[]"
        record = find_record(found_by, include_deleted=True)
        if record is not None:
            pattern = record.output_path if stream == "stdout" else record.error_path
            path = (pattern or "").replace("^array_index^", job_id.split("[", 1)[1].rstrip("]")) or None
    if record is None or record.owner != user.name:
        raise ApiError(404, JOB_GONE)
    if path is None and found_by.endswith("[]"):
        raise ApiError(400, "An array job has no output of its own: ask for one subjob, e.g. 12[1]")
    if path is None:
        path = record.output_path if stream == "stdout" else record.error_path
    fd = _open_job_output(record, path, stream, job_id)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        start = _tail_start(handle, size, tail) if tail is not None else min(offset or 0, size)
        handle.seek(start)
        data = handle.read(min(length, size - start) if tail is None else size - start)
    if start + len(data) < size or record.state != "F":
        # A character cut by the range or by a job still writing comes whole next read.
        data = data[:_complete_utf8(data)]
    end = start + len(data)
    return {"job_id": job_id, "stream": stream, "path": path, "offset": start, "next_offset": end,
            "size": size, "eof": end >= size, "finished": record.state == "F",
            "data": data.decode("utf-8", errors="replace")}


def _open_job_output(record: Job, path: str | None, stream: str, job_id: str) -> int:
    """A descriptor on the job's output, as its account would see it: the folders a user
    can change are walked without following links, and the file must be a regular file
    of the job's account (never one it merely named, e.g. a link to the secret key)."""
    if not path:
        raise ApiError(404, f"No {stream} yet for job {job_id}")
    owner_uid = None
    if os.geteuid() == 0:
        try:
            ident = identity.resolve(record.owner, get_adapter(), allocate=False)
        except identity.IdentityRefused:
            raise ApiError(403, f"The {stream} file of job {job_id} cannot be read") from None
        owner_uid = ident.run_as.uid if ident.run_as else None
    try:
        return jobfiles.open_for_reading(path, owner_uid)
    except FileNotFoundError:
        raise ApiError(404, f"No {stream} yet for job {job_id}") from None
    except (OSError, jobfiles.JobFileError):
        raise ApiError(403, f"The {stream} file of job {job_id} cannot be read") from None


def _complete_utf8(data: bytes) -> int:
    """Length of `data` without a UTF-8 sequence cut at its end (a file still growing)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last sequence
            needed = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return len(data) - back if needed > back else len(data)
    return len(data)


def _tail_start(handle, size: int, lines: int) -> int:
    """Offset where the last `lines` lines begin, reading backwards in blocks."""
    block, position, newlines = 65536, size, 0
    while position > 0:
        read_from = max(0, position - block)
        handle.seek(read_from)
        chunk = handle.read(position - read_from)
        # A final newline ends the last line; it does not start a new one.
        end = len(chunk) - 1 if position == size and chunk.endswith(b"\n") else len(chunk)
        for index in range(end - 1, -1, -1):
            if chunk[index] == 0x0A:
                newlines += 1
                if newlines == lines:
                    return read_from + index + 1
        position = read_from
    return 0

