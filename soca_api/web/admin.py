"""Administration pages: Users, Groups, Queues and the Audit log (admins only).

The operations are those of the admin API and CLI: `soca_api.services` (accounts, groups,
queues, the audit log). Every change is a POST with a CSRF token; the services audit every
change and failed change, with the actor "via" the web (details "web" or "web: ...").
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import abort, flash, redirect, render_template, request, url_for

from soca_api.errors import ApiError
from soca_api.pbs import script as pbs_script
from soca_api.services import accounts, audit, groups, queues
from soca_api.validation import AUDIT_ACTION, AUDIT_ACTOR
from soca_api.web.auth import admin_required, signed_in_user
from soca_api.web.forms import (
    AdminRightsForm,
    ConfirmForm,
    GroupCreateForm,
    MembershipForm,
    PasswordForm,
    QueueCreateForm,
    QueueEditForm,
    UserCreateForm,
)
from soca_api.web.site import blueprint

AUDIT_PAGE = 50


def _actor() -> audit.Actor:
    return audit.Actor(signed_in_user().name, via="web")


def _act(change: Callable[[audit.Actor], object], success: str, refused: str | None = None) -> bool:
    """Run one change (the service audits it) and flash its outcome: `success`, or the
    refusal's message (`refused` when the page words it its own way)."""
    try:
        change(_actor())
    except ApiError as exc:
        flash(refused or exc.message, "error")
        return False
    flash(success, "success")
    return True


def _form_problems(form) -> str:
    return "; ".join(f"{form[name].label.text}: {', '.join(problems)}" for name, problems in form.errors.items()
                     if name != "csrf_token") or "The form is incomplete."


def _checked(form) -> bool:
    """CSRF is checked for every POST by CSRFProtect; this checks the fields."""
    if form.validate_on_submit():
        return True
    flash(_form_problems(form), "error")
    return False


def _required(data: str | None) -> str:
    """A field with DataRequired() of a form `_checked` accepted: it holds text."""
    if data is None:
        raise ValueError("a required form field arrived empty after validation")
    return data


# -- users ---------------------------------------------------------------------------------
@blueprint.get("/admin/users")
@admin_required
def admin_users(create_form: UserCreateForm | None = None, status: int = 200):
    return render_template("web/admin_users.html", users=accounts.list_users(), form=create_form or UserCreateForm(),
                           action_form=ConfirmForm(), me=signed_in_user()), status


@blueprint.post("/admin/users")
@admin_required
def admin_user_create():
    form = UserCreateForm()
    if not form.validate_on_submit():
        flash(_form_problems(form), "error")
        return admin_users(form, 400)
    name = form.name.data.strip()
    created = _act(lambda actor: accounts.create_user(name, password=form.password.data, email=form.email.data.strip(),
                                                      is_admin=form.is_admin.data, actor=actor),
                   f"User {name} created. They sign in with their password and find their API key on My API Key.")
    if not created:
        return admin_users(form, 400)
    return redirect(url_for("web.admin_users"))


def _target_user(name: str):
    try:
        return accounts.get_user_or_404(name)
    except ApiError as exc:
        abort(exc.status, exc.message)


@blueprint.post("/admin/users/<name>/admin")
@admin_required
def admin_user_rights(name: str):
    form = AdminRightsForm()
    if _checked(form):
        user = _target_user(name)
        grant = form.change.data == "grant"
        change = accounts.grant_admin if grant else accounts.revoke_admin
        _act(lambda actor: change(user.name, actor=actor),
             f"{user.name} {'is now an admin' if grant else 'is no longer an admin'}.")
        if not signed_in_user().is_admin:  # an admin who gave up their own rights
            return redirect(url_for("web.my_jobs"))
    return redirect(url_for("web.admin_users"))


@blueprint.post("/admin/users/<name>/password")
@admin_required
def admin_user_password(name: str):
    form = PasswordForm()
    if _checked(form):
        user = _target_user(name)
        password = _required(form.password.data)
        _act(lambda actor: accounts.set_password(user.name, password, actor=actor),
             f"Password of {user.name} changed; their web sessions have ended.")
    return redirect(url_for("web.admin_users"))


@blueprint.post("/admin/users/<name>/key")
@admin_required
def admin_user_key(name: str):
    if _checked(ConfirmForm()):
        user = _target_user(name)
        _act(lambda actor: accounts.reset_key(user, actor=actor),
             f"New API key issued for {user.name}; the old one no longer works. "
             "They find the new one on My API Key.")
    return redirect(url_for("web.admin_users"))


@blueprint.post("/admin/users/<name>/delete")
@admin_required
def admin_user_delete(name: str):
    if _checked(ConfirmForm()):
        user = _target_user(name)
        _act(lambda actor: accounts.delete_user(user.name, actor=actor),
             f"User {user.name} deleted: keys revoked, sessions ended, job history kept.",
             refused="You cannot delete your own user." if user.id == signed_in_user().id else None)
    return redirect(url_for("web.admin_users"))


# -- groups --------------------------------------------------------------------------------
@blueprint.get("/admin/groups")
@admin_required
def admin_groups(create_form: GroupCreateForm | None = None, status: int = 200):
    rows = [(group, groups.group_view(group)) for group in groups.list_groups()]
    return render_template("web/admin_groups.html", groups=rows, form=create_form or GroupCreateForm(),
                           action_form=ConfirmForm(), user_names=[u.name for u in accounts.list_users()]), status


@blueprint.post("/admin/groups")
@admin_required
def admin_group_create():
    form = GroupCreateForm()
    if not form.validate_on_submit():
        flash(_form_problems(form), "error")
        return admin_groups(form, 400)
    name = form.name.data.strip()
    gid, members = (form.gid.data or "").strip(), (form.members.data or "").strip()
    if not _act(lambda actor: groups.create_group(name, gid=gid, members=members, actor=actor),
                f"Group {name} created."):
        return admin_groups(form, 400)
    return redirect(url_for("web.admin_groups"))


