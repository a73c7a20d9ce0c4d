"""Who a job runs as, and where its folder lies: one policy for every backend.

Root service:
- an API user whose POSIX account of the same name is eligible (uid at least
  SOCA_MIN_JOB_UID, not listed in SOCA_DENIED_JOB_USERS, never uid 0) runs as it; the
  job folder lies in its home (`~/soca_job_output/`, as SOCA does);
- any other API user gets, where the scheduler allows it (the local backend), a dedicated
  uid of its own from SOCA_JOB_UID_RANGE (kept in the `job_accounts` table, never given to
  anyone else), or is refused (403) when SOCA_UNMAPPED_JOB_USERS=refuse. A scheduler whose
  capabilities say `needs_posix_account` (PBS, Slurm: a real account on every node)
  always refuses such a user. No system account (`games`, `postgres`, `daemon`...) ever
  runs a job, whatever the API user is called.

Service not running as root: every job runs as the service's account (the local runner
puts each one in a sandbox), under the data folder, its output paths confined to it.

The job service resolves the identity on submission (and hands out dedicated uids,
soca_api.services.identity); the local runner resolves it again when the job starts,
with the uid the submission recorded.
"""
from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from soca_api.extensions import db
from soca_api.models import JobAccount
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


def recorded_uid(user: str) -> int | None:
    """The dedicated uid `user` was given (job_accounts), or None."""
    return db.session.execute(sa.select(JobAccount.uid).where(JobAccount.user_name == user)).scalar()


def recorded_dedicated_uid(user: str, _data_dir: str) -> int:
    """The dedicated uid a submission already gave `user`: never a new one. (Called as
    resolve's `dedicated_uid`, hence the folder it does not need.)"""
    uid = recorded_uid(user)
    if uid is None:
        raise IdentityRefused(f"User {user} has no dedicated job account")
    return uid


def resolve(user: str, data_dir: str | None = None, *, needs_posix_account: bool, scheduler_label: str,
            dedicated_uid: Callable[[str, str], int] = recorded_dedicated_uid) -> JobIdentity:
    """Who runs `user`'s jobs. Raises IdentityRefused (403) when nobody may.

    `needs_posix_account` and `scheduler_label` come from the adapter (its capabilities,
    and its name for the message); `dedicated_uid(user, data_dir)` gives the uid of a user
    without an eligible account where the scheduler allows one.
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
    if needs_posix_account:
        raise IdentityRefused(
            f"User {user} has no POSIX account jobs may run as on the {scheduler_label} scheduler (it needs an "
            f"account of that name with uid {config['SOCA_MIN_JOB_UID']} or more): ask an admin")
    policy = config["SOCA_UNMAPPED_JOB_USERS"]
    if policy not in UNMAPPED_POLICIES:
        raise RuntimeError(f"SOCA_UNMAPPED_JOB_USERS must be one of {UNMAPPED_POLICIES}, not {policy!r}")
    if policy == "refuse":
        raise IdentityRefused(
            f"User {user} has no POSIX account jobs may run as on this host, and this site gives "
            "no dedicated one: ask an admin")
    uid = dedicated_uid(user, data_dir)
    run_as = RunAs(user=user, uid=uid, gid=uid, groups=(), home=os.path.join(data_jobs, user))
    return JobIdentity(run_as, data_jobs, (user,), confined=True, kind="dedicated")
