"""The web interface through Flask's test client: sign-in, sessions, CSRF, redirects, 403s,
and every page's forms calling the same services as the API, with real jobs."""
from __future__ import annotations

import io
import itertools
import re
import time

import pytest
import sqlalchemy as sa

from soca_api.extensions import db
from soca_api.models import AuditEvent, Group, Queue, User
from soca_api.services import accounts, queues
from soca_api.web.auth import safe_next
from soca_api.web.jobs import _user_line, set_queue_directive
from tests.conftest import unique_name
from tests.helpers import SEED_SCRIPT, job_attributes, submit, wait_for_state

PASSWORD = "Web-Pass-2024!"
NOT_YOURS = "This job does not exist or is not yours."
_addresses = itertools.count(1)


# -- helpers -------------------------------------------------------------------------------
@pytest.fixture
def web(client):
    """A test client from an address of its own: sign-in failures are counted per address."""
    number = next(_addresses)
    client.environ_base["REMOTE_ADDR"] = f"10.{number // 250 % 250}.{number % 250}.{(time.time_ns() // 1000) % 250}"
    return client


def csrf(response) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client, account, password: str = PASSWORD, next_: str = ""):
    page = client.get("/login")
    if page.status_code == 302:  # signed in already: /login redirects, any page has a token
        page = client.get("/jobs")
    token = csrf(page)
    return client.post("/login", data={"csrf_token": token, "name": account.name, "password": password,
                                       "next": next_})


def signed_in(client, make_user, *, admin: bool = False):
    account = make_user(password=PASSWORD, admin=admin)
    response = sign_in(client, account)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return account


def post_form(client, page: str, action: str, data: dict | None = None, **kwargs):
    """POST `data` to `action` with the CSRF token of `page`, as a browser would."""
    token = csrf(client.get(page))
    return client.post(action, data={"csrf_token": token, **(data or {})}, **kwargs)


