"""Users and their API keys; the changes an admin makes, each audited here (`actor=`)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app

from soca_api import security
from soca_api.errors import ApiError
from soca_api.extensions import db, read_row
from soca_api.models import ApiKey, User, iso_utc, utcnow
from soca_api.services import audit
from soca_api.validation import EMAIL, USER_NAME, is_valid


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


def find_user(name: str) -> User | None:
    if not is_valid(USER_NAME, name):
        return None
    return db.session.execute(
        db.select(User).where(User.name == name, User.deleted_at.is_(None))
    ).scalar_one_or_none()


def get_user_or_404(name: str) -> User:
    if not is_valid(USER_NAME, name):
        raise ApiError(400, f"user must match {USER_NAME.pattern}")
    user = find_user(name)
    if user is None:
        raise ApiError(404, f"User {name} does not exist")
    return user


@audit.records(audit.USER_CREATE, target="name",
               detail=lambda _created, is_admin, **_: "admin" if is_admin else None)
def create_user(name: str, *, password: str | None = None, email: str | None = None,
                is_admin: bool = False, commit: bool = True,
                actor: audit.Actor | None = None) -> tuple[User, str]:
    """Create a user and its first API key; returns (user, key in clear)."""
    if not is_valid(USER_NAME, name):
        raise ApiError(400, f"user must match {USER_NAME.pattern}")
    if email is not None and email != "" and not is_valid(EMAIL, email):
        raise ApiError(400, "email is not a valid e-mail address")
    if password is not None:
        problem = security.password_problem(password, name)
        if problem:
            raise ApiError(400, problem)
    existing = db.session.execute(db.select(User).where(User.name == name)).scalar_one_or_none()
    if existing is not None and existing.deleted_at is None:
        raise ApiError(409, f"User {name} already exists")
    if existing is not None:
        # A deleted user keeps its row (job history refers to the name); revive it anew.
        user = existing
        user.deleted_at = None
        user.is_active = True
        user.session_epoch += 1
        user.groups = []
    else:
        user = User(name=name)
        db.session.add(user)
    user.email = email or None
    user.is_admin = is_admin
    user.password_hash = security.hash_password(password) if password else None
    db.session.flush()
    key = _issue_key(user)
    if commit:
        db.session.commit()
    return user, key


def active_key(user: User) -> ApiKey | None:
    return db.session.execute(
        db.select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.id.desc())
    ).scalars().first()


def _issue_key(user: User) -> str:
    key = security.new_api_key()
    db.session.add(ApiKey(user_id=user.id, digest=security.key_digest(_secret(), key),
                          sealed=security.seal(_secret(), key)))
    return key


def current_or_new_key(user: User, *, actor: audit.Actor | None = None) -> str:
    """The user's key in clear, creating one when there is none (SOCA's GET behaviour).

    Reading another user's key is audited; reading one's own is not."""
    if actor is not None and not actor.is_user(user.name):
        audit.record(audit.API_KEY_READ, actor=actor.name, target=user.name)
    record = active_key(user)
    if record is not None:
        clear = security.unseal(_secret(), record.sealed)
        if clear is not None:
            return clear
        # The server secret changed: the old key can no longer be shown or checked.
        record.revoked_at = utcnow()
        _credentials_changed(user)
    key = _issue_key(user)
    db.session.commit()
    return key


def _credentials_changed(user: User) -> None:
    """Every worker's cached verification of the user's keys stops counting at once.

    In SQL (not read-modify-write) so two concurrent changes never write the same value."""
    user.credentials_epoch = User.credentials_epoch + 1


@audit.records(audit.API_KEY_REVOKE, target="user")
def revoke_keys(user: User, *, commit: bool = True, actor: audit.Actor | None = None) -> int:
    count = 0
    for record in db.session.execute(
        db.select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
    ).scalars():
        record.revoked_at = utcnow()
        count += 1
    _credentials_changed(user)
    if commit:
        db.session.commit()
    return count


def _by_admin(user_name: str, actor: audit.Actor) -> bool:
    """An account acting on another user's (the CLI acts as nobody's account)."""
    return actor.via != "cli" and not actor.is_user(user_name)


@audit.records(audit.API_KEY_RESET, target="user",
               detail=lambda _key, user, actor, **_: "by admin" if _by_admin(user.name, actor) else None)
def reset_key(user: User, *, actor: audit.Actor | None = None) -> str:
    revoke_keys(user, commit=False)
    key = _issue_key(user)
    db.session.commit()
    return key


class CallerChanged(Exception):
    """Since this worker verified the caller's key, the key was revoked or the user was
    deleted, deactivated or given other rights: the call starts again, fully checked."""


@dataclass(slots=True)
class CallerCheck:
    """A key this worker verified moments ago, not yet confirmed for this call: the
    credentials epoch the user must still have (see VerifiedKeys). A read confirms it in
    its own query (`with_caller_check`), else `confirm` asks on its own."""

    epoch: int
    confirmed: bool = False
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an API call authenticated as: what the hot path needs, read without the ORM.
    `check`: set only on a call whose confirmation is deferred to its read."""

    id: int
    name: str
    is_admin: bool
    check: CallerCheck | None = field(default=None, compare=False)

    @property
    def groups(self) -> list:
        """Group memberships (queue rules need them, rarely): the ORM record's."""
        user = db.session.get(User, self.id)
        if user is None:  # users are only ever soft-deleted: the row outlives its callers
            raise LookupError(f"user {self.id} ({self.name}) has no row")
        return user.groups

    @classmethod
    def of(cls, user: User) -> Caller:
        return cls(user.id, user.name, user.is_admin)


