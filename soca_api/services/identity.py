"""Who a job runs as, where its folder lies, and creating that folder safely.

When the service runs as root and a POSIX account of the user's name exists, the job
runs as that account and its folder lies in its home (`~/soca_job_output/`, as SOCA
does). Otherwise it runs as the service's account (or, for a root service, an
unprivileged fallback account: a job never runs as uid 0) under the data folder, and
its output paths must stay inside its job folder.
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
from dataclasses import dataclass

from soca_api.schedulers.commands import RunAs

JOB_OUTPUT_FOLDER = "soca_job_output"


@dataclass(frozen=True)
class JobIdentity:
    run_as: RunAs | None  # None: the service's own (non-root) account
    base_dir: str  # trusted folder the job folders are created below
    sub_dirs: tuple[str, ...]  # folders between base_dir and the job folder
    confined: bool  # -o/-e must resolve inside the job folder

    @property
    def owner_ids(self) -> tuple[int, int] | None:
        return (self.run_as.uid, self.run_as.gid) if self.run_as else None


def _run_as(account: pwd.struct_passwd) -> RunAs:
    groups = tuple(os.getgrouplist(account.pw_name, account.pw_gid))
    return RunAs(user=account.pw_name, uid=account.pw_uid, gid=account.pw_gid, groups=groups,
                 home=account.pw_dir)


def posix_account(name: str) -> pwd.struct_passwd | None:
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        return None
    return account if account.pw_uid != 0 else None


def resolve(user: str, data_dir: str, fallback_user: str = "nobody") -> JobIdentity:
    data_jobs = (os.path.join(data_dir, "jobs"), (user,))
    if os.geteuid() != 0:
        return JobIdentity(None, data_jobs[0], data_jobs[1], confined=True)
    account = posix_account(user)
    if account is not None and os.path.isdir(account.pw_dir):
        return JobIdentity(_run_as(account), account.pw_dir, (JOB_OUTPUT_FOLDER,), confined=False)
    fallback = posix_account(fallback_user)
    if fallback is None:
        raise RuntimeError(f"fallback account {fallback_user!r} is missing or is root")
    return JobIdentity(_run_as(fallback), data_jobs[0], data_jobs[1], confined=True)


def group_names(gids: tuple[int, ...]) -> list[str]:
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def ensure_traversable(path: str) -> None:
    """A service folder that job accounts may pass through but not list (umask-proof)."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o711)


def make_job_dir(identity: JobIdentity, leaf: str, mode: int = 0o700) -> str:
    """Create base/sub_dirs.../leaf without following any symlink below base.

    Each step opens the next folder relative to the previous one with O_NOFOLLOW, so a
    user cannot point `soca_job_output` at another place and have root create files there.
    New folders belong to the job's account.
    """
    ensure_traversable(identity.base_dir)
    fd = os.open(identity.base_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, part in enumerate(identity.sub_dirs + (leaf,)):
            if part in ("", ".", "..") or "/" in part:
                raise ValueError(f"invalid folder name {part!r}")
            is_leaf = index == len(identity.sub_dirs)
            created = True
            try:
                os.mkdir(part, mode if is_leaf else 0o711, dir_fd=fd)
            except FileExistsError:
                created = False
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PermissionError(f"{part} is not a plain folder") from exc
                raise
            if created and identity.owner_ids is not None:
                os.fchown(next_fd, *identity.owner_ids)
            if created:
                os.fchmod(next_fd, mode if is_leaf else 0o711)
            os.close(fd)
            fd = next_fd
    finally:
        os.close(fd)
    return os.path.join(identity.base_dir, *identity.sub_dirs, leaf)