def events(app, action: str, target: str | None = None, actor: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if target is not None:
            query = query.where(AuditEvent.target == target)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        found = list(db.session.execute(query).scalars())
        db.session.expunge_all()
        return found


def text(response) -> str:
    return response.get_data(as_text=True)


# -- pure helpers: redirects and the queue directive ---------------------------------------
@pytest.mark.parametrize("target, expected", [
    ("/jobs", "/jobs"),
    ("/jobs/12?stream=stderr", "/jobs/12?stream=stderr"),
    ("", None), (None, None),
    ("//evil.example/x", None),
    ("/\\evil.example", None),
    ("/a\\b", None),
    ("https://evil.example/", None),
    ("http:/evil.example", None),
    ("javascript:alert(1)", None),
    ("evil.example", None),
    ("/ok\r\nSet-Cookie: x=1", None),
    ("/\t/evil.example", None),
])
def test_safe_next_accepts_only_local_paths(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize("script, queue, expected, inserted", [
    # a line that is only -q is replaced in place: line numbers do not move
    ("#!/bin/bash\n#PBS -N a\n#PBS -q normal\necho\n", "high", "#!/bin/bash\n#PBS -N a\n#PBS -q high\necho\n", None),
    ("#!/bin/bash\n#PBS -q normal # comment\necho\n", "high", "#!/bin/bash\n#PBS -q high\necho\n", None),
    # no -q: inserted after the last directive line (qsub takes the last -q)
    ("#!/bin/bash\n#PBS -N a\n\n#PBS -l ncpus=1\necho\n", "high",
     "#!/bin/bash\n#PBS -N a\n\n#PBS -l ncpus=1\n#PBS -q high\necho\n", 5),
    # -q combined with other options: left as written, overridden by a later line
    ("#!/bin/bash\n#PBS -N a -q normal\necho\n", "high", "#!/bin/bash\n#PBS -N a -q normal\n#PBS -q high\necho\n", 3),
    # no directive at all: after the #! line, or first when there is none
    ("#!/bin/bash\necho\n", "high", "#!/bin/bash\n#PBS -q high\necho\n", 2),
    ("echo hi\n", "high", "#PBS -q high\necho hi\n", 1),
    # a -q after the first command is not a directive (qsub ignores it)
    ("#!/bin/bash\necho\n#PBS -q normal\n", "high", "#!/bin/bash\n#PBS -q high\necho\n#PBS -q normal\n", 2),
    # already the chosen queue: unchanged
    ("#!/bin/bash\n#PBS -q high\necho\n", "high", "#!/bin/bash\n#PBS -q high\necho\n", None),
])
def test_queue_choice_replaces_or_inserts_the_q_directive(script, queue, expected, inserted):
    assert set_queue_directive(script, queue) == (expected, inserted)


def test_error_lines_are_given_back_in_the_users_script():
    assert _user_line(3, None) == 3
    assert _user_line(3, 5) == 3
    assert _user_line(6, 5) == 5
    assert _user_line(5, 5) is None
    assert _user_line(None, 2) is None


# -- sign in -------------------------------------------------------------------------------
def test_login_page_has_csrf_token_security_headers_and_only_local_assets(web):
    response = web.get("/login")
    assert response.status_code == 200
    assert csrf(response)
    page = text(response)
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert url.startswith(("/", "data:", "#")), url
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert web.get("/static/soca.css").status_code == 200
    assert web.get("/static/soca.js").status_code == 200


def test_sign_in_redirects_to_my_jobs_with_a_hardened_cookie_and_is_audited(app, web, make_user):
    account = make_user(password=PASSWORD)
    response = sign_in(web, account)
    assert response.status_code == 302
    assert response.headers["Location"] == "/jobs"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = web.get("/jobs")
    assert page.status_code == 200 and account.name in text(page)
    assert "Administration" not in text(page)  # no admin links for a user
    logged = events(app, "web.login", actor=account.name)
    assert logged and logged[-1].success and logged[-1].target == account.name


def test_sign_in_starts_a_new_session(web, make_user):
    account = make_user(password=PASSWORD)
    web.get("/login")
    with web.session_transaction() as session:
        session["planted"] = "by someone else"
        before_token = session.get("csrf_token")
    assert before_token
    sign_in(web, account)
    with web.session_transaction() as session:
        assert "planted" not in session
        assert session.get("csrf_token") is None  # a new token is made for the next form
        first_nonce = session["nonce"]
        assert session["uid"] and session["epoch"] == 0
    sign_in(web, account)
    with web.session_transaction() as session:
        assert session["nonce"] != first_nonce


def test_wrong_password_or_unknown_user_is_one_generic_401_and_audited(app, web, make_user):
    account = make_user(password=PASSWORD)
    wrong = sign_in(web, account, password="Not-The-Password-1")
    unknown = web.post("/login", data={"csrf_token": csrf(web.get("/login")), "name": "nobody-here",
                                       "password": PASSWORD})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Invalid user name or password." in text(response)
    assert PASSWORD not in text(wrong)
    failures = events(app, "web.login", actor=account.name)
    assert failures and not failures[-1].success
    assert web.get("/jobs").status_code == 302  # still signed out


def test_failed_sign_ins_are_rate_limited(app, web, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "SOCA_LOGIN_LIMIT", "3 per minute")
    account = make_user(password=PASSWORD)
    for _ in range(3):
        assert sign_in(web, account, password="Wrong-Password-9").status_code == 401
    blocked = sign_in(web, account)  # even the right password waits now
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in text(blocked)
    assert web.get("/jobs").status_code == 302
    refused = events(app, "web.login", actor=account.name)
    assert refused[-1].detail == "refused: too many failures"


def test_next_redirect_stays_on_this_site(web, make_user):
    account = make_user(password=PASSWORD)
    first = web.get("/api-key")
    assert first.status_code == 302 and first.headers["Location"] == "/login?next=/api-key"
    assert sign_in(web, account, next_="/api-key").headers["Location"] == "/api-key"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        assert sign_in(web, account, next_=evil).headers["Location"] == "/jobs", evil
    # already signed in: /login?next= redirects, locally only
    assert web.get("/login?next=//evil.example").headers["Location"] == "/jobs"
    assert web.get("/login?next=/submit").headers["Location"] == "/submit"


def test_forms_without_csrf_token_are_refused_with_400(app, web, make_user):
    account = make_user(password=PASSWORD)
    refused = web.post("/login", data={"name": account.name, "password": PASSWORD})
    assert refused.status_code == 400
    assert "not sent from this site" in text(refused)
    assert sign_in(web, account).status_code == 302
    with app.app_context():
        key_before = accounts.current_or_new_key(accounts.find_user(account.name))
    for action in ("/api-key/regenerate", "/logout", "/submit"):
        response = web.post(action, data={"user": account.name})
        assert response.status_code == 400, action
    bad_token = web.post("/api-key/regenerate", data={"csrf_token": "forged"})
    assert bad_token.status_code == 400
    with app.app_context():
        assert accounts.current_or_new_key(accounts.find_user(account.name)) == key_before
    assert web.get("/jobs").status_code == 200  # still signed in


def test_sign_out_is_a_post_and_ends_the_session(app, web, make_user):
    account = signed_in(web, make_user)
    assert web.get("/logout").status_code == 405
    response = post_form(web, "/jobs", "/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert web.get("/jobs").status_code == 302
    assert events(app, "web.logout", actor=account.name)


def test_password_change_or_deletion_ends_existing_sessions(app, web, make_user):
    account = signed_in(web, make_user)
    assert web.get("/jobs").status_code == 200
    with app.app_context():
        user = accounts.find_user(account.name)
        user.session_epoch += 1  # what a password reset does
        db.session.commit()
    ended = web.get("/jobs")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")
    assert "Your session ended" in text(web.get(ended.headers["Location"]))
    assert sign_in(web, account).status_code == 302  # a new sign-in works
    assert web.get("/jobs").status_code == 200
    with app.app_context():
        user = accounts.find_user(account.name)
        user.deleted_at, user.session_epoch = user.created_at, user.session_epoch + 1
        db.session.commit()
    assert web.get("/jobs").status_code == 302


def test_pages_need_a_session(web):
    for path in ("/jobs", "/submit", "/api-key", "/jobs/1", "/admin/users", "/admin/audit"):
        response = web.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), path
    assert web.get("/").headers["Location"] == "/login"
    output = web.get("/jobs/1/output")
    assert output.status_code == 401 and output.json["success"] is False
    api = web.get("/api/no-such-thing")  # the API keeps its JSON envelope
    assert api.status_code == 404 and api.json["success"] is False


# -- My API Key ----------------------------------------------------------------------------
def test_api_key_page_shows_own_key_and_the_seeds_curl_examples(app, web, make_user):
    account = signed_in(web, make_user)
    page = text(web.get("/api-key"))
    assert account.key in page  # in the page, hidden by CSS until "Show"
    assert 'id="reveal-key"' in page and 'data-copy="api-key"' in page
    assert "http://localhost/api/scheduler/job \\" in page
    assert "http://localhost/api/scheduler/job?job_id=11313 \\" in page
    assert f"-H 'X-SOCA-USER: {account.name}'" in page
    assert "-H 'X-SOCA-TOKEN: <span class=\"key-slot\" data-key-slot>&lt;YOUR_SOCA_TOKEN&gt;</span>'" in page
    assert "curl -X POST" in page and "curl -X GET" in page and "curl -X DELETE" in page
    assert "-F payload=IyEvYmluL2Jhc2gK" in page


def test_regenerate_changes_only_the_signed_in_users_key_and_is_audited(app, web, make_user):
    victim = make_user()
    account = signed_in(web, make_user)
    response = post_form(web, "/api-key", "/api-key/regenerate", {"user": victim.name})
    assert response.status_code == 302 and response.headers["Location"] == "/api-key"
    page = text(web.get("/api-key"))
    assert account.key not in page and "was regenerated" in page
    with app.app_context():
        assert accounts.authenticate_key(victim.name, victim.key) is not None
        assert accounts.authenticate_key(account.name, account.key) is None
    logged = events(app, "api_key.reset", target=account.name)
    assert logged and logged[-1].actor == account.name and logged[-1].detail == "web"
    assert not events(app, "api_key.reset", target=victim.name)


# -- Submit a Job --------------------------------------------------------------------------
def test_submit_pasted_script_sets_the_chosen_queue_and_redirects_to_the_job(app, web, make_user):
    account = signed_in(web, make_user)
    form = text(web.get("/submit"))
    assert '<option selected value="normal">' in form or 'value="normal" selected' in form
    # as a browser sends a textarea: CRLF line ends
    response = post_form(web, "/submit", "/submit", {"script": SEED_SCRIPT.replace("\n", "\r\n"), "queue": "high"})
    assert response.status_code == 302, text(response)[:2000]
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    assert job_id.isdigit()
    attributes = job_attributes(web, account, job_id).json["message"]
    assert attributes["queue"] == "high" and attributes["Job_Name"] == "testjob"
    page = web.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and f"Job {job_id} submitted to queue high." in text(page)


def test_submit_uploaded_file(app, web, make_user):
    account = signed_in(web, make_user)
    script = b"#!/bin/bash\n#PBS -N uploaded\necho uploaded\n"
    response = post_form(web, "/submit", "/submit",
                         {"upload": (io.BytesIO(script), "job.sh"), "script": "", "queue": "normal"},
                         content_type="multipart/form-data")
    assert response.status_code == 302, text(response)[:2000]
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    attributes = job_attributes(web, account, job_id).json["message"]
    assert attributes["Job_Name"] == "uploaded" and attributes["queue"] == "normal"


def test_submit_errors_are_shown_next_to_the_script_with_their_line(web, make_user):
    signed_in(web, make_user)
    script = "#!/bin/bash\n#PBS -N fine\n#PBS -l walltime=soon\necho hi\n"
    response = post_form(web, "/submit", "/submit", {"script": script, "queue": "normal"})
    assert response.status_code == 400
    page = text(response)
    assert "Line 3:" in page and "walltime" in page
    assert '<li class="hit"><span class="ln">3</span><code>#PBS -l walltime=soon</code></li>' in page
    assert "#PBS -N fine" in page  # the script is kept in the form
    empty = post_form(web, "/submit", "/submit", {"script": "  ", "queue": "normal"})
    assert empty.status_code == 400 and "Paste a job script" in text(empty)
    bad_queue = post_form(web, "/submit", "/submit", {"script": script, "queue": "nope"})
    assert bad_queue.status_code == 400 and "Not a valid choice" in text(bad_queue)


def test_queue_rule_refusal_is_shown_on_the_form(app, web, make_user):
    signed_in(web, make_user)
    name = unique_name("q")[:15]
    closed = unique_name("c")[:15]
    with app.app_context():
        queues.create_queue(name, changes={"restricted_parameters": "instance_type"})
        queues.create_queue(closed, changes={"allowed_users": "someone_else"})
    form_page = text(web.get("/submit"))
    assert name in form_page and closed not in form_page  # only queues the user may use
    response = post_form(web, "/submit", "/submit", {"script": SEED_SCRIPT, "queue": name})
    assert response.status_code == 403
    assert f"instance_type cannot be set on queue {name}" in text(response)


# -- My Jobs and the job page --------------------------------------------------------------
def test_my_jobs_lists_only_own_jobs_with_filters(app, web, make_user):
    other = make_user()
    other_job = submit(web, other, "#!/bin/bash\necho other\n")
    account = signed_in(web, make_user, admin=True)  # an admin too sees only their own jobs here
    long_job = submit(web, account, "#!/bin/bash\n#PBS -N sleeper\n#PBS -q high\nsleep 30\n")
    short_job = submit(web, account, "#!/bin/bash\n#PBS -N quick\necho hi\n")
    wait_for_state(web, account, short_job, "F")
    page = text(web.get("/jobs"))
    assert f'href="/jobs/{long_job}"' in page and f'href="/jobs/{short_job}"' in page
    assert f'href="/jobs/{other_job}"' not in page
    assert "sleeper" in page and "quick" in page
    high = text(web.get("/jobs?queue=high"))
    assert f'href="/jobs/{long_job}"' in high and f'href="/jobs/{short_job}"' not in high
    finished = text(web.get("/jobs?state=F"))
    assert f'href="/jobs/{short_job}"' in finished and f'href="/jobs/{long_job}"' not in finished
    assert '<span class="exit exit-ok">0</span>' in finished
    assert web.get("/jobs?state=Z&queue=%24%28id%29").status_code == 200  # bad filters are ignored
    web.delete(f"/api/scheduler/job?job_id={long_job}", headers=account.headers)


def test_job_page_shows_attributes_and_output_and_the_json_follows(web, make_user):
    account = signed_in(web, make_user)
    job_id = submit(web, account, SEED_SCRIPT)
    wait_for_state(web, account, job_id, "F")
    page = web.get(f"/jobs/{job_id}")
    body = text(page)
    assert page.status_code == 200
    assert "Hello World" in body and "testjob" in body and "Exit_status" in body
    assert 'data-follow="0"' in body  # finished: nothing left to follow
    chunk = web.get(f"/jobs/{job_id}/output?offset=0").json
    assert chunk["success"] and chunk["data"] == "Hello World\n" and chunk["finished"] and chunk["eof"]
    assert "path" not in chunk
    rest = web.get(f"/jobs/{job_id}/output?offset={chunk['next_offset']}").json
    assert rest["data"] == "" and rest["next_offset"] == chunk["next_offset"]


def test_running_job_page_follows_output_and_deletes_with_a_post(app, web, make_user):
    account = signed_in(web, make_user)
    job_id = submit(web, account, "#!/bin/bash\n#PBS -N follow\necho started\nsleep 60\n")
    wait_for_state(web, account, job_id, "R")
    page = text(web.get(f"/jobs/{job_id}"))
    assert 'data-follow="1"' in page and 'data-refresh-ms' in page
    assert f'action="/jobs/{job_id}/delete"' in page
    assert web.get(f"/jobs/{job_id}/delete").status_code == 405  # never a GET link
    response = post_form(web, f"/jobs/{job_id}", f"/jobs/{job_id}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"
    assert job_attributes(web, account, job_id).status_code == 404
    assert f"Job {job_id} deleted." in text(web.get("/jobs"))
    logged = events(app, "job.delete", target=job_id)
    assert logged and logged[-1].actor == account.name and logged[-1].detail == "web"


def test_another_users_job_is_a_403_that_tells_nothing(app, web, make_user):
    owner = make_user()
    job_id = submit(web, owner, "#!/bin/bash\nsleep 30\n")
    signed_in(web, make_user)
    foreign = web.get(f"/jobs/{job_id}")
    unknown = web.get("/jobs/99999999")
    assert foreign.status_code == unknown.status_code == 403
    assert NOT_YOURS in text(foreign)
    assert text(foreign) == text(unknown) and f"/jobs/{job_id}" not in text(foreign)
    assert web.get(f"/jobs/{job_id}/output").status_code == 404
    refused = post_form(web, "/jobs", f"/jobs/{job_id}/delete")
    assert refused.status_code == 403
    assert job_attributes(web, owner, job_id).status_code == 200  # still there
    assert web.get("/jobs/1;id").status_code == 404
    assert web.get("/jobs/12%5B3%5D").status_code == 403  # an array subjob id is a valid id
    web.delete(f"/api/scheduler/job?job_id={job_id}", headers=owner.headers)


# -- administration ------------------------------------------------------------------------
ADMIN_PAGES = ("/admin/users", "/admin/groups", "/admin/queues", "/admin/queues/normal", "/admin/audit")


def test_admin_pages_and_actions_are_403_for_users_and_audited(app, web, make_user):
    account = signed_in(web, make_user)
    for path in ADMIN_PAGES:
        response = web.get(path)
        assert response.status_code == 403, path
        assert "for administrators" in text(response)
    name = unique_name("new")
    refused = post_form(web, "/jobs", "/admin/users", {"name": name, "email": "x@example.com",
                                                       "password": PASSWORD, "is_admin": "y"})
    assert refused.status_code == 403
    assert post_form(web, "/jobs", f"/admin/users/{account.name}/admin", {"change": "grant"}).status_code == 403
    with app.app_context():
        assert accounts.find_user(name) is None
        assert not accounts.find_user(account.name).is_admin
    assert len(events(app, "web.forbidden", actor=account.name)) >= len(ADMIN_PAGES) + 2


def test_admin_creates_a_user_who_then_signs_in(app, web, make_user, client):
    admin = signed_in(web, make_user, admin=True)
    assert "Administration" in text(web.get("/jobs"))
    name = unique_name("new")
    response = post_form(web, "/admin/users", "/admin/users",
                         {"name": name, "email": f"{name}@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert f"User {name} created." in text(web.get("/admin/users"))
    duplicate = post_form(web, "/admin/users", "/admin/users",
                          {"name": name, "email": f"{name}@example.com", "password": PASSWORD})
    assert duplicate.status_code == 400 and f"User {name} already exists" in text(duplicate)
    weak = post_form(web, "/admin/users", "/admin/users", {"name": unique_name("w"), "email": "w@example.com",
                                                           "password": "short"})
    assert weak.status_code == 400 and "at least 10 characters" in text(weak)
    created = events(app, "user.create", target=name)
    assert [e.success for e in created] == [True, False] and created[0].actor == admin.name
    assert created[0].detail == "web"
    # the new user signs in elsewhere
    from tests.helpers import Account

    newcomer = Account(name, "", PASSWORD, False)
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.250.0.1"
    assert sign_in(other, newcomer).status_code == 302
    assert name in text(other.get("/jobs"))


def test_admin_user_actions_rights_password_key_delete(app, web, make_user):
    admin = signed_in(web, make_user, admin=True)
    target = make_user(password=PASSWORD)
    theirs = app.test_client()
    theirs.environ_base["REMOTE_ADDR"] = "10.250.0.2"
    assert sign_in(theirs, target).status_code == 302

    assert post_form(web, "/admin/users", f"/admin/users/{target.name}/admin", {"change": "grant"}).status_code == 302
    with app.app_context():
        assert accounts.find_user(target.name).is_admin
    assert theirs.get("/admin/users").status_code == 200  # rights apply on the next request
    post_form(web, "/admin/users", f"/admin/users/{target.name}/admin", {"change": "revoke"})
    assert theirs.get("/admin/users").status_code == 403

    new_password = "Fresh-Pass-2025?"
    assert post_form(web, "/admin/users", f"/admin/users/{target.name}/password",
                     {"password": new_password}).status_code == 302
    assert theirs.get("/jobs").status_code == 302  # their session ended
    weak = post_form(web, "/admin/users", f"/admin/users/{target.name}/password", {"password": "abc"})
    assert weak.status_code == 302 and "at least 10 characters" in text(web.get("/admin/users"))

    post_form(web, "/admin/users", f"/admin/users/{target.name}/key")
    with app.app_context():
        assert accounts.authenticate_key(target.name, target.key) is None

    own = post_form(web, "/admin/users", f"/admin/users/{admin.name}/delete")
    assert own.status_code == 302 and "You cannot delete your own user." in text(web.get("/admin/users"))
    assert post_form(web, "/admin/users", f"/admin/users/{target.name}/delete").status_code == 302
    with app.app_context():
        assert accounts.find_user(target.name) is None
    assert post_form(web, "/admin/users", "/admin/users/no-such-user/delete").status_code == 404

    for action, outcomes in (("user.grant_admin", [True]), ("user.revoke_admin", [True]),
                             ("user.password_reset", [True, False]), ("api_key.reset", [True]),
                             ("user.delete", [True])):
        logged = events(app, action, target=target.name, actor=admin.name)
        assert [e.success for e in logged] == outcomes, action
        assert all(e.detail.startswith("web") for e in logged)
    assert not events(app, "user.delete", target=admin.name)[-1].success


def test_admin_groups_create_members_delete(app, web, make_user):
    admin = signed_in(web, make_user, admin=True)
    member, extra = make_user(), make_user()
    group = unique_name("g")
    response = post_form(web, "/admin/groups", "/admin/groups", {"name": group, "gid": "", "members": member.name})
    assert response.status_code == 302
    post_form(web, "/admin/groups", f"/admin/groups/{group}/members", {"user": extra.name, "action": "add"})
    post_form(web, "/admin/groups", f"/admin/groups/{group}/members", {"user": member.name, "action": "remove"})
    with app.app_context():
        found = db.session.execute(sa.select(Group).where(Group.name == group)).scalar_one()
        assert sorted(u.name for u in found.members) == [extra.name]
    bad = post_form(web, "/admin/groups", "/admin/groups", {"name": unique_name("g"), "gid": "abc"})
    assert bad.status_code == 400 and "gid is invalid" in text(bad)
    page = text(web.get("/admin/groups"))
    assert group in page and extra.name in page
    assert post_form(web, "/admin/groups", f"/admin/groups/{group}/delete").status_code == 302
    with app.app_context():
        assert db.session.execute(sa.select(Group).where(Group.name == group)).scalar_one_or_none() is None
    assert [e.success for e in events(app, "group.create", actor=admin.name)] == [True, False]
    assert len(events(app, "group.update", target=group)) == 2
    assert events(app, "group.delete", target=group)[-1].success


def test_admin_queues_create_edit_delete(app, web, make_user):
    admin = signed_in(web, make_user, admin=True)
    name = unique_name("q")[:15]
    response = post_form(web, "/admin/queues", "/admin/queues",
                         {"name": name, "enabled": "y", "max_walltime": "1:00:00", "allowed_users": admin.name})
    assert response.status_code == 302
    edit = web.get(f"/admin/queues/{name}")
    assert edit.status_code == 200 and 'value="01:00:00"' in text(edit)
    changed = post_form(web, f"/admin/queues/{name}", f"/admin/queues/{name}",
                        {"enabled": "y", "max_walltime": "", "allowed_users": "", "max_cpus_per_job": "4"})
    assert changed.status_code == 302
    with app.app_context():
        queue = db.session.execute(sa.select(Queue).where(Queue.name == name)).scalar_one()
        assert queue.rules == {"max_cpus_per_job": 4} and queue.enabled
    invalid = post_form(web, f"/admin/queues/{name}", f"/admin/queues/{name}", {"max_cpus_per_job": "many"})
    assert invalid.status_code == 400 and "max_cpus_per_job is invalid" in text(invalid)
    assert name in text(web.get("/submit"))  # users can pick it
    assert post_form(web, "/admin/queues", f"/admin/queues/{name}/delete").status_code == 302
    with app.app_context():
        assert queues.find_queue(name) is None
    assert web.get(f"/admin/queues/{name}").status_code == 404
    assert [e.success for e in events(app, "queue.update", target=name)] == [True, False]
    assert events(app, "queue.create", target=name)[-1].success
    assert events(app, "queue.delete", target=name)[-1].success


def test_admin_audit_page_filters_and_pages(app, web, make_user):
    admin = signed_in(web, make_user, admin=True)
    page = web.get(f"/admin/audit?user={admin.name}&action=web.*")
    assert page.status_code == 200
    body = text(page)
    assert "web.login" in body and admin.name in body
    assert web.get("/admin/audit?action=DROP TABLE").status_code == 400
    assert web.get("/admin/audit?since=yesterday").status_code == 400
    first = text(web.get("/admin/audit"))
    match = re.search(r'href="/admin/audit\?before=(\d+)"', first)
    if match:  # more than one page in the shared database
        assert web.get(f"/admin/audit?before={match.group(1)}").status_code == 200


def test_inactive_user_cannot_sign_in(app, web, make_user):
    account = make_user(password=PASSWORD)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.name == account.name).values(is_active=False))
        db.session.commit()
    assert sign_in(web, account).status_code == 401


def test_unknown_urls_get_the_sites_page_or_the_api_envelope(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    assert "Not found" in page.get_data(as_text=True) and "Traceback" not in page.get_data(as_text=True)
    api = client.get("/api/no/such/thing")
    assert api.status_code == 404 and api.json == {"success": False, "message": "Not found"}