_users, _keys = User.__table__, ApiKey.__table__
# Plain SQL, built once, only the columns needed: the hot path of every API call.
_KEYS_OF_ACTIVE_USER = (
    sa.select(_users.c.id, _users.c.is_admin, _users.c.credentials_epoch, _keys.c.digest)
    .select_from(_users.join(_keys, _keys.c.user_id == _users.c.id))
    .where(_users.c.name == sa.bindparam("name"), _users.c.is_active.is_(True), _users.c.deleted_at.is_(None),
           _keys.c.revoked_at.is_(None))
)
_STILL_ACTIVE = (
    sa.select(_users.c.is_admin, _users.c.credentials_epoch)
    .where(_users.c.id == sa.bindparam("id"), _users.c.is_active.is_(True), _users.c.deleted_at.is_(None))
)


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    epoch: int
    expires: float


class VerifiedKeys:
    """This worker's keys verified in the last few seconds, keyed by (user, key digest).

    A hit still makes one query, by primary key: the user must still be active and not
    deleted, and its credentials epoch (bumped by every revocation and deletion) must be
    the one seen when the key was verified. So a revoked key, a deleted or a deactivated
    user answers 401 at once on every worker; what a hit saves is the failure-count read
    and the key join (a key just verified is not a guess). A read may also fold that query
    into its own (`get(defer=True)`, CallerCheck).
    """

    MAX_ENTRIES = 10000

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Verified] = {}
        self._lock = threading.Lock()

    def get(self, name: str, digest: str, *, defer: bool = False) -> Caller | None:
        """With `defer`, no query: the caller carries a CallerCheck that the call's own
        read confirms (and that must be confirmed before its answer leaves)."""
        entry = self._entries.get((name, digest))
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self.forget(name, digest)
            return None
        if defer:
            return Caller(entry.caller.id, name, entry.caller.is_admin, CallerCheck(entry.epoch))
        row = read_row(_STILL_ACTIVE, {"id": entry.caller.id})
        if row is None or row.credentials_epoch != entry.epoch:
            self.forget(name, digest)
            return None
        if row.is_admin != entry.caller.is_admin:  # admin rights follow at once too
            return Caller(entry.caller.id, name, row.is_admin)
        return entry.caller

    def put(self, name: str, digest: str, caller: Caller, epoch: int, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()  # bounded; refilled by the next calls
            self._entries[(name, digest)] = _Verified(caller, epoch, time.monotonic() + seconds)

    def forget(self, name: str, digest: str) -> None:
        with self._lock:
            self._entries.pop((name, digest), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _verified_keys() -> VerifiedKeys:
    """The app's cache (one per app, so apps sharing a process never share entries)."""
    cache = current_app.extensions.get("soca_verified_keys")
    if cache is None:
        cache = current_app.extensions.setdefault("soca_verified_keys", VerifiedKeys())
    return cache


def _usable(name: str, presented: str) -> bool:
    return is_valid(USER_NAME, name) and bool(presented) and len(presented) <= 256


def recently_verified(name: str, presented: str, *, defer: bool = False) -> Caller | None:
    """The caller when this key was verified moments ago and nothing changed since, else None.
    With `defer`, "nothing changed" is left to the call's read (Caller.check)."""
    if current_app.config["SOCA_AUTH_CACHE_SECONDS"] <= 0 or not _usable(name, presented):
        return None
    return _verified_keys().get(name, security.key_digest(_secret(), presented), defer=defer)


# -- a deferred check, confirmed by the call's own read ---------------------------------------
def with_caller_check(columns: Iterable[Any], table: sa.FromClause,
                      onclause: sa.ColumnElement[bool]) -> sa.Select:
    """A statement for `columns` of the row of `table` that `onclause` finds (at most one),
    with the caller's credentials epoch and admin flag beside them (`caller_epoch`,
    `caller_is_admin`; bind `caller_id`): one row while the caller is active, whose
    columns of `table` are None when it has no such row; no row once the caller is not."""
    return (sa.select(_users.c.credentials_epoch.label("caller_epoch"), _users.c.is_admin.label("caller_is_admin"),
                      *columns)
            .select_from(_users.outerjoin(table, onclause))
            .where(_users.c.id == sa.bindparam("caller_id"), _users.c.is_active.is_(True),
                   _users.c.deleted_at.is_(None)))


def settle(caller: Caller | User, epoch: int | None, is_admin: bool | None) -> None:
    """Confirm the caller's deferred check from what a read found of it (None: no longer
    active); CallerChanged when the epoch or the admin flag moved."""
    check = getattr(caller, "check", None)
    if check is None or check.confirmed:
        return
    if check.failed or epoch != check.epoch or is_admin != caller.is_admin:
        check.failed = True
        raise CallerChanged
    check.confirmed = True


def confirm(caller: Caller | User) -> None:
    """The caller's deferred check, on its own query (a call that folded it into none)."""
    check = getattr(caller, "check", None)
    if check is None or check.confirmed:
        return
    if check.failed:
        raise CallerChanged
    row = read_row(_STILL_ACTIVE, {"id": caller.id})
    settle(caller, row.credentials_epoch if row else None, row.is_admin if row else None)


def authenticate_key(name: str, presented: str) -> Caller | None:
    """The active user owning `presented`, or None. One query, constant-time compare."""
    if not _usable(name, presented):
        return None
    digest = security.key_digest(_secret(), presented)
    found = None
    for row in db.session.execute(_KEYS_OF_ACTIVE_USER, {"name": name}).all():
        if security.digests_match(row.digest, digest):
            found = row
    if found is None:
        return None
    caller = Caller(found.id, name, found.is_admin)
    _verified_keys().put(name, digest, caller, found.credentials_epoch, current_app.config["SOCA_AUTH_CACHE_SECONDS"])
    return caller


def authenticate_password(name: str, password: str) -> User | None:
    user = find_user(name) if password else None
    if not security.check_password(user.password_hash if user else None, password or ""):
        return None
    if user is None or not user.is_active:
        return None
    return user


# -- administration (API, CLI and web pages) -------------------------------------------
def user_view(user: User) -> dict[str, object]:
    return {"name": user.name, "email": user.email, "admin": user.is_admin, "active": user.is_active,
            "groups": sorted(group.name for group in user.groups), "created": iso_utc(user.created_at)}


def list_users() -> list[User]:
    return list(db.session.execute(
        sa.select(User).where(User.deleted_at.is_(None)).order_by(User.name)).scalars())


@audit.records(audit.USER_DELETE, target="name", detail=lambda revoked, **_: f"{revoked} key(s) revoked")
def delete_user(name: str, *, actor: audit.Actor | None = None) -> int:
    """Revoke every key, end every session, drop group memberships; keep the row.

    The row stays (marked deleted) because the job history refers to the name; returns
    the number of keys revoked. Nobody deletes their own user.
    """
    if actor is not None and actor.is_user(name):
        raise ApiError(403, "You cannot delete your own user")
    user = get_user_or_404(name)
    if user.is_admin and admin_count() <= 1:
        raise ApiError(409, f"User {user.name} is the last admin; grant admin rights to another user first")
    revoked = revoke_keys(user, commit=False)
    user.deleted_at = utcnow()
    user.is_active = False
    user.is_admin = False
    user.session_epoch += 1
    _credentials_changed(user)
    user.groups = []  # memberships grant queue access: a name reused later starts without them
    db.session.commit()
    return revoked


def admin_count() -> int:
    return db.session.execute(
        sa.select(sa.func.count(User.id)).where(User.is_admin.is_(True), User.is_active.is_(True),
                                                User.deleted_at.is_(None))
    ).scalar_one()


def _changed(changed: bool, **_: object) -> str | None:
    return None if changed else "no change"


@audit.records(audit.USER_GRANT_ADMIN, target="name", detail=_changed)
def grant_admin(name: str, *, actor: audit.Actor | None = None) -> bool:
    """Returns whether anything changed; rights apply from the user's next request."""
    return _set_admin(get_user_or_404(name), True)


@audit.records(audit.USER_REVOKE_ADMIN, target="name", detail=_changed)
def revoke_admin(name: str, *, actor: audit.Actor | None = None) -> bool:
    """Returns whether anything changed. The last admin stays one."""
    return _set_admin(get_user_or_404(name), False)


def _set_admin(user: User, admin: bool) -> bool:
    if user.is_admin == admin:
        return False
    if not admin and admin_count() <= 1:
        raise ApiError(409, f"User {user.name} is the last admin; grant admin rights to another user first")
    user.is_admin = admin
    db.session.commit()
    return True


def _password_change(_result: None, name: str, actor: audit.Actor, **_: object) -> str:
    """Who vouched for the change: the server's shell, the user themselves, or an admin."""
    if actor.via == "cli":
        return "cli"
    return "self-service" if actor.is_user(name) else "by admin"


@audit.records(audit.USER_PASSWORD_RESET, target="name", detail=_password_change)
def set_password(name: str, password: str, *, actor: audit.Actor | None = None) -> None:
    """Every web session of the user ends; API keys stay valid."""
    user = get_user_or_404(name)
    problem = security.password_problem(password, user.name)
    if problem:
        raise ApiError(400, problem)
    user.password_hash = security.hash_password(password)
    user.session_epoch += 1  # every web session of the user ends
    db.session.commit()


def split_names(field: str, text: str) -> list[str]:
    names = []
    for part in text.split(","):
        name = part.strip()
        if not is_valid(USER_NAME, name):
            raise ApiError(400, f'{field} is invalid: "{name[:40]}" is not a valid user name')
        if name not in names:
            names.append(name)
    return names
