"""The admin API over HTTP: who may call what, users, groups, admin rights, passwords,
queues and the audit log."""
from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from functools import cached_property

import pytest

from soca_api.services import accounts
from tests.admin_fixtures import account as new_account
from tests.admin_fixtures import (
    add_job,
    audit_events,
    fake_adapter,
    fake_qmgr,
    fresh_app,
    group_name,
    make_group,
    make_queue,
    queue_name,
    user_row,
)
from tests.conftest import unique_name
from tests.helpers import Account

PASSWORD = "Old-Password-42"
NEW_PASSWORD = "New-Password-43"


@pytest.fixture
def isolated_app():
    yield from fresh_app()


def envelope(response) -> tuple[int, object]:
    assert response.is_json, response.data[:200]
    assert set(response.json) >= {"success", "message"}
    assert response.json["success"] is (response.status_code < 400)
    return response.status_code, response.json["message"]


# -- the access matrix ---------------------------------------------------------------------
class World:
    """What one matrix case needs, made on first use (each case gets its own)."""

    def __init__(self, app, make_user, *, alice_password: str | None = None):
        self.app = app
        self.make_user = make_user
        self.alice_password = alice_password  # hashing costs: only when the case needs it

    @cached_property
    def alice(self) -> Account:
        return self.make_user(password=self.alice_password)

    @cached_property
    def bob(self) -> Account:
        return self.make_user()

    @cached_property
    def admin(self) -> Account:
        return self.make_user(admin=True)

    @cached_property
    def other_admin(self) -> Account:
        return self.make_user(admin=True)

    @cached_property
    def revoked(self) -> Account:
        victim = self.make_user()
        with self.app.app_context():
            accounts.revoke_keys(accounts.get_user_or_404(victim.name))
        return victim

    @cached_property
    def queue(self) -> str:
        return make_queue(self.app)

    @cached_property
    def group(self) -> str:
        return make_group(self.app, self.alice.name)

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        if caller == "wrong_key":
            return {"X-SOCA-USER": self.bob.name, "X-SOCA-TOKEN": "soca_not-the-right-key"}
        if caller == "revoked_key":
            return self.revoked.headers
        return {"alice": self.alice, "bob": self.bob, "admin": self.admin}[caller].headers


CALLERS = ("anonymous", "wrong_key", "revoked_key", "alice", "bob", "admin")
# (method, path, parameters(world), status for alice, bob, admin); any other caller: 401.
# The target of "self" endpoints is always alice; bob is "another plain user".
ENDPOINTS = [
    ("GET", "/api/user/api_key", lambda w: {"user": w.alice.name}, 200, 403, 200),
    ("DELETE", "/api/user/api_key", lambda w: {"user": w.alice.name}, 200, 403, 200),
    ("GET", "/api/scheduler/queues", lambda w: {}, 200, 200, 200),
    ("GET", "/api/scheduler/queue", lambda w: {"name": w.queue}, 403, 403, 200),
    ("POST", "/api/scheduler/queue", lambda w: {"name": queue_name(), "type": "compute"}, 403, 403, 200),
    ("PUT", "/api/scheduler/queue", lambda w: {"name": w.queue, "max_walltime": "01:00:00"}, 403, 403, 200),
    ("DELETE", "/api/scheduler/queue", lambda w: {"name": w.queue}, 403, 403, 200),
    ("GET", "/api/ldap/user", lambda w: {"user": w.alice.name}, 403, 403, 200),
    ("POST", "/api/ldap/user", lambda w: {"user": unique_name("new"), "password": NEW_PASSWORD,
                                          "email": "new@example.com"}, 403, 403, 200),
    ("DELETE", "/api/ldap/user", lambda w: {"user": w.bob.name}, 403, 403, 200),
    ("GET", "/api/ldap/users", lambda w: {}, 403, 403, 200),
    ("GET", "/api/ldap/group", lambda w: {"group": w.group}, 403, 403, 200),
    ("POST", "/api/ldap/group", lambda w: {"group": group_name(), "members": w.alice.name}, 403, 403, 200),
    ("PUT", "/api/ldap/group", lambda w: {"group": w.group, "user": w.bob.name, "action": "add"}, 403, 403, 200),
    ("DELETE", "/api/ldap/group", lambda w: {"group": w.group}, 403, 403, 200),
    ("GET", "/api/ldap/groups", lambda w: {}, 403, 403, 200),
    ("GET", "/api/ldap/sudo", lambda w: {"user": w.alice.name}, 403, 403, 200),
    ("POST", "/api/ldap/sudo", lambda w: {"user": w.alice.name}, 403, 403, 200),
    ("DELETE", "/api/ldap/sudo", lambda w: {"user": w.other_admin.name}, 403, 403, 200),
    ("POST", "/api/user/reset_password", lambda w: {"user": w.alice.name, "password": NEW_PASSWORD,
                                                    "current_password": PASSWORD}, 200, 403, 200),
    ("GET", "/api/audit", lambda w: {}, 403, 403, 200),
]


