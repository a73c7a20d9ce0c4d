"""Administration: users, groups, admin rights, passwords, queues and the audit log.

Admins only, except `GET /api/scheduler/queues` (every user) and
`POST /api/user/reset_password` (every user for their own password). Parameters come from
form fields or the query string, as in SOCA. Every change is audited, and so is every
refusal: a caller without admin rights, and any failed change (bad field, conflict).

The operations themselves live in soca_api.services (accounts, groups, queues, audit),
shared with the CLI and the web pages.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import g, request

from soca_api import ratelimit, security
from soca_api.api.base import ApiResource
from soca_api.errors import ApiError
from soca_api.extensions import db
from soca_api.models import User
from soca_api.services import accounts, audit, groups, queues
from soca_api.validation import EMAIL, GROUP_NAME, QUEUE_NAME, USER_NAME

ADMIN_ONLY = "This action requires admin rights"
_NAME_RULE = "^[a-z_][a-z0-9_.-]{0,31}$"
_GID = re.compile(r"^[0-9]{1,10}$")
_MAX_GID = 2**31 - 1
_ACTOR = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ACTION_FILTER = re.compile(r"^(?:[a-z0-9_.]{1,64}\*?|\*)$")
_INT = re.compile(r"^[0-9]{1,12}$")
AUDIT_MAX_PAGE = 1000
QUEUE_SETTINGS = ("name", "type", "enabled", *queues.RULE_FIELDS)


# -- auditing ------------------------------------------------------------------------------
def audited(action: str, *, admin: bool = True, read: bool = False) -> Callable:
    """Refuse non-admins (when `admin`) and audit every refusal and failed change.

    A refusal (403) is always recorded; other failures only for changes (`read=False`), so
    that a mistyped lookup does not flood the log. Success is recorded by the method
    itself (`_done`), with the change. Set the target with `_target` as soon as it is known.
    """

    def decorate(method: Callable) -> Callable:
        @wraps(method)
        def wrapper(self: ApiResource, *args: Any, **kwargs: Any):
            g.audit_action, g.audit_target = action, None
            if admin and not g.user.is_admin:
                audit.record(action, actor=g.user.name, success=False,
                             detail=f"refused: {request.method} {request.path} requires admin rights")
                raise ApiError(403, ADMIN_ONLY)
            try:
                return method(self, *args, **kwargs)
            except ApiError as exc:
                db.session.rollback()  # nothing half-done is committed with the audit event
                if not read or exc.status == 403:
                    audit.record(action, actor=g.user.name, target=g.get("audit_target"), success=False,
                                 detail=exc.message)
                raise

        return wrapper

    return decorate


def _target(name: str | None) -> str | None:
    g.audit_target = name
    return name


def _done(detail: str | None = None) -> None:
    audit.record(g.audit_action, actor=g.user.name, target=g.get("audit_target"), detail=detail)


def _values() -> dict[str, str]:
    """Every parameter given, form fields winning over the query string."""
    return {**request.args.to_dict(), **request.form.to_dict()}


def _user_param(resource: ApiResource, name: str = "user") -> str:
    return resource.param(name, pattern=USER_NAME, describe=_NAME_RULE)


def _group_param(resource: ApiResource) -> str:
    return resource.param("group", pattern=GROUP_NAME, describe=_NAME_RULE)


def _queue_param(resource: ApiResource) -> str:
    return resource.param("name", pattern=QUEUE_NAME, describe=QUEUE_NAME.pattern)


def _rules_doc(method: Callable) -> Callable:
    """Document every rule field from queues.RULE_HELP, so the doc never lags the code."""
    lines = [f"          - {{name: {name}, in: formData, type: string, required: false, "
             f"description: '{queues.RULE_HELP[name].replace(chr(39), chr(39) * 2)}'}}"
             for name in queues.RULE_FIELDS]
    method.__doc__ = (method.__doc__ or "").replace("          - RULES\n", "\n".join(lines) + "\n")
    return method


# -- users ---------------------------------------------------------------------------------
class UserResource(ApiResource):
    @audited("user.read", read=True)
    def get(self):
        """Show one user.
        ---
        tags: [Users]
        summary: Show a user (admins)
        parameters:
          - {name: user, in: query, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name}
        responses:
          200: {description: '{"name", "email", "admin", "active", "groups", "created"}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        user = accounts.get_user_or_404(_target(_user_param(self)))
        return self.ok(accounts.user_view(user))

    @audited("user.create")
    def post(self):
        """Create a user with a password and an API key (the user fetches the key with the password).
        ---
        tags: [Users]
        summary: Create a user (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: user, in: formData, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: 'user name, ^[a-z_][a-z0-9_.-]{0,31}$'}
          - {name: password, in: formData, type: string, required: true, description: 'at least 10 characters, two kinds of characters, not containing the user name'}
          - {name: email, in: formData, type: string, required: true, pattern: '^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\\.[A-Za-z]{2,63}$', description: e-mail address}
          - {name: sudoers, in: formData, type: string, required: false, description: 'true to make the user an admin (default false)'}
        responses:
          200: {description: Added user, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid field (named in the message), schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: The user exists, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_user_param(self))
        password = self.param("password")
        email = self.param("email", pattern=EMAIL, describe="a valid e-mail address")
        sudoers = self.param("sudoers", required=False)
        is_admin = queues.parse_bool("sudoers", sudoers) if sudoers is not None else False
        accounts.create_user(name, password=password, email=email, is_admin=is_admin)
        _done("admin" if is_admin else None)
        return self.ok("Added user")

    @audited("user.delete")
    def delete(self):
        """Delete a user: every key revoked, every session ended, the job history kept.
        ---
        tags: [Users]
        summary: Delete a user (admins; not yourself)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: user, in: formData, type: string, required: false, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name (form field)}
          - {name: user, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name (query string)}
        responses:
          200: {description: Deleted user., schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: 'Not an admin, or the caller''s own user', schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_user_param(self))
        if name == g.user.name:
            raise ApiError(403, "You cannot delete your own user")
        keys = accounts.delete_user(accounts.get_user_or_404(name))
        _done(f"{keys} key(s) revoked")
        return self.ok("Deleted user.")


