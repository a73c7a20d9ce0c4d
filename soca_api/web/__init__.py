"""The web interface: server-rendered pages for users (My Jobs, Submit a Job, My API Key)
and admins (Users, Groups, Queues, Audit), mounted at `/`.

Every page works without JavaScript; `static/soca.js` only refreshes tables, follows a
running job's output, and copies or reveals text. Every asset comes from this server.
The pages call the same services as the API and the CLI (`soca_api.services.*`), which
also write the audit rows of every change; never their own copy of the logic.

Files: `site.py` (the blueprint), `auth.py` (sessions, sign-in, decorators), `forms.py`
(Flask-WTF forms, so every form carries a CSRF token), `jobs.py`, `keys.py`, `admin.py`
(the pages), `errors.py` (HTML error pages and security headers). Importing this package
imports every page module, so the blueprint it exports has all its routes.
"""
from __future__ import annotations

from soca_api.web import admin, auth, errors, jobs, keys  # noqa: F401 - each registers its routes
from soca_api.web.site import blueprint

__all__ = ["blueprint"]