def call(client, method: str, path: str, params: dict[str, str], headers: dict[str, str]):
    if method == "GET":
        return client.get(path, query_string=params, headers=headers)
    return client.open(path, method=method, data=params, headers=headers)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, params, for_alice, for_bob, for_admin", ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_access_matrix(app, client, make_user, caller, method, path, params, for_alice, for_bob, for_admin):
    world = World(app, make_user, alice_password=PASSWORD if path == "/api/user/reset_password" else None)
    expected = {"alice": for_alice, "bob": for_bob, "admin": for_admin}.get(caller, 401)
    response = call(client, method, path, params(world), world.headers(caller))
    status, message = envelope(response)
    assert status == expected, message
    if status == 403 and path != "/api/user/api_key":
        # Every refusal of a plain user is in the audit log.
        name = world.headers(caller)["X-SOCA-USER"]
        assert [e for e in audit_events(app, actor=name, success=False)], "refusal not audited"


# -- users ---------------------------------------------------------------------------------
def test_create_show_and_delete_a_user(app, client, admin):
    name = unique_name("carol")
    created = client.post("/api/ldap/user", headers=admin.headers,
                          data={"user": name, "password": NEW_PASSWORD, "email": "carol@example.com"})
    assert envelope(created) == (200, "Added user")  # no key in the answer

    shown = client.get(f"/api/ldap/user?user={name}", headers=admin.headers)
    status, message = envelope(shown)
    assert status == 200
    assert message["name"] == name and message["email"] == "carol@example.com"
    assert message["admin"] is False and message["active"] is True and message["groups"] == []
    assert message["created"].endswith("Z")

    # The new user fetches the key with the password, then uses it.
    key = client.get(f"/api/user/api_key?user={name}", headers={"X-SOCA-USER": name, "X-SOCA-PASSWORD": NEW_PASSWORD})
    carol = {"X-SOCA-USER": name, "X-SOCA-TOKEN": key.json["message"]}
    assert client.get("/api/scheduler/queues", headers=carol).status_code == 200

    listed = client.get("/api/ldap/users", headers=admin.headers).json["message"]
    assert listed[name]["email"] == "carol@example.com"

    before = user_row(app, name).session_epoch
    deleted = client.delete("/api/ldap/user", headers=admin.headers, data={"user": name})
    assert envelope(deleted) == (200, "Deleted user.")
    row = user_row(app, name)
    assert row.deleted_at is not None and row.is_active is False and row.session_epoch == before + 1
    assert client.get("/api/scheduler/queues", headers=carol).status_code == 401  # key revoked
    assert name not in client.get("/api/ldap/users", headers=admin.headers).json["message"]
    assert client.get(f"/api/ldap/user?user={name}", headers=admin.headers).status_code == 404
    events = audit_events(app, actor=admin.name, target=name)
    assert [e.action for e in events] == ["user.create", "user.delete"]


