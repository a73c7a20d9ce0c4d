"""Groups and their members (API, CLI and web pages)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import Group, User
from soca_api.services import accounts, queues
from soca_api.validation import GROUP_NAME, is_valid

_NAME_RULE = "^[a-z_][a-z0-9_.-]{0,31}$"
MAX_GID = 2**31 - 1


def find_group(name: str) -> Group | None:
    if not is_valid(GROUP_NAME, name):
        return None
    return db.session.execute(sa.select(Group).where(Group.name == name)).scalar_one_or_none()


def get_group_or_404(name: str) -> Group:
    if not is_valid(GROUP_NAME, name):
        raise ApiError(400, f"group is invalid: it must match {_NAME_RULE}")
    group = find_group(name)
    if group is None:
        raise ApiError(404, f"Group {name} does not exist")
    return group


def list_groups() -> list[Group]:
    return list(db.session.execute(sa.select(Group).order_by(Group.name)).scalars())


def group_view(group: Group) -> dict[str, object]:
    members = sorted(user.name for user in group.members if user.deleted_at is None)
    return {"members": members, "gid": group.gid}


def create_group(name: str, *, gid: int | None = None, members: list[str] | None = None) -> Group:
    if not is_valid(GROUP_NAME, name):
        raise ApiError(400, f"group is invalid: it must match {_NAME_RULE}")
    if gid is not None and not 0 <= gid <= MAX_GID:
        raise ApiError(400, f"gid is invalid: it must be from 0 to {MAX_GID}")
    if find_group(name) is not None:
        raise ApiError(409, f"Group {name} already exists")
    if gid is not None:
        other = db.session.execute(sa.select(Group.name).where(Group.gid == gid)).scalar_one_or_none()
        if other is not None:
            raise ApiError(409, f"gid {gid} is already used by group {other}")
    users = [accounts.get_user_or_404(member) for member in members or []]
    group = Group(name=name, gid=gid, members=users)
    db.session.add(group)
    try:
        db.session.commit()
    except IntegrityError:  # created meanwhile by a concurrent request
        db.session.rollback()
        raise ApiError(409, f"Group {name} already exists") from None
    return group


def set_membership(group: Group, user: User, member: bool) -> bool:
    """Add or remove; returns whether anything changed."""
    if (user in group.members) == member:
        return False
    if member:
        group.members.append(user)
    else:
        group.members.remove(user)
    db.session.commit()
    return True


def delete_group(name: str) -> None:
    group = get_group_or_404(name)
    used_by = queues.queues_using_group(name)
    if used_by:
        # Removing it would silently turn an allowed_groups rule into "nobody".
        raise ApiError(409, f"Group {name} is named in the rules of queue(s) {', '.join(used_by)}; "
                            "change those rules first")
    db.session.delete(group)
    db.session.commit()