@blueprint.post("/admin/groups/<name>/members")
@admin_required
def admin_group_members(name: str):
    form = MembershipForm()
    if _checked(form):
        user_name = _required(form.user.data).strip()
        add = form.action.data == "add"
        _act(lambda actor: groups.set_membership(name, user_name, add, actor=actor),
             f"{user_name} {'added to' if add else 'removed from'} group {name}.")
    return redirect(url_for("web.admin_groups"))


@blueprint.post("/admin/groups/<name>/delete")
@admin_required
def admin_group_delete(name: str):
    if _checked(ConfirmForm()):
        _act(lambda actor: groups.delete_group(name, actor=actor), f"Group {name} deleted.")
    return redirect(url_for("web.admin_groups"))


# -- queues --------------------------------------------------------------------------------
def rules_as_text(stored: dict | None) -> dict[str, str]:
    """Each rule as an admin types it in the form ("" when unset)."""
    rules = queues.Rules.from_json(stored)
    text = {}
    for name in queues.RULE_FIELDS:
        value = getattr(rules, name)
        if value in (None, [], {}):
            text[name] = ""
        elif name == "max_walltime":
            text[name] = pbs_script.format_walltime(value)
        elif isinstance(value, list):
            text[name] = ", ".join(value)
        elif isinstance(value, dict):
            text[name] = ",".join(f"{key}={item}" for key, item in value.items())
        else:
            text[name] = str(value)
    return text


def _rule_changes(form, *, keep_empty: bool) -> dict[str, str]:
    changes = {}
    for name in queues.RULE_FIELDS:
        value = (form[name].data or "").strip()
        if value or keep_empty:
            changes[name] = value  # an empty value clears the rule
    return changes


@blueprint.get("/admin/queues")
@admin_required
def admin_queues(create_form=None, status: int = 200):
    _names, annotated = queues.queue_listing()
    on_scheduler = {entry["name"]: entry["scheduler"] for entry in annotated}
    rows = [(queue, rules_as_text(queue.rules), on_scheduler.get(queue.name)) for queue in queues.list_queues()]
    return render_template("web/admin_queues.html", rows=rows, form=create_form or QueueCreateForm(),
                           action_form=ConfirmForm(), rule_fields=queues.RULE_FIELDS,
                           rule_help=queues.RULE_HELP), status


@blueprint.post("/admin/queues")
@admin_required
def admin_queue_create():
    form = QueueCreateForm()
    if not form.validate_on_submit():
        flash(_form_problems(form), "error")
        return admin_queues(form, 400)
    name = form.name.data.strip()
    if not _act(lambda actor: queues.create_queue(name, enabled=form.enabled.data,
                                                  changes=_rule_changes(form, keep_empty=False), actor=actor),
                f"Queue {name} created."):
        return admin_queues(form, 400)
    return redirect(url_for("web.admin_queues"))


@blueprint.route("/admin/queues/<name>", methods=["GET", "POST"])
@admin_required
def admin_queue_edit(name: str):
    try:
        queue = queues.get_queue_or_404(name)
    except ApiError as exc:
        abort(exc.status, exc.message)
    form = QueueEditForm()
    status = 200
    if request.method == "GET":
        form.enabled.data = queue.enabled
        for field_name, value in rules_as_text(queue.rules).items():
            form[field_name].data = value
    elif not form.validate_on_submit():
        flash(_form_problems(form), "error")
        status = 400
    elif _act(lambda actor: queues.update_queue(queue.name, enabled=form.enabled.data,
                                                changes=_rule_changes(form, keep_empty=True), actor=actor),
              f"Queue {queue.name} updated."):
        return redirect(url_for("web.admin_queues"))
    else:
        status = 400
    return render_template("web/admin_queue_edit.html", queue=queue, form=form, rule_fields=queues.RULE_FIELDS,
                           rule_help=queues.RULE_HELP), status


@blueprint.post("/admin/queues/<name>/delete")
@admin_required
def admin_queue_delete(name: str):
    if _checked(ConfirmForm()):
        _act(lambda actor: queues.delete_queue(name, actor=actor), f"Queue {name} deleted.")
    return redirect(url_for("web.admin_queues"))


# -- audit log -----------------------------------------------------------------------------
def _moment(text: str) -> datetime | None:
    """A `datetime-local` value or ISO 8601; without a zone it is UTC, as stored."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@blueprint.get("/admin/audit")
@admin_required
def admin_audit():
    args = request.args
    filters = {name: args.get(name, "").strip() for name in ("user", "action", "since", "until")}
    problems = []
    actor = filters["user"] or None
    if actor and not AUDIT_ACTOR.fullmatch(actor):
        problems.append("User: letters, digits, _ . - only")
        actor = None
    action = filters["action"] or None
    if action and not AUDIT_ACTION.fullmatch(action):
        problems.append("Action: an action such as user.create, or a prefix ending in *")
        action = None
    moments = {}
    for name in ("since", "until"):
        moments[name] = None
        if filters[name]:
            try:
                moments[name] = _moment(filters[name][:40])
            except ValueError:
                problems.append(f"{name.title()}: use a date and time such as 2026-11-28T13:00")
    before_text = args.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    events, next_before = audit.audit_page(actor=actor, action=action, since=moments["since"],
                                         until=moments["until"], limit=AUDIT_PAGE, before=before)
    query = {name: value for name, value in filters.items() if value}
    return render_template("web/admin_audit.html", events=events, next_before=next_before, before=before,
                           filters=filters, problems=problems, query=query), (400 if problems else 200)