def test_deleted_user_keeps_job_history(app, client, admin, make_user):
    bob = make_user()
    job_id = add_job(app, bob.name, "normal", "F")
    assert client.delete("/api/ldap/user", headers=admin.headers, data={"user": bob.name}).status_code == 200
    from soca_api.extensions import db
    from soca_api.models import Job

    with app.app_context():
        assert db.session.get(Job, job_id).owner == bob.name


def test_sudoers_makes_an_admin(app, client, admin):
    name = unique_name("boss")
    response = client.post("/api/ldap/user", headers=admin.headers,
                           data={"user": name, "password": NEW_PASSWORD, "email": "b@example.com", "sudoers": "true"})
    assert response.status_code == 200
    assert user_row(app, name).is_admin is True


@pytest.mark.parametrize("data, status, fragment", [
    ({"user": "Bad Name", "password": NEW_PASSWORD, "email": "a@example.com"}, 400, "user is invalid"),
    ({"user": "fine", "password": "short", "email": "a@example.com"}, 400, "at least 10 characters"),
    ({"user": "fine", "password": NEW_PASSWORD, "email": "not-an-address"}, 400, "email is invalid"),
    ({"user": "fine", "password": NEW_PASSWORD}, 400, "email (str) parameter is required"),
    ({"user": "fine", "password": NEW_PASSWORD, "email": "a@example.com", "sudoers": "perhaps"}, 400, "sudoers"),
])
def test_create_user_validates_every_field(app, client, admin, data, status, fragment):
    data = dict(data)
    if data["user"] == "fine":
        data["user"] = unique_name("fine")
    response = client.post("/api/ldap/user", headers=admin.headers, data=data)
    got, message = envelope(response)
    assert got == status and fragment in message
    failed = audit_events(app, actor=admin.name, action="user.create", success=False)
    assert failed and fragment in failed[-1].detail


def test_existing_user_is_a_conflict(client, admin, make_user):
    bob = make_user()
    response = client.post("/api/ldap/user", headers=admin.headers,
                           data={"user": bob.name, "password": NEW_PASSWORD, "email": "b@example.com"})
    assert response.status_code == 409


def test_admin_cannot_delete_themselves(client, admin):
    response = client.delete(f"/api/ldap/user?user={admin.name}", headers=admin.headers)
    assert envelope(response) == (403, "You cannot delete your own user")
    assert client.get("/api/ldap/users", headers=admin.headers).status_code == 200


# -- groups --------------------------------------------------------------------------------
def test_group_lifecycle(app, client, admin, make_user):
    alice, bob = make_user(), make_user()
    name = group_name()
    created = client.post("/api/ldap/group", headers=admin.headers,
                          data={"group": name, "gid": str(random.randint(10**6, 2**31 - 1)),
                                "members": f"{alice.name}, {bob.name}"})
    assert envelope(created) == (200, "Group created")
    shown = client.get(f"/api/ldap/group?group={name}", headers=admin.headers).json["message"]
    assert shown["name"] == name and shown["members"] == sorted([alice.name, bob.name])

    removed = client.put("/api/ldap/group", headers=admin.headers,
                         data={"group": name, "user": bob.name, "action": "remove"})
    assert envelope(removed) == (200, f"User {bob.name} removed from group {name}")
    again = client.put("/api/ldap/group", headers=admin.headers,
                       data={"group": name, "user": bob.name, "action": "remove"})
    assert envelope(again) == (200, f"User {bob.name} is not in group {name}")
    added = client.put("/api/ldap/group", headers=admin.headers,
                       data={"group": name, "user": bob.name, "action": "add"})
    assert envelope(added) == (200, f"User {bob.name} added to group {name}")

    groups = client.get("/api/ldap/groups", headers=admin.headers).json["message"]
    assert groups[name]["members"] == sorted([alice.name, bob.name])
    assert set(groups[name]) == {"members", "gid"}
    user_groups = client.get(f"/api/ldap/user?user={alice.name}", headers=admin.headers).json["message"]["groups"]
    assert name in user_groups

    deleted = client.delete(f"/api/ldap/group?group={name}", headers=admin.headers)
    assert envelope(deleted) == (200, "Group deleted")
    assert client.get(f"/api/ldap/group?group={name}", headers=admin.headers).status_code == 404


