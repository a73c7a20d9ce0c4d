"""Job folders and the files in them, the same way for every backend.

Root (or the service) writes into folders a job's account owns, so nothing here follows a
link below a trusted base folder: every step opens the next name relative to the
previous folder's descriptor with O_NOFOLLOW, and a folder or file is created only when
it is new (O_EXCL / mkdir), never reused. A link or file in the way is a JobFileError the
service answers with a 4xx before anything is recorded.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable

JOB_DIR_MODE = 0o700
SHARED_DIR_MODE = 0o711  # folders job accounts pass through (soca_job_output, data/jobs)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class JobFileError(OSError):
    """A job folder or file cannot be made or used safely; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.message = message
        self.strerror = message
        self.status = status

    def __str__(self) -> str:
        return self.message


def unique_folder_name(job_name: str, record_id: int) -> str:
    """`<name>_<id>_<random>`: unique across databases and reinstalls, not guessable."""
    safe = _SAFE_NAME.sub("_", job_name).lstrip(".-")[:200] or "job"
    return f"{safe}_{record_id}_{secrets.token_hex(4)}"


def _check_part(part: str) -> None:
    if part in ("", ".", "..") or "/" in part or "\0" in part:
        raise JobFileError(f"invalid folder name {part!r}", 400)


def _open_dir_nofollow(name: str, dir_fd: int, shown: str, access: int = os.O_RDONLY) -> int:
    try:
        return os.open(name, access | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise JobFileError(f"{shown} is a symbolic link or a file, not a folder: remove it") from None
        raise


def _owners_allowed(owner: tuple[int, int] | None) -> set[int]:
    allowed = {os.geteuid(), 0}
    if owner is not None:
        allowed.add(owner[0])
    return allowed


def create_job_dir(base_dir: str, sub_dirs: tuple[str, ...], leaf: str,
                   owner: tuple[int, int] | None) -> str:
    """Create base_dir/sub_dirs.../leaf and return its path.

    base_dir is trusted (a home from the passwd database or the data folder) and is
    created (0711) when missing. Missing sub-folders are created (0711, given to
    `owner`); existing ones must be real folders of `owner`, root or the service. The
    leaf must not exist: it is made 0700 and given to `owner` (uid, gid) when set.
    """
    if not os.path.isdir(base_dir):
        os.makedirs(base_dir, exist_ok=True)
        os.chmod(base_dir, SHARED_DIR_MODE)
    fd = os.open(base_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    allowed = _owners_allowed(owner)
    shown = base_dir
    try:
        parts = sub_dirs + (leaf,)
        for index, part in enumerate(parts):
            _check_part(part)
            is_leaf = index == len(parts) - 1
            shown = os.path.join(shown, part)
            created = True
            try:
                os.mkdir(part, JOB_DIR_MODE if is_leaf else SHARED_DIR_MODE, dir_fd=fd)
            except FileExistsError:
                if is_leaf:
                    raise JobFileError(f"{shown} exists already: a job folder is never reused") from None
                created = False
            next_fd = _open_dir_nofollow(part, fd, shown)
            os.close(fd)
            fd = next_fd
            info = os.fstat(fd)
            if created:
                if owner is not None and os.geteuid() == 0:
                    os.fchown(fd, *owner)
                os.fchmod(fd, JOB_DIR_MODE if is_leaf else SHARED_DIR_MODE)
            elif info.st_uid not in allowed:
                raise JobFileError(f"{shown} belongs to another account (uid {info.st_uid})", 403)
    finally:
        os.close(fd)
    return shown


def _trusted_directory(fd: int) -> bool:
    """A folder only root can change: links in it were made by root."""
    status = os.fstat(fd)
    return status.st_uid == 0 and not status.st_mode & 0o022


def _walk_from_root(job_dir: str, flags: int, create_for: tuple[int, int] | None = None,
                    create: bool = False) -> int:
    """A descriptor on `job_dir`, walked from "/" one folder at a time: links are followed
    only in folders only root can change. With `create`, missing folders are made (0700,
    given to `create_for` when the service is root)."""
    if not os.path.isabs(job_dir) or os.path.normpath(job_dir) != job_dir:
        raise JobFileError(f"invalid job folder {job_dir!r}", 400)
    access = flags & (os.O_PATH | os.O_RDONLY)
    fd = os.open("/", flags)
    shown = ""
    try:
        for part in [p for p in job_dir.split("/") if p]:
            shown += "/" + part
            try:
                if _trusted_directory(fd):
                    child = os.open(part, flags, dir_fd=fd)
                else:
                    child = _open_dir_nofollow(part, fd, shown, access)
            except FileNotFoundError:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, "the job folder does not exist", shown) from None
                os.mkdir(part, JOB_DIR_MODE, dir_fd=fd)
                child = _open_dir_nofollow(part, fd, shown, access)
                if create_for is not None and os.geteuid() == 0:
                    os.fchown(child, *create_for)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_folder_owner(fd: int, job_dir: str, allowed: Iterable[int]) -> int:
    if os.fstat(fd).st_uid not in allowed:
        os.close(fd)
        raise JobFileError(f"the job folder {job_dir} belongs to another account", 403)
    return fd


def open_job_dir(job_dir: str, owner_uid: int | None = None) -> int:
    """An O_PATH descriptor on an existing job folder (to open files below it). The
    folder must belong to `owner_uid` (or the service) when given."""
    # O_PATH: passing a folder needs only its x bit (job accounts pass 0711 folders).
    fd = _walk_from_root(job_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if owner_uid is None:
        return fd
    return _check_folder_owner(fd, job_dir, (owner_uid, os.geteuid()))


def open_or_create_job_dir(job_dir: str, owner: tuple[int, int] | None) -> int:
    """A descriptor on the job folder (the scheduler adapters' entry), creating what is
    missing (0700, given to `owner` when the service is root); the folder must belong to
    `owner`, root or the service."""
    fd = _walk_from_root(job_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, owner, create=True)
    return _check_folder_owner(fd, job_dir, _owners_allowed(owner))


def write_new_file(dir_fd: int, name: str, text: str, owner: tuple[int, int] | None, mode: int) -> None:
    """A new file in the folder `dir_fd` (never an existing one, never through a link)."""
    _check_part(name)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
    except FileExistsError:
        raise JobFileError(f"{name} exists already in the job folder: it is never overwritten") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        if owner is not None and os.geteuid() == 0:
            os.fchown(handle.fileno(), *owner)
        handle.write(text)
        os.fchmod(handle.fileno(), mode)


def open_below(dir_fd: int, relative: str, flags: int, mode: int = 0o600) -> int:
    """Open `relative` under the folder `dir_fd`, no link followed at any step."""
    parts = [p for p in relative.split("/") if p]
    if not parts:
        raise JobFileError("no file name", 400)
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            _check_part(part)
            child = _open_dir_nofollow(part, fd, part, os.O_PATH)
            os.close(fd)
            fd = child
        _check_part(parts[-1])
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)


def open_in_job_dir(job_dir: str, path: str, flags: int, mode: int = 0o600,
                    owner_uid: int | None = None) -> int:
    """Open a path inside a job folder without following any link on the way."""
    prefix = job_dir.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise JobFileError(f"{path} is not inside the job folder", 400)
    dir_fd = open_job_dir(job_dir, owner_uid)
    try:
        return open_below(dir_fd, path[len(prefix):], flags, mode)
    finally:
        os.close(dir_fd)


def open_for_reading(path: str, owner_uid: int | None) -> int:
    """A read descriptor on a regular file owned by `owner_uid` (when given), opened
    without following a link in the folders a user could change nor at its last step."""
    directory, name = os.path.split(path)
    dir_fd = open_job_dir(directory)
    try:
        fd = open_below(dir_fd, name, os.O_RDONLY | os.O_NONBLOCK)
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (owner_uid is not None and info.st_uid != owner_uid):
        os.close(fd)
        raise JobFileError(f"{path} is not a file of the job's account", 403)
    return fd