class UsersResource(ApiResource):
    @audited("user.list", read=True)
    def get(self):
        """Every user (admins only, unlike SOCA: the list is nobody else's business).
        ---
        tags: [Users]
        summary: List users (admins)
        responses:
          200: {description: '{name: {"name", "email", "admin", "active", "groups", "created"}}', schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        return self.ok({user.name: accounts.user_view(user) for user in accounts.list_users()})


# -- groups --------------------------------------------------------------------------------
class GroupResource(ApiResource):
    @audited("group.read", read=True)
    def get(self):
        """Show one group.
        ---
        tags: [Groups]
        summary: Show a group and its members (admins)
        parameters:
          - {name: group, in: query, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: group name}
        responses:
          200: {description: '{"name", "gid", "members"}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid group, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown group, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        group = groups.get_group_or_404(_target(_group_param(self)))
        return self.ok({"name": group.name, **groups.group_view(group)})

    @audited("group.create")
    def post(self):
        """Create a group, optionally with a gid and members.
        ---
        tags: [Groups]
        summary: Create a group (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: group, in: formData, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: 'group name, ^[a-z_][a-z0-9_.-]{0,31}$'}
          - {name: gid, in: formData, type: integer, required: false, minimum: 0, maximum: 2147483647, description: 'POSIX gid, unique'}
          - {name: members, in: formData, type: string, required: false, description: comma-separated user names}
        responses:
          200: {description: Group created, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid field, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: A member does not exist, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: The group or the gid exists, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_group_param(self))
        gid_text = self.param("gid", required=False, pattern=_GID, describe="a whole number")
        members = self.param("members", required=False)
        group = groups.create_group(name, gid=int(gid_text) if gid_text is not None else None,
                             members=accounts.split_names("members", members) if members else [])
        _done(f"gid={group.gid} members={','.join(sorted(m.name for m in group.members))}")
        return self.ok("Group created")

    @audited("group.update")
    def put(self):
        """Add a user to a group or remove one.
        ---
        tags: [Groups]
        summary: Change a group's members (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: group, in: formData, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: group name}
          - {name: user, in: formData, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name}
          - {name: action, in: formData, type: string, enum: [add, remove], required: true, description: add or remove}
        responses:
          200: {description: 'User added to group / User removed from group', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid field, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown group or user, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_group_param(self))
        user_name = _user_param(self)
        action = self.param("action", pattern=re.compile(r"^(add|remove)$"), describe="add or remove")
        group = groups.get_group_or_404(name)
        user = accounts.get_user_or_404(user_name)
        changed = groups.set_membership(group, user, action == "add")
        _done(f"{action} {user_name}" + ("" if changed else " (no change)"))
        if action == "add":
            return self.ok(f"User {user_name} added to group {name}" if changed
                           else f"User {user_name} is already in group {name}")
        return self.ok(f"User {user_name} removed from group {name}" if changed
                       else f"User {user_name} is not in group {name}")

    @audited("group.delete")
    def delete(self):
        """Delete a group (refused while a queue rule names it).
        ---
        tags: [Groups]
        summary: Delete a group (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: group, in: formData, type: string, required: false, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: group name (form field)}
          - {name: group, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: group name (query string)}
        responses:
          200: {description: Group deleted, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid group, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown group, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: A queue rule names the group, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        groups.delete_group(_target(_group_param(self)))
        _done()
        return self.ok("Group deleted")


class GroupsResource(ApiResource):
    @audited("group.list", read=True)
    def get(self):
        """Every group with its gid and members (admins only, unlike SOCA).
        ---
        tags: [Groups]
        summary: List groups (admins)
        responses:
          200: {description: '{group: {"members": [...], "gid": ...}}', schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        return self.ok({group.name: groups.group_view(group) for group in groups.list_groups()})


# -- admin rights --------------------------------------------------------------------------
class SudoResource(ApiResource):
    @audited("user.admin_read", read=True)
    def get(self):
        """Whether a user has admin rights.
        ---
        tags: [Users]
        summary: Is a user an admin? (admins)
        parameters:
          - {name: user, in: query, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name}
        responses:
          200: {description: '{"user": name, "admin": bool}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        user = accounts.get_user_or_404(_target(_user_param(self)))
        return self.ok({"user": user.name, "admin": user.is_admin})

    @audited("user.grant_admin")
    def post(self):
        """Grant admin rights; they apply from the user's very next request.
        ---
        tags: [Users]
        summary: Grant admin rights (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: user, in: formData, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name}
        responses:
          200: {description: User is now an admin, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        user = accounts.get_user_or_404(_target(_user_param(self)))
        changed = accounts.set_admin(user, True)
        _done(None if changed else "no change")
        return self.ok(f"User {user.name} is now an admin" if changed else f"User {user.name} is already an admin")

    @audited("user.revoke_admin")
    def delete(self):
        """Revoke admin rights (never those of the last admin); effective on the next request.
        ---
        tags: [Users]
        summary: Revoke admin rights (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: user, in: formData, type: string, required: false, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name (form field)}
          - {name: user, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name (query string)}
        responses:
          200: {description: User is no longer an admin, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: The last admin, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        user = accounts.get_user_or_404(_target(_user_param(self)))
        changed = accounts.set_admin(user, False)
        _done(None if changed else "no change")
        return self.ok(f"User {user.name} is no longer an admin" if changed
                       else f"User {user.name} is not an admin")


# -- passwords -----------------------------------------------------------------------------
class ResetPasswordResource(ApiResource):
    @audited("user.password_reset", admin=False)
    def post(self):
        """Set a password: admins for anyone, users for themselves with their current password.
        ---
        tags: [Users]
        summary: Change a password (admin, or self with the current password)
        description: Every web session of the user ends; API keys stay valid.
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: user, in: formData, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name}
          - {name: password, in: formData, type: string, required: true, description: 'the new password: at least 10 characters, two kinds of characters, not containing the user name'}
          - {name: current_password, in: formData, type: string, required: false, description: 'the current password (required unless the caller is an admin)'}
        responses:
          200: {description: Password updated correctly., schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing field or weak password, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: 'Another user''s password, or wrong current password', schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
          429: {description: Too many wrong current passwords, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_user_param(self))
        caller = g.user
        if name != caller.name and not caller.is_admin:
            raise ApiError(403, "You can only change your own password")
        password = self.param("password")
        user = accounts.get_user_or_404(name)
        if not caller.is_admin:
            _check_current_password(self, user)
        accounts.set_password(user, password)
        _done("by admin" if user.name != caller.name else "self-service")
        return self.ok("Password updated correctly.")


def _check_current_password(resource: ApiResource, user: User) -> None:
    """A stolen key must not turn into a stolen password: same limits as sign-in failures."""
    identifiers = (f"addr:{request.remote_addr}", f"user:{user.name}")
    wait = ratelimit.retry_after("SOCA_AUTH_FAILURE_LIMIT", *identifiers)
    if wait is not None:
        raise ApiError(429, f"Too many failed attempts; retry in {wait} seconds",
                       headers={"Retry-After": str(wait)})
    current = resource.param("current_password")
    if not security.check_password(user.password_hash, current):
        ratelimit.count_failure("SOCA_AUTH_FAILURE_LIMIT", *identifiers)
        raise ApiError(403, "The current password is not correct")


# -- queues --------------------------------------------------------------------------------
def _queue_settings() -> tuple[dict[str, str], bool | None]:
    """(rule changes, enabled) from the parameters; an unknown parameter is an error."""
    values = _values()
    unknown = sorted(set(values) - set(QUEUE_SETTINGS))
    if unknown:
        raise ApiError(400, f"Unknown queue setting {unknown[0][:40]} (known: {', '.join(QUEUE_SETTINGS)})")
    changes = {name: value for name, value in values.items() if name in queues.RULE_FIELDS}
    enabled = values.get("enabled")
    return changes, queues.parse_bool("enabled", enabled) if enabled else None


class QueuesResource(ApiResource):
    def get(self):
        """The queues a job can be submitted to (every authenticated user).
        ---
        tags: [Queues]
        summary: List queues
        description: >
          `message` lists the enabled queues that the scheduler has (on the local scheduler,
          every enabled queue). `queues` annotates every recorded queue with `enabled` and
          `scheduler` (whether PBS/Slurm has it; null when the scheduler cannot be asked).
        responses:
          200: {description: '["normal", "high"], plus "queues": [{"name", "enabled", "scheduler"}]', schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        names, annotated = queues.queue_listing()
        return self.ok(names, queues=annotated)


class QueueResource(ApiResource):
    @audited("queue.read", read=True)
    def get(self):
        """Show a queue and its rules.
        ---
        tags: [Queues]
        summary: Show a queue with its rules (admins)
        parameters:
          - {name: name, in: query, type: string, required: true, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,14}$', maxLength: 15, description: queue name}
        responses:
          200: {description: '{"name", "enabled", "rules": {...}, "created"}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid name, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown queue, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        return self.ok(queues.describe(queues.get_queue_or_404(_target(_queue_param(self)))))

    @audited("queue.create")
    @_rules_doc
    def post(self):
        """Create a queue, optionally with rules. Rule parameters may also come in the query string.
        ---
        tags: [Queues]
        summary: Create a queue (admins)
        description: >
          On Slurm the partition must exist. On PBS with SOCA_PBS_MANAGE_QUEUES the queue is
          also created (qmgr) unless PBS has it already. Every rule is validated; a bad one is
          a 400 naming it.
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: name, in: formData, type: string, required: true, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,14}$', maxLength: 15, description: 'queue name, ^[A-Za-z][A-Za-z0-9_-]{0,14}$'}
          - {name: type, in: formData, type: string, required: false, description: accepted for SOCA compatibility and ignored}
          - {name: enabled, in: formData, type: string, required: false, description: 'true (default) or false'}
          - RULES
        responses:
          200: {description: Queue created, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: 'Missing or invalid field (named), or no such Slurm partition', schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: The queue exists, schema: {$ref: '#/definitions/Envelope'}}
          502: {description: qmgr refused (its stderr in "stderr"), schema: {$ref: '#/definitions/Envelope'}}
          503: {description: The scheduler cannot be reached, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_queue_param(self))
        changes, enabled = _queue_settings()
        queue = queues.create_queue(name, enabled=True if enabled is None else enabled, changes=changes)
        _done(f"enabled={queue.enabled} rules={queue.rules}")
        return self.ok("Queue created")

    @audited("queue.update")
    @_rules_doc
    def put(self):
        """Change a queue's rules or enable/disable it; an empty value clears a rule.
        ---
        tags: [Queues]
        summary: Change a queue's rules (admins)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: name, in: formData, type: string, required: true, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,14}$', maxLength: 15, description: queue name}
          - {name: enabled, in: formData, type: string, required: false, description: true or false}
          - RULES
        responses:
          200: {description: Queue updated, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid field (named), schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown queue, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        name = _target(_queue_param(self))
        changes, enabled = _queue_settings()
        queue = queues.update_queue(name, enabled=enabled, changes=changes)
        _done(f"enabled={queue.enabled} rules={queue.rules}")
        return self.ok("Queue updated")

    @audited("queue.delete")
    def delete(self):
        """Delete a queue (refused while it has active jobs).
        ---
        tags: [Queues]
        summary: Delete a queue (admins)
        description: On PBS with SOCA_PBS_MANAGE_QUEUES the PBS queue is deleted too (qmgr).
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: name, in: formData, type: string, required: false, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,14}$', maxLength: 15, description: queue name (form field)}
          - {name: name, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,14}$', maxLength: 15, description: queue name (query string)}
          - {name: type, in: formData, type: string, required: false, description: accepted for SOCA compatibility and ignored}
        responses:
          200: {description: Queue deleted, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid name, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown queue, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: The queue has active jobs, schema: {$ref: '#/definitions/Envelope'}}
          502: {description: qmgr refused, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        queues.delete_queue(_target(_queue_param(self)))
        _done()
        return self.ok("Queue deleted")


# -- audit log -----------------------------------------------------------------------------
class AuditResource(ApiResource):
    @audited("audit.read", read=True)
    def get(self):
        """Page through the audit log, newest first.
        ---
        tags: [Audit]
        summary: Read the audit log (admins)
        description: >
          Pass `next_before` from one page as `before` to get the next; it is null on the
          last page. `since` is inclusive, `until` exclusive; times without a zone are UTC.
        parameters:
          - {name: user, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'the actor (user name, "cli", ...)'}
          - {name: action, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^(?:[a-z0-9_.]{1,64}\\*?|\\*)$', description: 'an action (user.create) or a prefix ending in * (user.*)'}
          - {name: since, in: query, type: string, required: false, allowEmptyValue: true, maxLength: 40, description: 'ISO 8601, e.g. 2026-11-28T13:00:00Z'}
          - {name: until, in: query, type: string, required: false, allowEmptyValue: true, maxLength: 40, description: ISO 8601}
          - {name: limit, in: query, type: integer, required: false, allowEmptyValue: true, minimum: 1, maximum: 1000, description: 'events per page, 1 to 1000 (default 100)'}
          - {name: before, in: query, type: integer, required: false, allowEmptyValue: true, minimum: 1, maximum: 9223372036854775807, description: only events with a smaller id (the cursor)}
        responses:
          200: {description: '{"events": [{"id", "at", "actor", "action", "target", "success", "detail", "remote_addr"}], "next_before": id or null}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Invalid filter (named), schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not an admin, schema: {$ref: '#/definitions/Envelope'}}
        security:
          - SocaUser: []
            SocaToken: []
        """
        actor = self.param("user", required=False, pattern=_ACTOR, describe="^[A-Za-z0-9_.-]{1,64}$")
        action = self.param("action", required=False, pattern=_ACTION_FILTER,
                            describe="an action such as user.create, or a prefix ending in *")
        limit = _whole_number(self, "limit", audit.PAGE, 1, AUDIT_MAX_PAGE)
        before = _whole_number(self, "before", None, 1, 2**63 - 1)
        events, next_before = audit.audit_page(actor=actor, action=action, since=_timestamp(self, "since"),
                                         until=_timestamp(self, "until"), limit=limit, before=before)
        return self.ok({"events": [audit.event_view(e) for e in events], "next_before": next_before})


def _whole_number(resource: ApiResource, name: str, default: int | None, low: int, high: int) -> int | None:
    text = resource.param(name, required=False, pattern=_INT, describe="a whole number")
    if text is None:
        return default
    if not low <= int(text) <= high:
        raise ApiError(400, f"{name} is invalid: it must be from {low} to {high}")
    return int(text)


def _timestamp(resource: ApiResource, name: str) -> datetime | None:
    text = resource.param(name, required=False)
    if text is None:
        return None
    try:
        if len(text) > 40:
            raise ValueError(text)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} is invalid: use ISO 8601, e.g. 2026-11-28T13:00:00Z") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)  # stored as naive UTC
    return value