@pytest.mark.parametrize("data, status, fragment", [
    ({"group": "Bad Group"}, 400, "group is invalid"),
    ({"gid": "-1"}, 400, "gid is invalid"),
    ({"gid": "99999999999"}, 400, "gid is invalid"),
    ({"members": "nobody_at_all_here"}, 404, "nobody_at_all_here does not exist"),
    ({"members": "ok,Bad Name"}, 400, "members is invalid"),
])
def test_create_group_validates(client, admin, data, status, fragment):
    data = {"group": group_name(), **data}
    status_got, message = envelope(client.post("/api/ldap/group", headers=admin.headers, data=data))
    assert status_got == status and fragment in message


def test_group_conflicts(app, client, admin):
    name = group_name()
    gid = str(random.randint(10**6, 2**31 - 1))
    assert client.post("/api/ldap/group", headers=admin.headers, data={"group": name, "gid": gid}).status_code == 200
    assert client.post("/api/ldap/group", headers=admin.headers, data={"group": name}).status_code == 409
    other = client.post("/api/ldap/group", headers=admin.headers, data={"group": group_name(), "gid": gid})
    assert other.status_code == 409 and f"gid {gid}" in other.json["message"]


def test_group_named_by_a_queue_rule_cannot_be_deleted(app, client, admin):
    group = make_group(app)
    queue = make_queue(app, allowed_groups=group)
    response = client.delete("/api/ldap/group", headers=admin.headers, data={"group": group})
    status, message = envelope(response)
    assert status == 409 and queue in message


def test_put_group_validates_action(app, client, admin, make_user):
    group = make_group(app)
    bob = make_user()
    response = client.put("/api/ldap/group", headers=admin.headers,
                          data={"group": group, "user": bob.name, "action": "drop"})
    assert response.status_code == 400 and "action is invalid" in response.json["message"]


# -- admin rights --------------------------------------------------------------------------
def test_sudo_takes_effect_on_the_next_request(app, client, admin, make_user):
    bob = make_user()
    assert client.get("/api/ldap/users", headers=bob.headers).status_code == 403
    assert client.get(f"/api/ldap/sudo?user={bob.name}", headers=admin.headers).json["message"] == {
        "user": bob.name, "admin": False}

    granted = client.post("/api/ldap/sudo", headers=admin.headers, data={"user": bob.name})
    assert envelope(granted) == (200, f"User {bob.name} is now an admin")
    assert client.get("/api/ldap/users", headers=bob.headers).status_code == 200  # same key, next request

    revoked = client.delete("/api/ldap/sudo", headers=admin.headers, data={"user": bob.name})
    assert envelope(revoked) == (200, f"User {bob.name} is no longer an admin")
    assert client.get("/api/ldap/users", headers=bob.headers).status_code == 403
    actions = [e.action for e in audit_events(app, target=bob.name, success=True)]
    assert actions[-2:] == ["user.grant_admin", "user.revoke_admin"]


def test_last_admin_cannot_revoke_themselves(isolated_app):
    client = isolated_app.test_client()
    only = new_account(isolated_app, admin=True)
    response = client.delete("/api/ldap/sudo", headers=only.headers, data={"user": only.name})
    status, message = envelope(response)
    assert status == 409 and "last admin" in message
    assert user_row(isolated_app, only.name).is_admin is True

    second = new_account(isolated_app, admin=True)
    assert client.delete("/api/ldap/sudo", headers=only.headers, data={"user": only.name}).status_code == 200
    # Now `second` is the last one.
    assert client.delete("/api/ldap/sudo", headers=second.headers, data={"user": second.name}).status_code == 409


