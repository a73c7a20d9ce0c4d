"""Users and their API keys."""
from __future__ import annotations

import sqlalchemy as sa
from flask import current_app

from soca_api import security
from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import ApiKey, User, iso_utc, utcnow
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
        raise ApiError(400, "user must match ^[a-z_][a-z0-9_.-]{0,31}$")
    user = find_user(name)
    if user is None:
        raise ApiError(404, f"User {name} does not exist")
    return user


def create_user(name: str, *, password: str | None = None, email: str | None = None,
                is_admin: bool = False, commit: bool = True) -> tuple[User, str]:
    """Create a user and its first API key; returns (user, key in clear)."""
    if not is_valid(USER_NAME, name):
        raise ApiError(400, "user must match ^[a-z_][a-z0-9_.-]{0,31}$")
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


def current_or_new_key(user: User) -> str:
    """The user's key in clear, creating one when there is none (SOCA's GET behaviour)."""
    record = active_key(user)
    if record is not None:
        clear = security.unseal(_secret(), record.sealed)
        if clear is not None:
            return clear
        # The server secret changed: the old key can no longer be shown or checked.
        record.revoked_at = utcnow()
    key = _issue_key(user)
    db.session.commit()
    return key


def revoke_keys(user: User, *, commit: bool = True) -> int:
    count = 0
    for record in db.session.execute(
        db.select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
    ).scalars():
        record.revoked_at = utcnow()
        count += 1
    if commit:
        db.session.commit()
    return count


def reset_key(user: User) -> str:
    revoke_keys(user, commit=False)
    key = _issue_key(user)
    db.session.commit()
    return key


# Built once: the hot path of every API call should not rebuild its SQL.
_KEYS_OF_USER = (
    sa.select(User, ApiKey.digest)
    .join(ApiKey, ApiKey.user_id == User.id)
    .where(User.name == sa.bindparam("name"), User.is_active.is_(True), User.deleted_at.is_(None),
           ApiKey.revoked_at.is_(None))
)


def authenticate_key(name: str, presented: str) -> User | None:
    """The active user owning `presented`, or None. One query, constant-time compare."""
    if not is_valid(USER_NAME, name) or not presented or len(presented) > 256:
        return None
    digest = security.key_digest(_secret(), presented)
    found = None
    for user, stored in db.session.execute(_KEYS_OF_USER, {"name": name}).all():
        if security.digests_match(stored, digest):
            found = user
    return found


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


def delete_user(user: User) -> int:
    """Revoke every key, end every session, drop group memberships; keep the row.

    The row stays (marked deleted) because the job history refers to the name; returns
    the number of keys revoked.
    """
    if user.is_admin and admin_count() <= 1:
        raise ApiError(409, f"User {user.name} is the last admin; grant admin rights to another user first")
    revoked = revoke_keys(user, commit=False)
    user.deleted_at = utcnow()
    user.is_active = False
    user.is_admin = False
    user.session_epoch += 1
    user.groups = []  # memberships grant queue access: a name reused later starts without them
    db.session.commit()
    return revoked


def admin_count() -> int:
    return db.session.execute(
        sa.select(sa.func.count(User.id)).where(User.is_admin.is_(True), User.is_active.is_(True),
                                                User.deleted_at.is_(None))
    ).scalar_one()


def set_admin(user: User, admin: bool) -> bool:
    """Grant or revoke; returns whether anything changed. The last admin stays one."""
    if user.is_admin == admin:
        return False
    if not admin and admin_count() <= 1:
        raise ApiError(409, f"User {user.name} is the last admin; grant admin rights to another user first")
    user.is_admin = admin
    db.session.commit()
    return True


def set_password(user: User, password: str) -> None:
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
