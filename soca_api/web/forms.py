"""Flask-WTF forms: each one carries and checks a CSRF token.

Validation here is only about the shape of a field (present, short enough); what a value
means (a valid user name, a strong password, a queue rule) is judged by the services,
whose messages are shown as they are.
"""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from soca_api.services.queues import RULE_FIELDS


class ConfirmForm(FlaskForm):
    """A button that changes something: sign out, delete, regenerate (CSRF token only)."""


class LoginForm(FlaskForm):
    name = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    next = HiddenField()


class SubmitForm(FlaskForm):
    script = TextAreaField("Job script", validators=[Optional()])
    upload = FileField("Or upload a script file")
    queue = SelectField("Queue", validate_choice=True)


class UserCreateForm(FlaskForm):
    name = StringField("User name", validators=[DataRequired(), Length(max=32)])
    email = StringField("E-mail", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    is_admin = BooleanField("Admin rights")


class PasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])


class AdminRightsForm(FlaskForm):
    change = HiddenField(validators=[AnyOf(["grant", "revoke"])])


class GroupCreateForm(FlaskForm):
    name = StringField("Group name", validators=[DataRequired(), Length(max=32)])
    gid = StringField("GID", validators=[Optional(), Length(max=10)])
    members = StringField("Members", validators=[Optional(), Length(max=4000)])


class MembershipForm(FlaskForm):
    user = StringField("User", validators=[DataRequired(), Length(max=32)])
    action = HiddenField(validators=[AnyOf(["add", "remove"])])


class _QueueFields(FlaskForm):
    enabled = BooleanField("Enabled", default=True)


def _queue_form(with_name: bool) -> type[FlaskForm]:
    attributes = {name: StringField(name, validators=[Optional(), Length(max=20000)]) for name in RULE_FIELDS}
    if with_name:
        attributes["name"] = StringField("Queue name", validators=[DataRequired(), Length(max=15)])
    return type("QueueCreateForm" if with_name else "QueueEditForm", (_QueueFields,), attributes)


QueueCreateForm = _queue_form(with_name=True)
QueueEditForm = _queue_form(with_name=False)
