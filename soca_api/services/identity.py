"""Who a job runs as, and where its folder lies: one policy for every backend.

Root service:
- an API user whose POSIX account of the same name is eligible (uid at least
  SOCA_MIN_JOB_UID, not listed in SOCA_DENIED_JOB_USERS, never uid 0) runs as it; the
  job folder lies in its home (`~/soca_job_output/`, as SOCA does);
- any other API user gets, on the local backend, a dedicated uid of its own from
  SOCA_JOB_UID_RANGE (kept in the `job_accounts` table, never given to anyone else), or
  is refused (403) when SOCA_UNMAPPED_JOB_USERS=refuse. PBS and Slurm need a real account
  on every node, so there such a user is always refused. No system account (`games`,
  `postgres`, `daemon`...) ever runs a job, whatever the API user is called.

Service not running as root: every job runs as the service's account (the local runner
puts each one in a sandbox), under the data folder, its output paths confined to it.
"""
from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from soca_api.extensions import db
from soca_api.models import JobAccount
from soca_api.schedulers import jobfiles
from soca_api.schedulers.commands import RunAs

JOB_OUTPUT_FOLDER = "soca_job_output"
UNMAPPED_POLICIES = ("dedicated", "refuse")


class IdentityRefused(Exception):
    """The site's policy gives this API user no account to run jobs as (HTTP 403)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class JobIdentity:
    run_as: RunAs | None  # None: the service's own (non-root) account
    base_dir: str  # trusted folder the job folders are created below
    sub_dirs: tuple[str, ...]  # folders between base_dir and the job folder
    confined: bool  # -o/-e must resolve inside the job folder
    kind: str  # "posix", "dedicated" or "service"

    @property
    def owner_ids(self) -> tuple[int, int] | None:
        return (self.run_as.uid, self.run_as.gid) if self.run_as else None

    @property
    def home(self) -> str:
        """HOME for the job: the account's home, else its folder under the data folder."""
        if self.run_as is not None and self.kind == "posix" and not self.confined:
            return self.run_as.home
        return os.path.join(self.base_dir, *self.sub_dirs)


def _run_as(account: pwd.struct_passwd) -> RunAs:
    groups = tuple(os.getgrouplist(account.pw_name, account.pw_gid))
    return RunAs(user=account.pw_name, uid=account.pw_uid, gid=account.pw_gid, groups=groups,
                 home=account.pw_dir)


def eligible_account(name: str, min_uid: int, denied: list[str] | tuple[str, ...]) -> pwd.struct_passwd | None:
    """The POSIX account a job of API user `name` may run as, or None (pure policy)."""
    if name in denied:
        return None
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        return None
    if account.pw_uid == 0 or account.pw_uid < max(1, min_uid) or account.pw_gid == 0:
        return None
    return account


def posix_account(name: str) -> pwd.struct_passwd | None:
    """The eligible POSIX account of `name` under the app's settings."""
    config = current_app.config
    return eligible_account(name, config["SOCA_MIN_JOB_UID"], config["SOCA_DENIED_JOB_USERS"])


def resolve(user: str, data_dir: str | None = None, *, backend: str = "local",
            allocate: bool = True) -> JobIdentity:
    """Who runs `user`'s jobs. Raises IdentityRefused (403) when nobody may.

    allocate=False (the runner) never hands out a new dedicated uid: it uses the one the
    submission recorded.
    """
    config = current_app.config
    data_dir = data_dir or config["SOCA_DATA_DIR"]
    data_jobs = os.path.join(data_dir, "jobs")
    if os.geteuid() != 0:
        return JobIdentity(None, data_jobs, (user,), confined=True, kind="service")
    account = posix_account(user)
    if account is not None:
        if os.path.isdir(account.pw_dir) and account.pw_dir != "/":
            return JobIdentity(_run_as(account), account.pw_dir, (JOB_OUTPUT_FOLDER,), confined=False,
                               kind="posix")
        return JobIdentity(_run_as(account), data_jobs, (user,), confined=True, kind="posix")
    if backend != "local":
        raise IdentityRefused(
            f"User {user} has no POSIX account jobs may run as on the {backend} scheduler (it needs an "
            f"account of that name with uid {config['SOCA_MIN_JOB_UID']} or more): ask an admin")
    policy = config["SOCA_UNMAPPED_JOB_USERS"]
    if policy not in UNMAPPED_POLICIES:
        raise RuntimeError(f"SOCA_UNMAPPED_JOB_USERS must be one of {UNMAPPED_POLICIES}, not {policy!r}")
    if policy == "refuse":
        raise IdentityRefused(
            f"User {user} has no POSIX account jobs may run as on this host, and this site gives "
            "no dedicated one: ask an admin")
    uid = dedicated_uid(user, data_dir, allocate=allocate)
    run_as = RunAs(user=user, uid=uid, gid=uid, groups=(), home=os.path.join(data_jobs, user))
    return JobIdentity(run_as, data_jobs, (user,), confined=True, kind="dedicated")


def dedicated_uid(user: str, data_dir: str, *, allocate: bool = True) -> int:
    """The uid of `user`'s own, never shared; handed out on first use and kept for good."""
    existing = db.session.execute(sa.select(JobAccount.uid).where(JobAccount.user_name == user)).scalar()
    if existing is not None:
        return existing
    if not allocate:
        raise IdentityRefused(f"User {user} has no dedicated job account")
    start, end = current_app.config["SOCA_JOB_UID_RANGE"]
    for _attempt in range(20):
        uid = _free_uid(start, end, data_dir)
        # Its own transaction: the submission's record is not begun yet, and a rival
        # worker taking the same uid makes our insert fail, not share it.
        db.session.add(JobAccount(user_name=user, uid=uid))
        try:
            db.session.commit()
            return uid
        except IntegrityError:
            db.session.rollback()
            existing = db.session.execute(
                sa.select(JobAccount.uid).where(JobAccount.user_name == user)).scalar()
            if existing is not None:
                return existing
    raise IdentityRefused(f"No dedicated job account could be given to {user}: try again")


def _free_uid(start: int, end: int, data_dir: str) -> int:
    """The next uid of the range no record, no POSIX account or group, and no folder left in
    the data folder's jobs/ (a previous installation's) has ever used."""
    highest = db.session.execute(
        sa.select(sa.func.max(JobAccount.uid)).where(JobAccount.uid.between(start, end))).scalar()
    taken_on_disk = _uids_owning_job_folders(data_dir)
    uid = max(start, (highest or start - 1) + 1, max((u + 1 for u in taken_on_disk if start <= u <= end),
                                                      default=start))
    while uid <= end:
        if not _uid_known_to_system(uid) and uid not in taken_on_disk:
            return uid
        uid += 1
    raise IdentityRefused("The range of dedicated job uids (SOCA_JOB_UID_RANGE) is used up: ask an admin")


def _uid_known_to_system(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            continue
    return False


def _uids_owning_job_folders(data_dir: str) -> set[int]:
    owners = set()
    try:
        with os.scandir(os.path.join(data_dir, "jobs")) as entries:
            for entry in entries:
                try:
                    owners.add(entry.stat(follow_symlinks=False).st_uid)
                except OSError:
                    continue
    except OSError:
        pass
    return owners


def group_names(gids: tuple[int, ...]) -> list[str]:
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def make_job_dir(identity: JobIdentity, leaf: str) -> str:
    """The job's new folder (0700, the job account's); see jobfiles.create_job_dir."""
    return jobfiles.create_job_dir(identity.base_dir, identity.sub_dirs, leaf, identity.owner_ids)
