"""Who a job runs as on submission, and the dedicated uids handed out for it.

The policy itself (soca_api.schedulers.job_accounts) is the same for the job service and
the local runner; the service adds what only a submission does: handing out a dedicated
uid on first use, and creating the job's folder.
"""
from __future__ import annotations

import grp
import os
import pwd

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from soca_api.extensions import db
from soca_api.models import JobAccount
from soca_api.schedulers import job_accounts, jobfiles
from soca_api.schedulers.base import SchedulerAdapter
from soca_api.schedulers.job_accounts import IdentityRefused, JobIdentity


def resolve(user: str, scheduler: SchedulerAdapter, *, data_dir: str | None = None,
            allocate: bool = True) -> JobIdentity:
    """Who runs `user`'s jobs on `scheduler`. Raises IdentityRefused (403) when nobody may.

    allocate=False (reading a job's files) never hands out a new dedicated uid: it uses the
    one the submission recorded.
    """
    return job_accounts.resolve(
        user, data_dir, needs_posix_account=scheduler.capabilities.needs_posix_account,
        scheduler_label=scheduler.backend_label,
        dedicated_uid=dedicated_uid if allocate else job_accounts.recorded_dedicated_uid)


def dedicated_uid(user: str, data_dir: str) -> int:
    """The uid of `user`'s own, never shared; handed out on first use and kept for good."""
    existing = job_accounts.recorded_uid(user)
    if existing is not None:
        return existing
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
            existing = job_accounts.recorded_uid(user)
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


def make_job_dir(identity: JobIdentity, leaf: str) -> str:
    """The job's new folder (0700, the job account's); see jobfiles.create_job_dir."""
    return jobfiles.create_job_dir(identity.base_dir, identity.sub_dirs, leaf, identity.owner_ids)
