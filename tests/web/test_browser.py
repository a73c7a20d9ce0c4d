"""The web interface in a real headless Chromium (Debian's package) against a live gunicorn
with its own local runner: sign-in, the API key, submitting and following jobs, deleting,
administration, 403s and CSRF. Each test saves screenshots into docs/screenshots/.

Never downloads a browser: Playwright drives /usr/bin/chromium (`apt-get install chromium`).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.conftest import PROJECT_DIR, make_data_dir, service_env
from tests.external import require
from tests.helpers import SEED_SCRIPT
from tests.live import free_port, start_gunicorn

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = PROJECT_DIR / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
PASSWORDS = {"boss": "Head-Office-2024!", "alice": "Wonder-Land-42", "bob": "Can-We-Fix-It-7"}

CREATE_USERS = """
import sys
from wsgi import app
from soca_api.services import accounts
with app.app_context():
    for line in sys.stdin.read().splitlines():
        name, password, admin = line.split(" ")
        accounts.create_user(name, password=password, email=f"{name}@example.com", is_admin=admin == "1")
"""


@pytest.fixture(scope="module")
def server():
    require(os.path.exists(CHROMIUM), f"Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "the playwright Python package")
    data_dir = make_data_dir("soca-web-")
    port = free_port()
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db", SOCA_PORT=str(port), SOCA_HOST="127.0.0.1",
                      SOCA_WORKERS="2", SOCA_ACCESS_LOG="")
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
    users = "\n".join(f"{name} {password} {int(name == 'boss')}" for name, password in PASSWORDS.items())
    made = subprocess.run([sys.executable, "-c", CREATE_USERS], cwd=PROJECT_DIR, env=env, input=users, text=True,
                          capture_output=True, check=False)
    assert made.returncode == 0, made.stderr[-2000:]
    base = f"http://127.0.0.1:{port}"
    process = start_gunicorn(env, base)
    yield {"base": base, "data_dir": data_dir}
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(data_dir, ignore_errors=True)


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def session_of(browser, server):
    """session_of("alice") -> a page signed in as alice, in a context of its own."""
    contexts = []

    def open_as(name: str | None, **context_options):
        context = browser.new_context(viewport=DESKTOP, **context_options)
        context.set_default_timeout(15000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        if name is not None:
            sign_in(page, server["base"], name, PASSWORDS.get(name, ""))
        return page

    errors: list[str] = []
    yield open_as
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


def sign_in(page, base: str, name: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/jobs")


def shot(page, name: str, *, mobile: bool = False) -> None:
    """docs/screenshots/<name>.png at 1280x800, or <name>-mobile.png at 390x844."""
    if mobile:
        page.set_viewport_size(MOBILE)
        page.wait_for_timeout(150)
    page.screenshot(path=str(SCREENSHOTS / (f"{name}-mobile.png" if mobile else f"{name}.png")))
    if mobile:
        page.set_viewport_size(DESKTOP)


def key_of(server, name: str) -> str:
    answer = requests.get(f"{server['base']}/api/user/api_key", params={"user": name},
                          headers={"X-SOCA-USER": name, "X-SOCA-PASSWORD": PASSWORDS[name]}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["message"]


def submit_from_form(page, base: str, script: str, queue: str = "normal") -> str:
    page.goto(f"{base}/submit")
    page.fill("#script", script)
    page.select_option("#queue", queue)
    page.click("button:has-text('Submit job')")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    return page.url.rsplit("/", 1)[1]


def api_submit(base: str, headers: dict, script: str) -> str:
    import base64

    answer = requests.post(f"{base}/api/scheduler/job", headers=headers, timeout=10,
                           data={"payload": base64.b64encode(script.encode()).decode()})
    assert answer.status_code == 200, answer.text
    return answer.json()["message"]


def wait_api_state(base: str, headers: dict, job_id: str, state: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        answer = requests.get(f"{base}/api/scheduler/job", params={"job_id": job_id}, headers=headers, timeout=10)
        if answer.status_code == 200 and answer.json()["message"]["job_state"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {state}")


# -- the tests -----------------------------------------------------------------------------
def test_sign_in(session_of, server):
    page = session_of(None)
    page.goto(f"{server['base']}/jobs")
    assert page.url == f"{server['base']}/login?next=/jobs"
    shot(page, "login")
    shot(page, "login", mobile=True)
    page.fill("#name", "alice")
    page.fill("#password", "not-her-password")
    page.click("button[type=submit]")
    assert page.locator(".alert-error").inner_text() == "Invalid user name or password."
    page.fill("#name", "alice")
    page.fill("#password", PASSWORDS["alice"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{server['base']}/jobs")
    assert page.locator(".who-name").inner_text().startswith("alice")
    assert page.locator("text=Administration").count() == 0


def test_reveal_and_copy_the_key_then_use_it_with_the_api(session_of, server):
    page = session_of("alice")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["base"])
    page.click("nav >> text=My API Key")
    page.wait_for_url(f"{server['base']}/api-key")
    # Hidden by the stylesheet: wait for it rather than read the page before it applies.
    expect(page.locator("#api-key")).to_be_hidden()
    assert "<YOUR_SOCA_TOKEN>" in page.locator("#curl-submit").inner_text()
    shot(page, "api-key")
    shot(page, "api-key", mobile=True)
    page.click("#reveal-label")
    key = page.locator("#api-key").inner_text().strip()
    assert key.startswith("soca_") and page.locator("#api-key").is_visible()
    page.click("#copy-key")
    page.wait_for_selector("#copy-key >> text=Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == key
    submit_example = page.locator("#curl-submit").inner_text()
    assert f"-H 'X-SOCA-TOKEN: {key}'" in submit_example
    assert f"{server['base']}/api/scheduler/job \\" in submit_example
    answer = requests.get(f"{server['base']}/api/user/api_key", params={"user": "alice"},
                          headers={"X-SOCA-USER": "alice", "X-SOCA-TOKEN": copied}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"success": True, "message": key}


def test_submit_the_seed_script_and_watch_it_finish(session_of, server):
    page = session_of("alice")
    base = server["base"]
    page.goto(f"{base}/submit")
    page.fill("#script", SEED_SCRIPT.replace("#PBS -q normal", "#PBS -q high"))
    assert page.locator("#queue").input_value() == "high"  # the script's #PBS -q picks the queue
    page.fill("#script", SEED_SCRIPT)
    assert page.locator("#queue").input_value() == "normal"
    shot(page, "submit")
    shot(page, "submit", mobile=True)
    page.fill("#script", "#!/bin/bash\n#PBS -N broken\n#PBS -l walltime=soon\necho hi\n")
    page.click("button:has-text('Submit job')")
    error = page.locator("#script-error")
    assert "Line 3:" in error.inner_text() and "walltime" in error.inner_text()
    assert page.locator(".excerpt li.hit").inner_text().endswith("#PBS -l walltime=soon")
    assert page.locator("#script").input_value().startswith("#!/bin/bash\n#PBS -N broken")  # kept
    shot(page, "submit-error")
    job_id = submit_from_form(page, base, SEED_SCRIPT)
    expect(page.locator("#job-state")).to_have_attribute("data-state", "F", timeout=20000)
    expect(page.locator("#output")).to_contain_text("Hello World")
    assert page.locator("#job-stats").inner_text().count("normal") == 1
    assert "Exit_status" in page.locator("#job-attributes").inner_text()
    assert page.locator(".flashes").inner_text() == f"Job {job_id} submitted to queue normal."
    shot(page, "job")
    shot(page, "job", mobile=True)


def test_delete_a_running_job_from_its_page(session_of, server):
    page = session_of("alice")
    base = server["base"]
    script = "#!/bin/bash\n#PBS -N sleeper\n#PBS -l ncpus=1\necho started at $(date +%T)\nsleep 60\n"
    job_id = submit_from_form(page, base, script, queue="high")
    # the page refreshes itself and the viewer follows the output while the job runs
    expect(page.locator("#job-state")).to_have_attribute("data-state", "R", timeout=20000)
    expect(page.locator("#output")).to_contain_text("started at", timeout=20000)
    assert page.locator("#output").get_attribute("data-follow") == "1"
    page.locator("#output-status").wait_for()
    shot(page, "job-running")
    page.click("summary:has-text('Delete job')")
    page.click("button:has-text('Yes, delete the job')")
    page.wait_for_url(f"{base}/jobs")
    assert page.locator(".flashes").inner_text() == f"Job {job_id} deleted."
    assert page.locator(f"a[href='/jobs/{job_id}']").count() == 0
    key = key_of(server, "alice")
    gone = requests.get(f"{base}/api/scheduler/job", params={"job_id": job_id},
                        headers={"X-SOCA-USER": "alice", "X-SOCA-TOKEN": key}, timeout=10)
    assert gone.status_code == 404
    page.select_option("#filter-state", "F")  # the filter submits itself
    page.wait_for_url(re.compile(r".*/jobs\?state=F.*"))
    assert page.locator(f"a[href='/jobs/{job_id}']").count() == 0  # deleted jobs leave the list
    assert page.locator("#jobs-rows tr").count() >= 1  # the seed job
    # a few more jobs in other states, so that the list shows what it is for
    headers = {"X-SOCA-USER": "alice", "X-SOCA-TOKEN": key}
    others = [api_submit(base, headers, script) for script in (
        "#!/bin/bash\n#PBS -N simulation\n#PBS -q high\n#PBS -l ncpus=1\nsleep 45\n",
        "#!/bin/bash\n#PBS -N post-process\n#PBS -h\necho later\n",
        "#!/bin/bash\n#PBS -N failing-step\nexit 3\n",
    )]
    wait_api_state(base, headers, others[0], "R")
    wait_api_state(base, headers, others[2], "F")
    page.goto(f"{base}/jobs")
    expect(page.locator("#jobs-rows tr")).to_have_count(4)
    shot(page, "jobs")
    shot(page, "jobs", mobile=True)
    for job in others[:2]:
        requests.delete(f"{base}/api/scheduler/job", params={"job_id": job}, headers=headers, timeout=10)


def test_admin_creates_a_user_who_then_signs_in(session_of, server):
    page = session_of("boss")
    base = server["base"]
    page.click("nav >> text=Users")
    shot(page, "admin-users")
    shot(page, "admin-users", mobile=True)
    page.fill("#name", "carol")
    page.fill("#email", "carol@example.com")
    page.fill("#password", "Caribou-Trail-9")
    page.click("button:has-text('Create user')")
    page.wait_for_url(f"{base}/admin/users")
    assert "User carol created." in page.locator(".flashes").inner_text()
    assert page.locator("#user-carol").count() == 1
    # groups, queues and the audit log, for the record
    page.click("nav >> text=Groups")
    page.fill("#name", "physics")
    page.fill("#members", "alice, carol")
    page.click("button:has-text('Create group')")
    assert "Group physics created." in page.locator(".flashes").inner_text()
    shot(page, "admin-groups")
    page.click("nav >> text=Queues")
    page.fill("#name", "gpu")
    page.click("summary:has-text('Rules')")
    page.fill("#rule-allowed_groups", "physics")
    page.fill("#rule-max_walltime", "12:00:00")
    page.fill("#rule-allowed_instance_types", "p3, g4dn")
    page.click("button:has-text('Create queue')")
    assert "Queue gpu created." in page.locator(".flashes").inner_text()
    shot(page, "admin-queues")
    page.click("nav >> text=Audit")
    assert page.locator("td:has-text('user.create')").count() >= 1
    shot(page, "admin-audit")

    newcomer = session_of(None)
    sign_in(newcomer, base, "carol", "Caribou-Trail-9")
    assert newcomer.locator(".who-name").inner_text().startswith("carol")
    newcomer.goto(f"{base}/submit")
    assert "gpu" in newcomer.locator("#queue").inner_text()  # a member of physics now


def test_users_cannot_open_another_users_job_or_admin_pages(session_of, server):
    base = server["base"]
    alice = session_of("alice")
    job_id = submit_from_form(alice, base, "#!/bin/bash\n#PBS -N private\necho secret\n")
    bob = session_of("bob")
    response = bob.goto(f"{base}/jobs/{job_id}")
    assert response.status == 403
    assert "This job does not exist or is not yours." in bob.locator(".error-card").inner_text()
    assert "private" not in bob.content()
    shot(bob, "forbidden")
    for path in ("/admin/users", "/admin/groups", "/admin/queues", "/admin/audit"):
        assert bob.goto(f"{base}{path}").status == 403, path
    assert bob.locator("text=Administration").count() == 0


class _AttackPage(BaseHTTPRequestHandler):
    """Another site whose page posts a form to the service, without any CSRF token."""

    target = ""

    def do_GET(self):
        body = (f'<form id="f" method="post" action="{self.target}"><input name="user" value="bob"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cross_site_post_without_csrf_token_is_refused(session_of, server):
    base = server["base"]
    page = session_of("alice")
    key_before = key_of(server, "alice")
    handler = type("Attack", (_AttackPage,), {"target": f"{base}/api-key/regenerate"})
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url.endswith("/api-key/regenerate")) as posted:
            page.goto(f"http://localhost:{attacker.server_address[1]}/")
        assert posted.value.status == 400
        page.wait_for_load_state()
        assert "not sent from this site" in page.content()
    finally:
        attacker.shutdown()
    assert key_of(server, "alice") == key_before
    page.goto(f"{base}/jobs")
    assert page.url == f"{base}/jobs"  # still signed in: nothing happened


def test_api_doc_loads_with_no_request_leaving_the_host(session_of, server):
    """Swagger UI at /api/doc/ renders every operation from assets of this server only."""
    page = session_of(None)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{server['base']}/api/doc/")
    expect(page.locator(".opblock-summary-path", has_text="/api/scheduler/job").first).to_be_visible()
    expect(page.locator("button.authorize")).to_be_visible()
    shot(page, "api-doc")

    # "Authorize" with both headers, then "Try it out" on the job listing.
    key = key_of(server, "alice")
    page.locator("button.authorize").click()
    dialog = page.locator(".dialog-ux")
    for scheme, value in (("SocaUser", "alice"), ("SocaToken", key)):
        block = dialog.locator(".auth-container", has_text=scheme)
        block.locator("input").fill(value)
        block.locator("button.authorize").click()
    dialog.locator("button.btn-done").first.click()
    operation = page.locator("#operations-Jobs-get_api_scheduler_jobs")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text("200")
    expect(operation.locator(".live-responses-table .microlight").first).to_contain_text('"success": true')

    outside = [url for url in requested if not url.startswith((server["base"] + "/", "data:", "blob:"))]
    assert outside == [], outside
