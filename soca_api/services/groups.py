"""Groups and their members (API, CLI and web pages); every change audited here (`actor=`)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import Group
from soca_api.services import accounts, audit, queues
from soca_api.validation import GID_MAX, GROUP_NAME, is_valid


def find_group(name: str) -> Group | None:
    if not is_valid(GROUP_NAME, name):
        return None
    return db.session.execute(sa.select(Group).where(Group.name == name)).scalar_one_or_none()


def get_group_or_404(name: str) -> Group:
    if not is_valid(GROUP_NAME, name):
        raise ApiError(400, f"group is invalid: it must match {GROUP_NAME.pattern}")
    group = find_group(name)
    if group is None:
        raise ApiError(404, f"Group {name} does not exist")
    return group


def list_groups() -> list[Group]:
    return list(db.session.execute(sa.select(Group).order_by(Group.name)).scalars())


def group_view(group: Group) -> dict[str, object]:
    members = sorted(user.name for user in group.members if user.deleted_at is None)
    return {"members": members, "gid": group.gid}


def _created(group: Group, **_: object) -> str:
    return f"gid={group.gid} members={','.join(sorted(member.name for member in group.members))}"


@audit.records(audit.GROUP_CREATE, target="name", detail=_created)
def create_group(name: str, *, gid: int | str | None = None, members: str | list[str] | None = None,
                 actor: audit.Actor | None = None) -> Group:
    """`gid` and `members` may be given as typed in a form: "" for none, comma-separated names."""
    if isinstance(gid, str):
        if gid and not gid.isdigit():
            raise ApiError(400, "gid is invalid: it must be a whole number")
        gid = int(gid) if gid else None
    if isinstance(members, str):
        members = accounts.split_names("members", members) if members else []
    if not is_valid(GROUP_NAME, name):
        raise ApiError(400, f"group is invalid: it must match {GROUP_NAME.pattern}")
    if gid is not None and not 0 <= gid <= GID_MAX:
        raise ApiError(400, f"gid is invalid: it must be from 0 to {GID_MAX}")
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


def _membership(changed: bool, user_name: str, member: bool, **_: object) -> str:
    return f"{'add' if member else 'remove'} {user_name}" + ("" if changed else " (no change)")


@audit.records(audit.GROUP_UPDATE, target="group_name", detail=_membership)
def set_membership(group_name: str, user_name: str, member: bool, *,
                   actor: audit.Actor | None = None) -> bool:
    """Add or remove; returns whether anything changed."""
    group = get_group_or_404(group_name)
    user = accounts.get_user_or_404(user_name)
    if (user in group.members) == member:
        return False
    if member:
        group.members.append(user)
    else:
        group.members.remove(user)
    db.session.commit()
    return True


@audit.records(audit.GROUP_DELETE, target="name")
def delete_group(name: str, *, actor: audit.Actor | None = None) -> None:
    group = get_group_or_404(name)
    used_by = queues.queues_using_group(name)
    if used_by:
        # Removing it would silently turn an allowed_groups rule into "nobody".
        raise ApiError(409, f"Group {name} is named in the rules of queue(s) {', '.join(used_by)}; "
                            "change those rules first")
    db.session.delete(group)
    db.session.commit()
