"""The web interface: server-rendered pages for users (My Jobs, Submit a Job, My API Key)
and admins (Users, Groups, Queues, Audit), mounted at `/`.

Every page works without JavaScript; `static/soca.js` only refreshes tables, follows a
running job's output, and copies or reveals text. Every asset comes from this server.
The pages call the same services as the API (`soca_api.services.*`, and the account,
group and audit operations of `soca_api.api.admin`), never their own copy of the logic.

Files: `auth.py` (sessions, sign-in, decorators), `forms.py` (Flask-WTF forms, so every
form carries a CSRF token), `jobs.py`, `keys.py`, `admin.py` (the pages), `errors.py`
(HTML error pages and security headers).
"""
from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("web", __name__)

# The views register their routes on `blueprint` when imported.
from soca_api.web import admin, auth, errors, jobs, keys  # noqa: F401