# -- passwords -----------------------------------------------------------------------------
def test_self_service_password_needs_the_current_one(app, client, make_user):
    alice = make_user(password=PASSWORD)
    epoch = user_row(app, alice.name).session_epoch

    missing = client.post("/api/user/reset_password", headers=alice.headers,
                          data={"user": alice.name, "password": NEW_PASSWORD})
    assert missing.status_code == 400 and "current_password" in missing.json["message"]
    wrong = client.post("/api/user/reset_password", headers=alice.headers,
                        data={"user": alice.name, "password": NEW_PASSWORD, "current_password": "Not-The-One-1"})
    assert envelope(wrong) == (403, "The current password is not correct")
    weak = client.post("/api/user/reset_password", headers=alice.headers,
                       data={"user": alice.name, "password": "weak", "current_password": PASSWORD})
    assert weak.status_code == 400
    assert user_row(app, alice.name).session_epoch == epoch

    done = client.post("/api/user/reset_password", headers=alice.headers,
                       data={"user": alice.name, "password": NEW_PASSWORD, "current_password": PASSWORD})
    assert envelope(done) == (200, "Password updated correctly.")
    assert user_row(app, alice.name).session_epoch == epoch + 1  # every web session ends
    by_password = {"X-SOCA-USER": alice.name, "X-SOCA-PASSWORD": NEW_PASSWORD}
    assert client.get(f"/api/user/api_key?user={alice.name}", headers=by_password).status_code == 200
    assert client.get("/api/scheduler/queues", headers=alice.headers).status_code == 200  # keys stay
    failures = audit_events(app, actor=alice.name, action="user.password_reset", success=False)
    assert len(failures) == 3


def test_admin_resets_anyone_without_current_password(app, client, admin, make_user):
    bob = make_user(password=PASSWORD)
    epoch = user_row(app, bob.name).session_epoch
    response = client.post("/api/user/reset_password", headers=admin.headers,
                           data={"user": bob.name, "password": NEW_PASSWORD})
    assert envelope(response) == (200, "Password updated correctly.")
    assert user_row(app, bob.name).session_epoch == epoch + 1


def test_plain_user_cannot_reset_another_password(app, client, make_user):
    alice, bob = make_user(password=PASSWORD), make_user(password=PASSWORD)
    response = client.post("/api/user/reset_password", headers=bob.headers,
                           data={"user": alice.name, "password": NEW_PASSWORD, "current_password": PASSWORD})
    assert envelope(response) == (403, "You can only change your own password")
    assert audit_events(app, actor=bob.name, action="user.password_reset", success=False)


# -- queues --------------------------------------------------------------------------------
def test_queue_lifecycle_with_rules(app, client, admin):
    name = queue_name()
    created = client.post("/api/scheduler/queue", headers=admin.headers, data={
        "name": name, "type": "execution", "allowed_users": "alice, bob", "max_walltime": "86400",
        "allowed_instance_types": "c5,m5.large", "default_resources": "instance_type=c5.large,walltime=01:00:00"})
    assert envelope(created) == (200, "Queue created")

    shown = client.get(f"/api/scheduler/queue?name={name}", headers=admin.headers).json["message"]
    assert shown["name"] == name and shown["enabled"] is True
    rules = shown["rules"]
    assert rules["allowed_users"] == ["alice", "bob"]
    assert rules["max_walltime"] == "24:00:00"
    assert rules["allowed_instance_types"] == ["c5", "m5.large"]
    assert rules["default_resources"] == {"instance_type": "c5.large", "walltime": "01:00:00"}
    assert rules["max_cpus_per_job"] is None

    changed = client.put("/api/scheduler/queue", headers=admin.headers,
                         data={"name": name, "max_cpus_per_job": "16", "allowed_users": "", "enabled": "false"})
    assert envelope(changed) == (200, "Queue updated")
    shown = client.get(f"/api/scheduler/queue?name={name}", headers=admin.headers).json["message"]
    assert shown["enabled"] is False
    assert shown["rules"]["max_cpus_per_job"] == 16 and shown["rules"]["allowed_users"] is None
    assert shown["rules"]["max_walltime"] == "24:00:00"  # untouched

    listing = client.get("/api/scheduler/queues", headers=admin.headers).json
    assert name not in listing["message"]  # disabled
    assert {"name": name, "enabled": False, "scheduler": True} in listing["queues"]

    deleted = client.delete(f"/api/scheduler/queue?name={name}", headers=admin.headers)
    assert envelope(deleted) == (200, "Queue deleted")
    assert client.get(f"/api/scheduler/queue?name={name}", headers=admin.headers).status_code == 404
    actions = [e.action for e in audit_events(app, actor=admin.name, target=name)]
    assert actions == ["queue.create", "queue.update", "queue.delete"]


