"""Administration: users, groups, admin rights, passwords and queues (the audit log: api/audit.py).

Admins only, except `GET /api/scheduler/queues` (every user) and
`POST /api/user/reset_password` (every user for their own password). Parameters come from
form fields or the query string, as in SOCA. Every change is audited, and so is every
refusal: a caller without admin rights, and any failed change (bad field, conflict).

The operations themselves live in soca_api.services (accounts, groups, queues, audit),
shared with the CLI and the web pages; the services write the audit rows.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from flask import g, request

from soca_api import ratelimit, security
from soca_api.api.base import ApiResource, admin_read, audit_target, audited
from soca_api.errors import ApiError
from soca_api.models import User
from soca_api.services import accounts, audit, groups, queues
from soca_api.validation import EMAIL, GROUP_NAME, QUEUE_NAME, USER_NAME

_GID = re.compile(r"^[0-9]{1,10}$")
QUEUE_SETTINGS = ("name", "type", "enabled", *queues.RULE_FIELDS)


def _values() -> dict[str, str]:
    """Every parameter given, form fields winning over the query string."""
    return {**request.args.to_dict(), **request.form.to_dict()}


def _user_param(resource: ApiResource, name: str = "user") -> str:
    return resource.param(name, pattern=USER_NAME)


def _group_param(resource: ApiResource) -> str:
    return resource.param("group", pattern=GROUP_NAME)


def _queue_param(resource: ApiResource) -> str:
    return resource.param("name", pattern=QUEUE_NAME)


def _rules_doc(method: Callable) -> Callable:
    """Document every rule field from queues.RULE_HELP, so the doc never lags the code."""
    lines = [f"          - {{name: {name}, in: formData, type: string, required: false, "
             f"description: '{queues.RULE_HELP[name].replace(chr(39), chr(39) * 2)}'}}"
             for name in queues.RULE_FIELDS]
    method.__doc__ = (method.__doc__ or "").replace("          - RULES\n", "\n".join(lines) + "\n")
    return method


# -- users ---------------------------------------------------------------------------------
class UserResource(ApiResource):
    @admin_read(audit.USER_READ)
    def get(self):
        """Show one user.
        ---
        tags: [Users]
        summary: Show a user (admins)
        parameters:
          - {name: user, in: query, x-rule: user_name, required: true, description: user name}
        responses:
          200: {description: '{"name", "email", "admin", "active", "groups", "created"}'}
          400: {description: Missing or invalid user}
          404: {description: Unknown user}
        """
        return self.ok(accounts.user_view(accounts.get_user_or_404(_user_param(self))))

    @audited(audit.USER_CREATE)
    def post(self):
        """Create a user with a password and an API key (the user fetches the key with the password).
        ---
        tags: [Users]
        summary: Create a user (admins)
        parameters:
          - {name: user, in: formData, x-rule: user_name, required: true, description: user name}
          - {name: password, in: formData, type: string, required: true, description: 'at least 10 characters, two kinds of characters, not containing the user name'}
          - {name: email, in: formData, x-rule: email, required: true, description: e-mail address}
          - {name: sudoers, in: formData, type: string, required: false, description: 'true to make the user an admin (default false)'}
        responses:
          200: {description: Added user}
          400: {description: Missing or invalid field (named in the message)}
          409: {description: The user exists}
        """
        name = audit_target(_user_param(self))
        password = self.param("password")
        email = self.param("email", pattern=EMAIL, describe="a valid e-mail address")
        sudoers = self.param("sudoers", required=False)
        is_admin = queues.parse_bool("sudoers", sudoers) if sudoers is not None else False
        accounts.create_user(name, password=password, email=email, is_admin=is_admin, actor=self.actor)
        return self.ok("Added user")

    @audited(audit.USER_DELETE)
    def delete(self):
        """Delete a user: every key revoked, every session ended, the job history kept.
        ---
        tags: [Users]
        summary: Delete a user (admins; not yourself)
        parameters:
          - {name: user, in: formData, x-rule: user_name, required: false, description: user name (form field)}
          - {name: user, in: query, x-rule: user_name, required: false, allowEmptyValue: true, description: user name (query string)}
        responses:
          200: {description: Deleted user.}
          400: {description: Missing or invalid user}
          403: {description: 'Not an admin, or the caller''s own user'}
          404: {description: Unknown user}
        """
        accounts.delete_user(audit_target(_user_param(self)), actor=self.actor)
        return self.ok("Deleted user.")


class UsersResource(ApiResource):
    @admin_read(audit.USER_LIST)
    def get(self):
        """Every user (admins only, unlike SOCA: the list is nobody else's business).
        ---
        tags: [Users]
        summary: List users (admins)
        responses:
          200: {description: '{name: {"name", "email", "admin", "active", "groups", "created"}}'}
        """
        return self.ok({user.name: accounts.user_view(user) for user in accounts.list_users()})


# -- groups --------------------------------------------------------------------------------
class GroupResource(ApiResource):
    @admin_read(audit.GROUP_READ)
    def get(self):
        """Show one group.
        ---
        tags: [Groups]
        summary: Show a group and its members (admins)
        parameters:
          - {name: group, in: query, x-rule: group_name, required: true, description: group name}
        responses:
          200: {description: '{"name", "gid", "members"}'}
          400: {description: Missing or invalid group}
          404: {description: Unknown group}
        """
        group = groups.get_group_or_404(_group_param(self))
        return self.ok({"name": group.name, **groups.group_view(group)})

    @audited(audit.GROUP_CREATE)
    def post(self):
        """Create a group, optionally with a gid and members.
        ---
        tags: [Groups]
        summary: Create a group (admins)
        parameters:
          - {name: group, in: formData, x-rule: group_name, required: true, description: group name}
          - {name: gid, in: formData, x-rule: gid, required: false, description: 'POSIX gid, unique'}
          - {name: members, in: formData, type: string, required: false, description: comma-separated user names}
        responses:
          200: {description: Group created}
          400: {description: Missing or invalid field}
          404: {description: A member does not exist}
          409: {description: The group or the gid exists}
        """
        name = audit_target(_group_param(self))
        gid = self.param("gid", required=False, pattern=_GID, describe="a whole number")
        groups.create_group(name, gid=gid, members=self.param("members", required=False), actor=self.actor)
        return self.ok("Group created")

    @audited(audit.GROUP_UPDATE)
    def put(self):
        """Add a user to a group or remove one.
        ---
        tags: [Groups]
        summary: Change a group's members (admins)
        parameters:
          - {name: group, in: formData, x-rule: group_name, required: true, description: group name}
          - {name: user, in: formData, x-rule: user_name, required: true, description: user name}
          - {name: action, in: formData, type: string, enum: [add, remove], required: true, description: add or remove}
        responses:
          200: {description: 'User added to group / User removed from group'}
          400: {description: Missing or invalid field}
          404: {description: Unknown group or user}
        """
        name = audit_target(_group_param(self))
        user_name = _user_param(self)
        add = self.param("action", pattern=re.compile(r"^(add|remove)$"), describe="add or remove") == "add"
        changed = groups.set_membership(name, user_name, add, actor=self.actor)
        if add:
            return self.ok(f"User {user_name} added to group {name}" if changed
                           else f"User {user_name} is already in group {name}")
        return self.ok(f"User {user_name} removed from group {name}" if changed
                       else f"User {user_name} is not in group {name}")

    @audited(audit.GROUP_DELETE)
    def delete(self):
        """Delete a group (refused while a queue rule names it).
        ---
        tags: [Groups]
        summary: Delete a group (admins)
        parameters:
          - {name: group, in: formData, x-rule: group_name, required: false, description: group name (form field)}
          - {name: group, in: query, x-rule: group_name, required: false, allowEmptyValue: true, description: group name (query string)}
        responses:
          200: {description: Group deleted}
          400: {description: Missing or invalid group}
          404: {description: Unknown group}
          409: {description: A queue rule names the group}
        """
        groups.delete_group(audit_target(_group_param(self)), actor=self.actor)
        return self.ok("Group deleted")


class GroupsResource(ApiResource):
    @admin_read(audit.GROUP_LIST)
    def get(self):
        """Every group with its gid and members (admins only, unlike SOCA).
        ---
        tags: [Groups]
        summary: List groups (admins)
        responses:
          200: {description: '{group: {"members": [...], "gid": ...}}'}
        """
        return self.ok({group.name: groups.group_view(group) for group in groups.list_groups()})


# -- admin rights --------------------------------------------------------------------------
class SudoResource(ApiResource):
    @admin_read(audit.USER_ADMIN_READ)
    def get(self):
        """Whether a user has admin rights.
        ---
        tags: [Users]
        summary: Is a user an admin? (admins)
        parameters:
          - {name: user, in: query, x-rule: user_name, required: true, description: user name}
        responses:
          200: {description: '{"user": name, "admin": bool}'}
          400: {description: Missing or invalid user}
          404: {description: Unknown user}
        """
        user = accounts.get_user_or_404(_user_param(self))
        return self.ok({"user": user.name, "admin": user.is_admin})

    @audited(audit.USER_GRANT_ADMIN)
    def post(self):
        """Grant admin rights; they apply from the user's very next request.
        ---
        tags: [Users]
        summary: Grant admin rights (admins)
        parameters:
          - {name: user, in: formData, x-rule: user_name, required: true, description: user name}
        responses:
          200: {description: User is now an admin}
          400: {description: Missing or invalid user}
          404: {description: Unknown user}
        """
        name = audit_target(_user_param(self))
        changed = accounts.grant_admin(name, actor=self.actor)
        return self.ok(f"User {name} is now an admin" if changed else f"User {name} is already an admin")

    @audited(audit.USER_REVOKE_ADMIN)
    def delete(self):
        """Revoke admin rights (never those of the last admin); effective on the next request.
        ---
        tags: [Users]
        summary: Revoke admin rights (admins)
        parameters:
          - {name: user, in: formData, x-rule: user_name, required: false, description: user name (form field)}
          - {name: user, in: query, x-rule: user_name, required: false, allowEmptyValue: true, description: user name (query string)}
        responses:
          200: {description: User is no longer an admin}
          400: {description: Missing or invalid user}
          404: {description: Unknown user}
          409: {description: The last admin}
        """
        name = audit_target(_user_param(self))
        changed = accounts.revoke_admin(name, actor=self.actor)
        return self.ok(f"User {name} is no longer an admin" if changed else f"User {name} is not an admin")


# -- passwords -----------------------------------------------------------------------------
class ResetPasswordResource(ApiResource):
    @audited(audit.USER_PASSWORD_RESET, admin=False)
    def post(self):
        """Set a password: admins for anyone, users for themselves with their current password.
        ---
        tags: [Users]
        summary: Change a password (admin, or self with the current password)
        description: Every web session of the user ends; API keys stay valid.
        parameters:
          - {name: user, in: formData, x-rule: user_name, required: true, description: user name}
          - {name: password, in: formData, type: string, required: true, description: 'the new password: at least 10 characters, two kinds of characters, not containing the user name'}
          - {name: current_password, in: formData, type: string, required: false, description: 'the current password (required unless the caller is an admin)'}
        responses:
          200: {description: Password updated correctly.}
          400: {description: Missing field or weak password}
          403: {description: 'Another user''s password, or wrong current password'}
          404: {description: Unknown user}
          429: {description: Too many wrong current passwords}
        """
        name = audit_target(_user_param(self))
        caller = g.user
        if name != caller.name and not caller.is_admin:
            raise ApiError(403, "You can only change your own password")
        password = self.param("password")
        user = accounts.get_user_or_404(name)
        if not caller.is_admin:
            _check_current_password(self, user)
        accounts.set_password(name, password, actor=self.actor)
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
          200: {description: '["normal", "high"], plus "queues": [{"name", "enabled", "scheduler"}]'}
        """
        names, annotated = queues.queue_listing()
        return self.ok(names, queues=annotated)


class QueueResource(ApiResource):
    @admin_read(audit.QUEUE_READ)
    def get(self):
        """Show a queue and its rules.
        ---
        tags: [Queues]
        summary: Show a queue with its rules (admins)
        parameters:
          - {name: name, in: query, x-rule: queue_name, required: true, description: queue name}
        responses:
          200: {description: '{"name", "enabled", "rules": {...}, "created"}'}
          400: {description: Missing or invalid name}
          404: {description: Unknown queue}
        """
        return self.ok(queues.describe(queues.get_queue_or_404(_queue_param(self))))

    @audited(audit.QUEUE_CREATE)
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
        parameters:
          - {name: name, in: formData, x-rule: queue_name, required: true, description: queue name}
          - {name: type, in: formData, type: string, required: false, description: accepted for SOCA compatibility and ignored}
          - {name: enabled, in: formData, type: string, required: false, description: 'true (default) or false'}
          - RULES
        responses:
          200: {description: Queue created}
          400: {description: 'Missing or invalid field (named), or no such Slurm partition'}
          409: {description: The queue exists}
          502: {description: qmgr refused (its stderr in "stderr")}
          503: {description: The scheduler cannot be reached}
        """
        name = audit_target(_queue_param(self))
        changes, enabled = _queue_settings()
        queues.create_queue(name, enabled=True if enabled is None else enabled, changes=changes, actor=self.actor)
        return self.ok("Queue created")

    @audited(audit.QUEUE_UPDATE)
    @_rules_doc
    def put(self):
        """Change a queue's rules or enable/disable it; an empty value clears a rule.
        ---
        tags: [Queues]
        summary: Change a queue's rules (admins)
        parameters:
          - {name: name, in: formData, x-rule: queue_name, required: true, description: queue name}
          - {name: enabled, in: formData, type: string, required: false, description: true or false}
          - RULES
        responses:
          200: {description: Queue updated}
          400: {description: Missing or invalid field (named)}
          404: {description: Unknown queue}
        """
        name = audit_target(_queue_param(self))
        changes, enabled = _queue_settings()
        queues.update_queue(name, enabled=enabled, changes=changes, actor=self.actor)
        return self.ok("Queue updated")

    @audited(audit.QUEUE_DELETE)
    def delete(self):
        """Delete a queue (refused while it has active jobs).
        ---
        tags: [Queues]
        summary: Delete a queue (admins)
        description: On PBS with SOCA_PBS_MANAGE_QUEUES the PBS queue is deleted too (qmgr).
        parameters:
          - {name: name, in: formData, x-rule: queue_name, required: false, description: queue name (form field)}
          - {name: name, in: query, x-rule: queue_name, required: false, allowEmptyValue: true, description: queue name (query string)}
          - {name: type, in: formData, type: string, required: false, description: accepted for SOCA compatibility and ignored}
        responses:
          200: {description: Queue deleted}
          400: {description: Missing or invalid name}
          404: {description: Unknown queue}
          409: {description: The queue has active jobs}
          502: {description: qmgr refused}
        """
        queues.delete_queue(audit_target(_queue_param(self)), actor=self.actor)
        return self.ok("Queue deleted")
