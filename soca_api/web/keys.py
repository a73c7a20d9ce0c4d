"""My API Key: the signed-in user's key, the seed's curl examples, and Regenerate.

Regenerate always acts on the signed-in user's own key: the form has no user field and
any sent is ignored (SOCA's form trusted one, so anyone could revoke anyone's key).
"""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from soca_api.services import accounts, audit
from soca_api.web.auth import current_user, login_required
from soca_api.web.forms import ConfirmForm
from soca_api.web.site import blueprint

# The seed's example payload and job id, so the examples read exactly as the document.
SEED_PAYLOAD = (
    "IyEvYmluL2Jhc2gKI1BCUyAtTiB0ZXN0am9iCiNQQlMgLVYgLWogb2UgLW8gdGVzdGpvYl9vdXRwdXQucWxvZwojUEJTIC1Q"
    "IG15cHJvamVjdAojUEJTIC1xIG5vcm1hbAojUEJTIC1sIG5vZGVzPTEsaW5zdGFuY2VfdHlwZT1jNS5sYXJnZQovYmluL2VjaG8g"
    "IkhlbGxvIFdvcmxkIgo="
)
SEED_JOB_ID = "11313"


@blueprint.get("/api-key")
@login_required
def api_key():
    user = current_user()
    key = accounts.current_or_new_key(user)
    base = request.host_url.rstrip("/")
    return render_template("web/api_key.html", key=key, base=base, payload=SEED_PAYLOAD,
                           example_id=SEED_JOB_ID, form=ConfirmForm())


@blueprint.post("/api-key/regenerate")
@login_required
def regenerate_key():
    user = current_user()
    form = ConfirmForm()
    if not form.validate_on_submit():
        return redirect(url_for("web.api_key"))
    accounts.reset_key(user, actor=audit.Actor(user.name, via="web"))
    flash("Your API key was regenerated. The previous key no longer works.", "success")
    return redirect(url_for("web.api_key"))