def test_queue_list_is_for_every_user(client, user):
    response = client.get("/api/scheduler/queues", headers=user.headers)
    status, names = envelope(response)
    assert status == 200 and "normal" in names and "high" in names


@pytest.mark.parametrize("field, value, fragment", [
    ("name", "1bad", "name is invalid"),
    ("name", "muchtoolongqueuename", "name is invalid"),
    ("allowed_users", "alice,Bad Name", "allowed_users is invalid"),
    ("excluded_users", "alice,,bob", "excluded_users is invalid"),
    ("allowed_groups", "grp;rm", "allowed_groups is invalid"),
    ("excluded_groups", " ", None),  # empty: no rule, accepted
    ("allowed_instance_types", "C5.LARGE", "allowed_instance_types is invalid"),
    ("excluded_instance_types", "c5..large", "excluded_instance_types is invalid"),
    ("restricted_parameters", "instance-type", "restricted_parameters is invalid"),
    ("max_walltime", "ten hours", "max_walltime is invalid"),
    ("max_walltime", "0", "max_walltime is invalid"),
    ("max_cpus_per_job", "0", "max_cpus_per_job is invalid"),
    ("max_cpus_per_job", "1.5", "max_cpus_per_job is invalid"),
    ("max_queued_jobs_per_user", "-3", "max_queued_jobs_per_user is invalid"),
    ("max_running_jobs_per_user", "many", "max_running_jobs_per_user is invalid"),
    ("default_resources", "walltime", "default_resources is invalid"),
    ("default_resources", "walltime=forever", "default_resources is invalid"),
    ("default_resources", "select=2:ncpus=4", "default_resources is invalid"),
    ("default_resources", "mem=lots", "default_resources is invalid"),
    ("default_resources", "instance_type=c5", "default_resources is invalid"),
    ("default_resources", "x=a b", "default_resources is invalid"),
    ("enabled", "maybe", "enabled is invalid"),
    ("colour", "blue", "Unknown queue setting colour"),
])
def test_queue_fields_are_validated(app, client, admin, field, value, fragment):
    data = {"name": queue_name(), field: value}
    response = client.post("/api/scheduler/queue", headers=admin.headers, data=data)
    status, message = envelope(response)
    if fragment is None:
        assert status == 200
        return
    assert status == 400 and fragment in message, message
    assert audit_events(app, actor=admin.name, action="queue.create", success=False)


def test_contradictory_rules_are_refused(client, admin):
    data = {"name": queue_name(), "max_walltime": "01:00:00", "default_resources": "walltime=02:00:00"}
    response = client.post("/api/scheduler/queue", headers=admin.headers, data=data)
    assert response.status_code == 400 and "max_walltime" in response.json["message"]
    data = {"name": queue_name(), "allowed_instance_types": "m5", "default_resources": "instance_type=c5.large"}
    response = client.post("/api/scheduler/queue", headers=admin.headers, data=data)
    assert response.status_code == 400 and "allowed_instance_types" in response.json["message"]


