"""Web sessions: sign in with a password, sign out, and the checks every page makes.

The session (Flask's signed cookie: HttpOnly, SameSite=Lax, Secure under HTTPS, see
config.py) holds the user id, the user's `session_epoch` at sign-in, a random nonce and
the sign-in time. Every request reloads the user and ends the session when the user is
gone, disabled, or its epoch moved on (a password reset or a deletion bumps it), or when
the session is older than SOCA_WEB_SESSION_SECONDS (12 hours by default).

Sign-in clears the session before filling it, so nothing a visitor had before (a CSRF
token, a planted value) survives, and the cookie's content and nonce are new. Failed
sign-ins are counted per address and per user name (SOCA_LOGIN_LIMIT) and audited.
"""
from __future__ import annotations

import secrets
import time
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from soca_api import ratelimit
from soca_api.extensions import db
from soca_api.models import User
from soca_api.services import accounts, audit
from soca_api.web.forms import ConfirmForm, LoginForm
from soca_api.web.site import blueprint

SESSION_KEYS = ("uid", "epoch", "nonce", "at")


# -- the signed-in user --------------------------------------------------------------------
def current_user() -> User | None:
    return g.get("web_user")


def signed_in_user() -> User:
    """The user of a view behind `login_required`, which sends anyone else away first."""
    user = current_user()
    if user is None:
        raise RuntimeError("signed_in_user() is for views behind login_required")
    return user


@blueprint.before_request
def _load_user() -> None:
    """Reload the session's user on every request and end stale sessions."""
    g.web_user = None
    uid = session.get("uid")
    if uid is None:
        return
    from flask import current_app

    max_age = int(current_app.config["SOCA_WEB_SESSION_SECONDS"])
    user = db.session.get(User, uid) if isinstance(uid, int) else None
    fresh = isinstance(session.get("at"), (int, float)) and time.time() - session["at"] < max_age
    if (user is None or user.deleted_at is not None or not user.is_active
            or session.get("epoch") != user.session_epoch or not fresh):
        session.clear()
        g.session_ended = True
        return
    g.web_user = user


def sign_in(user: User) -> None:
    session.clear()
    session["uid"] = user.id
    session["epoch"] = user.session_epoch
    session["nonce"] = secrets.token_urlsafe(16)
    session["at"] = int(time.time())


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path on this site, else None (no open redirect).

    A local path starts with one "/" (not "//", not "/\\", which browsers read as "//"),
    has no scheme or host, and no control characters.
    """
    if not target or len(target) > 2000 or not target.startswith("/"):
        return None
    if target.startswith(("//", "/\\")) or "\\" in target:
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _here() -> str:
    return request.full_path.rstrip("?") if request.query_string else request.path


def login_required(view=None, *, json: bool = False):
    """Pages send a visitor without a session to the sign-in page; JSON views answer 401."""
    if view is None:
        return lambda inner: login_required(inner, json=json)

    @wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            if json:
                return jsonify({"success": False, "message": "Your session ended: sign in again"}), 401
            if g.get("session_ended"):
                flash("Your session ended. Please sign in again.", "info")
            return redirect(url_for("web.login", next=_here()))
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    @login_required
    @wraps(view)
    def wrapper(*args, **kwargs):
        user = current_user()
        if not user.is_admin:
            audit.record("web.forbidden", actor=user.name, target=request.path[:128], success=False,
                         detail=f"refused: {request.method} {request.path[:200]} requires admin rights")
            abort(403, "This page is for administrators.")
        return view(*args, **kwargs)

    return wrapper


@blueprint.context_processor
def _template_globals() -> dict[str, object]:
    return {"current_user": g.get("web_user"), "signout_form": ConfirmForm}


# -- sign in / sign out --------------------------------------------------------------------
@blueprint.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        if current_user() is not None:
            return redirect(safe_next(form.next.data) or url_for("web.my_jobs"))
        return render_template("web/login.html", form=form)

    name = (form.name.data or "").strip()
    wait = ratelimit.retry_after("SOCA_LOGIN_LIMIT", *ratelimit.identifiers(name))
    if wait is not None:
        audit.record("web.login", actor=name[:64] or None, success=False, detail="refused: too many failures")
        response = render_template("web/login.html", form=form,
                                   error=f"Too many failed sign-ins. Try again in {wait} seconds.")
        return response, 429, {"Retry-After": str(wait)}
    user = accounts.authenticate_password(name, form.password.data or "") if form.validate_on_submit() else None
    if user is None:
        ratelimit.count_failure("SOCA_LOGIN_LIMIT", *ratelimit.identifiers(name))
        audit.record("web.login", actor=name[:64] or None, success=False, detail="invalid user name or password")
        return render_template("web/login.html", form=form, error="Invalid user name or password."), 401
    target = safe_next(form.next.data) or url_for("web.my_jobs")
    sign_in(user)
    audit.record("web.login", actor=user.name, target=user.name)
    return redirect(target)


@blueprint.post("/logout")
def logout():
    form = ConfirmForm()
    user = current_user()
    if form.validate_on_submit() and user is not None:
        audit.record("web.logout", actor=user.name, target=user.name)
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("web.login"))


@blueprint.get("/")
def index():
    return redirect(url_for("web.my_jobs") if current_user() else url_for("web.login"))
