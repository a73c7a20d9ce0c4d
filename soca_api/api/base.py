"""The base of every API resource: authentication, parameters, auditing, the envelope.

Resources stay thin: they read parameters, call a service (which writes the audit rows
of its changes, given `actor=self.actor`), and answer in the envelope.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any, Literal, overload

from flask import g, request
from flask_restful import Api, Resource

from soca_api import ratelimit
from soca_api.errors import ApiError, envelope, error_response, missing_parameter
from soca_api.services import accounts, audit
from soca_api.validation import COUNT_MAX, WHOLE_NUMBER

USER_HEADER = "X-SOCA-USER"
TOKEN_HEADER = "X-SOCA-TOKEN"
PASSWORD_HEADER = "X-SOCA-PASSWORD"
ADMIN_ONLY = "This action requires admin rights"
# What an admin-only operation documents about its refusal: flasgger merges a method's
# `specs_dict` under its docstring, so a docstring that words its own 403 wins.
_ADMIN_ONLY_SPEC = {"responses": {403: {"description": "Not an admin"}}}


class EnvelopeApi(Api):
    """Flask-RESTful, with every error in the SOCA envelope."""

    def handle_error(self, e):  # noqa: N802 - Flask-RESTful's name
        if not isinstance(e, ApiError) and getattr(e, "code", None) is None:
            # Unexpected: log with the trace, answer without it.
            from flask import current_app

            current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(e)


def _refuse(message: str, name: str | None) -> ApiError:
    ratelimit.count_failure("SOCA_AUTH_FAILURE_LIMIT", *ratelimit.identifiers(name))
    audit.record("auth.failure", actor=name, success=False, detail=message)
    return ApiError(401, message)


def authenticate(allow_password: bool = False, *, defer_check: bool = False):
    """Set g.user from the X-SOCA-* headers or raise 401/429.

    A key this worker verified moments ago costs one query (services.accounts.VerifiedKeys),
    or none with `defer_check`: the call's own read then confirms it (Caller.check);
    anything else is first checked against the failure counts of its address and of its
    (address, user) pair.
    """
    name = request.headers.get(USER_HEADER, "").strip()
    token = request.headers.get(TOKEN_HEADER, "")
    if token and name:
        caller = accounts.recently_verified(name, token, defer=defer_check)
        if caller is not None:
            g.user = caller
            return caller
    password = request.headers.get(PASSWORD_HEADER, "") if allow_password else ""
    wait = ratelimit.retry_after("SOCA_AUTH_FAILURE_LIMIT", *ratelimit.identifiers(name))
    if wait is not None:
        raise ApiError(429, f"Too many failed authentications; retry in {wait} seconds",
                       headers={"Retry-After": str(wait)})
    if not name:
        raise _refuse(f"Missing {USER_HEADER} header", None)
    if not token and not password:
        wanted = f"{TOKEN_HEADER} or {PASSWORD_HEADER}" if allow_password else TOKEN_HEADER
        raise _refuse(f"Missing {wanted} header", name)
    if token:
        caller = accounts.authenticate_key(name, token)
    else:
        user = accounts.authenticate_password(name, password)
        caller = accounts.Caller.of(user) if user is not None else None
    if caller is None:
        # Never say which of the two was wrong.
        credential = "key" if token else "password"
        raise _refuse(f"Invalid user and {credential} pair", name)
    g.user = caller
    return caller


def require_auth(method):
    """Flask-RESTful applies method_decorators to the bound method.

    A GET of a resource that `folds_caller_check` reads its row and confirms a recently
    verified key in one query. Whatever the read did, the check is confirmed before any
    answer (an error included) leaves; if the caller changed meanwhile (a revoked key, a
    deleted user, other admin rights), the call starts again, fully authenticated.
    """

    @wraps(method)
    def wrapper(*args, **kwargs):
        resource = method.__self__
        allow_password = getattr(resource, "allow_password", False)
        deferred = request.method == "GET" and getattr(resource, "folds_caller_check", False)
        caller = authenticate(allow_password=allow_password, defer_check=deferred)
        if getattr(caller, "check", None) is None:
            return method(*args, **kwargs)
        try:
            try:
                return method(*args, **kwargs)
            finally:
                accounts.confirm(caller)
        except accounts.CallerChanged:
            authenticate(allow_password=allow_password)  # 401 for a revoked key
            return method(*args, **kwargs)

    return wrapper


class ApiResource(Resource):
    """Every authenticated resource derives from this."""

    method_decorators = [require_auth]
    allow_password = False
    # GET confirms a recently verified key in the query that reads its answer (require_auth).
    folds_caller_check = False

    @property
    def user(self):
        return g.user

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(g.user.name)

    def require_admin(self) -> None:
        if not g.user.is_admin:
            raise ApiError(403, ADMIN_ONLY)

    # A required parameter is never None (a missing one raises 400): say so to callers.
    @overload
    @staticmethod
    def param(name: str, *, required: Literal[True] = True, pattern: re.Pattern[str] | None = None,
              describe: str | None = None, default: str | None = None) -> str: ...

    @overload
    @staticmethod
    def param(name: str, *, required: bool, pattern: re.Pattern[str] | None = None,
              describe: str | None = None, default: str | None = None) -> str | None: ...

    @staticmethod
    def param(name: str, *, required: bool = True, pattern: re.Pattern[str] | None = None,
              describe: str | None = None, default: str | None = None) -> str | None:
        """A parameter from the form or the query string (SOCA takes both), validated."""
        value = request.form.get(name)
        if value is None:
            value = request.args.get(name)
        if value is None or value == "":
            if required:
                raise missing_parameter(name)
            return default
        if pattern is not None and not pattern.fullmatch(value):
            raise ApiError(400, f"{name} is invalid: it must match {describe or pattern.pattern}")
        return value

    @classmethod
    def whole_number(cls, name: str, default: int | None, low: int = 0, high: int = COUNT_MAX) -> int | None:
        """A whole number from `low` to `high`, as the spec states: out of range is a 400,
        never clamped."""
        text = cls.param(name, required=False, pattern=WHOLE_NUMBER, describe="a whole number")
        if text is None:
            return default
        if not low <= int(text) <= high:
            raise ApiError(400, f"{name} is invalid: it must be from {low} to {high}")
        return int(text)

    @staticmethod
    def ok(message: object, status: int = 200, **extra: object):
        return envelope(True, message, status, **extra)


# -- admin resources: who may act, and the audit of a refusal ------------------------------
def _refuse_non_admin(action: str) -> None:
    if not g.user.is_admin:
        audit.record(action, actor=g.user.name, success=False,
                     detail=f"refused: {request.method} {request.path} requires admin rights")
        raise ApiError(403, ADMIN_ONLY)


def admin_read(action: str) -> Callable:
    """A lookup for admins: a refusal is audited (and documented, 403); a mistyped name is
    not audited (it would flood the log)."""

    def decorate(method: Callable) -> Callable:
        @wraps(method)
        def wrapper(self: ApiResource, *args: Any, **kwargs: Any):
            _refuse_non_admin(action)
            return method(self, *args, **kwargs)

        wrapper.specs_dict = _ADMIN_ONLY_SPEC  # type: ignore[attr-defined]
        return wrapper

    return decorate


def audited(action: str, *, admin: bool = True) -> Callable:
    """A change: its refusal (when `admin` and the caller is not one; documented, 403), its
    success and its failure are audited, a bad parameter included. The service the method
    calls records into this same change (audit.change joins it); `audit_target` names what
    is changed as soon as it is known."""

    def decorate(method: Callable) -> Callable:
        @wraps(method)
        def wrapper(self: ApiResource, *args: Any, **kwargs: Any):
            if admin:
                _refuse_non_admin(action)
            with audit.change(action, self.actor) as change:
                g.audit_change = change
                return method(self, *args, **kwargs)

        if admin:
            wrapper.specs_dict = _ADMIN_ONLY_SPEC  # type: ignore[attr-defined]
        return wrapper

    return decorate


def audit_target(name: str) -> str:
    """Name what the change of an `audited` method acts on, as soon as it is known."""
    g.audit_change.target = name
    return name