def test_existing_queue_is_a_conflict(app, client, admin):
    name = make_queue(app)
    assert client.post("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 409


def test_queue_with_active_jobs_cannot_be_deleted(app, client, admin, make_user):
    name = make_queue(app)
    bob = make_user()
    add_job(app, bob.name, name, "R")
    response = client.delete("/api/scheduler/queue", headers=admin.headers, data={"name": name})
    status, message = envelope(response)
    assert status == 409 and "1 active job" in message
    assert client.get(f"/api/scheduler/queue?name={name}", headers=admin.headers).status_code == 200


def test_finished_jobs_do_not_block_deletion(app, client, admin, make_user):
    name = make_queue(app)
    add_job(app, make_user().name, name, "F")
    assert client.delete("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 200


def test_slurm_queue_needs_a_partition(app, client, admin, monkeypatch):
    name = queue_name()
    monkeypatch.setitem(app.extensions, "soca_scheduler", fake_adapter("slurm", ["batch", name]))
    assert client.post("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 200
    other = queue_name()
    response = client.post("/api/scheduler/queue", headers=admin.headers, data={"name": other})
    status, message = envelope(response)
    assert status == 400 and f"no partition {other}" in message


def test_queue_listing_on_a_scheduler_is_the_intersection(app, client, user, monkeypatch):
    name = make_queue(app)
    monkeypatch.setitem(app.extensions, "soca_scheduler", fake_adapter("pbs", ["normal", "workq"]))
    body = client.get("/api/scheduler/queues", headers=user.headers).json
    assert "normal" in body["message"] and name not in body["message"] and "workq" not in body["message"]
    assert {"name": name, "enabled": True, "scheduler": False} in body["queues"]
    assert {"name": "normal", "enabled": True, "scheduler": True} in body["queues"]

    monkeypatch.setitem(app.extensions, "soca_scheduler", fake_adapter("pbs", fail=True))
    body = client.get("/api/scheduler/queues", headers=user.headers).json
    assert body["success"] is True and name in body["message"]  # cannot ask: recorded queues
    assert {"name": name, "enabled": True, "scheduler": None} in body["queues"]


def test_pbs_managed_queues_run_qmgr(app, client, admin, monkeypatch, tmp_path):
    log = fake_qmgr(str(tmp_path / "bin"))
    name = queue_name()
    adapter = fake_adapter("pbs", ["normal"], manage_queues=True, bin_dir=str(tmp_path / "bin"))
    monkeypatch.setitem(app.extensions, "soca_scheduler", adapter)

    assert client.post("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 200
    adapter.names.append(name)  # PBS has it now
    assert client.delete("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 200
    with open(log) as handle:
        calls = [line.rstrip("|\n").split("|") for line in handle]
    assert calls == [
        ["-c", f"create queue {name} queue_type=execution"],
        ["-c", f"set queue {name} enabled=True,started=True"],
        ["-c", f"delete queue {name}"],
    ]


def test_pbs_queues_are_left_alone_unless_managed(app, client, admin, monkeypatch, tmp_path):
    log = fake_qmgr(str(tmp_path / "bin"))
    adapter = fake_adapter("pbs", [], bin_dir=str(tmp_path / "bin"))
    monkeypatch.setitem(app.extensions, "soca_scheduler", adapter)
    name = queue_name()
    assert client.post("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 200
    assert client.delete("/api/scheduler/queue", headers=admin.headers, data={"name": name}).status_code == 200
    assert not os.path.exists(log)

    from soca_api.schedulers import make_adapter
    for managed in (False, True):
        config = {**app.config, "SOCA_SCHEDULER": "pbs", "SOCA_PBS_MANAGE_QUEUES": managed}
        assert make_adapter(config).capabilities.manages_queues is managed


def test_pbs_qmgr_refusal_creates_nothing(app, client, admin, monkeypatch, tmp_path):
    fake_qmgr(str(tmp_path / "bin"), exit_code=1, stderr="qmgr obj=x svr=default: Unauthorized Request")
    adapter = fake_adapter("pbs", [], manage_queues=True, bin_dir=str(tmp_path / "bin"))
    monkeypatch.setitem(app.extensions, "soca_scheduler", adapter)
    name = queue_name()
    response = client.post("/api/scheduler/queue", headers=admin.headers, data={"name": name})
    assert response.status_code == 502
    assert "Unauthorized Request" in response.json["stderr"]
    assert client.get(f"/api/scheduler/queue?name={name}", headers=admin.headers).status_code == 404


# -- audit log -----------------------------------------------------------------------------
def test_audit_paging_and_filters(app, client, admin, make_user):
    bob = make_user()
    groups = [group_name() for _ in range(5)]
    for name in groups:
        assert client.post("/api/ldap/group", headers=admin.headers, data={"group": name}).status_code == 200
    client.get("/api/ldap/users", headers=bob.headers)  # a refusal, by bob

    seen, before = [], None
    for _ in range(3):
        params = {"user": admin.name, "action": "group.create", "limit": 2}
        if before:
            params["before"] = before
        page = client.get("/api/audit", headers=admin.headers, query_string=params).json["message"]
        seen += [event["target"] for event in page["events"]]
        before = page["next_before"]
    assert seen == list(reversed(groups)) and before is None  # newest first, then the end

    by_prefix = client.get("/api/audit", headers=admin.headers,
                           query_string={"user": admin.name, "action": "group.*"}).json["message"]["events"]
    assert {event["action"] for event in by_prefix} == {"group.create"} and len(by_prefix) == 5
    event = by_prefix[0]
    assert set(event) == {"id", "at", "actor", "action", "target", "success", "detail", "remote_addr"}

    refusals = client.get("/api/audit", headers=admin.headers,
                          query_string={"user": bob.name}).json["message"]["events"]
    assert refusals and refusals[0]["success"] is False and refusals[0]["action"] == "user.list"

    now = datetime.now(UTC)
    future = (now + timedelta(hours=1)).isoformat()
    past = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.get("/api/audit", headers=admin.headers,
                      query_string={"user": admin.name, "since": future}).json["message"]["events"] == []
    assert len(client.get("/api/audit", headers=admin.headers,
                          query_string={"user": admin.name, "since": past}).json["message"]["events"]) == 5
    assert client.get("/api/audit", headers=admin.headers,
                      query_string={"user": admin.name, "until": past}).json["message"]["events"] == []


@pytest.mark.parametrize("params, fragment", [
    ({"limit": "0"}, "limit is invalid"),
    ({"limit": "1001"}, "limit is invalid"),
    ({"limit": "ten"}, "limit is invalid"),
    ({"before": "x"}, "before is invalid"),
    ({"since": "yesterday"}, "since is invalid"),
    ({"until": "2026-13-45"}, "until is invalid"),
    ({"action": "user.%"}, "action is invalid"),
    ({"user": "a b"}, "user is invalid"),
])
def test_audit_filters_are_validated(client, admin, params, fragment):
    status, message = envelope(client.get("/api/audit", headers=admin.headers, query_string=params))
    assert status == 400 and fragment in message


def test_audit_default_and_maximum_page(app, client, admin):
    page = client.get("/api/audit", headers=admin.headers).json["message"]
    assert len(page["events"]) <= 100
    ids = [event["id"] for event in page["events"]]
    assert ids == sorted(ids, reverse=True)
    assert client.get("/api/audit?limit=1000", headers=admin.headers).status_code == 200


def test_spec_documents_every_admin_endpoint(app, client):
    spec = client.get("/api/doc/apispec.json").json
    for path in ("/api/scheduler/queues", "/api/scheduler/queue", "/api/ldap/user", "/api/ldap/users",
                 "/api/ldap/group", "/api/ldap/groups", "/api/ldap/sudo", "/api/user/reset_password", "/api/audit"):
        assert path in spec["paths"], path
    queue_post = {p["name"] for p in spec["paths"]["/api/scheduler/queue"]["post"]["parameters"]}
    assert {"name", "type", "max_walltime", "default_resources", "allowed_groups"} <= queue_post
