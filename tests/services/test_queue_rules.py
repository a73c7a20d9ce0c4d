"""Queue rules as `check_submission` enforces them before any scheduler is called, and
through POST /api/scheduler/job."""
from __future__ import annotations

import pytest

from soca_api.errors import ApiError
from soca_api.pbs.script import parse_script
from soca_api.services import accounts, queue_rules
from tests.admin_fixtures import account as new_account
from tests.admin_fixtures import (
    add_job,
    audit_events,
    fresh_app,
    make_group,
    make_queue,
)
from tests.helpers import SEED_PAYLOAD, SEED_SCRIPT, encode

PLAIN = "#!/bin/bash\n#PBS -N plain\n/bin/true\n"


@pytest.fixture
def isolated_app():
    yield from fresh_app()


def script(*resources: str) -> str:
    lines = "".join(f"#PBS -l {item}\n" for item in resources)
    return f"#!/bin/bash\n#PBS -N rules\n{lines}/bin/true\n"


def check(app, user_name: str, text: str, queue: str):
    """check_submission on a parsed script; returns the request or the ApiError."""
    with app.app_context():
        user = accounts.get_user_or_404(user_name)
        try:
            return queue_rules.check_submission(user, parse_script(text), queue)
        except ApiError as exc:
            return exc


def refused(result, status: int) -> str:
    assert isinstance(result, ApiError), f"expected a refusal, got {result!r}"
    assert result.status == status, result.message
    return result.message


def accepted(result):
    assert not isinstance(result, ApiError), result.message
    return result


# -- queue and access ----------------------------------------------------------------------
def test_unknown_and_disabled_queues(app, user):
    message = refused(check(app, user.name, PLAIN, "nosuchqueue"), 400)
    assert message.startswith("Queue nosuchqueue does not exist") and "normal" in message
    disabled = make_queue(app, enabled=False)
    assert refused(check(app, user.name, PLAIN, disabled), 403) == f"Queue {disabled} is disabled"


def test_empty_allowed_lists_mean_everyone(app, make_user):
    queue = make_queue(app)
    for account in (make_user(), make_user(), make_user(admin=True)):
        accepted(check(app, account.name, PLAIN, queue))


def test_empty_allowed_users_with_allowed_groups_means_only_members(app, make_user):
    member, outsider = make_user(), make_user()
    group = make_group(app, member.name)
    queue = make_queue(app, allowed_groups=group)
    accepted(check(app, member.name, PLAIN, queue))
    message = refused(check(app, outsider.name, PLAIN, queue), 403)
    assert message == f"User {outsider.name} is not allowed on queue {queue} (allowed_groups: {group})"


def test_allowed_users_lists_only_those_users(app, make_user):
    alice, bob = make_user(), make_user()
    queue = make_queue(app, allowed_users=alice.name)
    accepted(check(app, alice.name, PLAIN, queue))
    message = refused(check(app, bob.name, PLAIN, queue), 403)
    assert message == f"User {bob.name} is not allowed on queue {queue} (allowed_users)"
    assert alice.name not in message  # never tell who else may use it


def test_users_or_groups_either_admits(app, make_user):
    alice, member, outsider = make_user(), make_user(), make_user()
    group = make_group(app, member.name)
    queue = make_queue(app, allowed_users=alice.name, allowed_groups=group)
    accepted(check(app, alice.name, PLAIN, queue))
    accepted(check(app, member.name, PLAIN, queue))
    message = refused(check(app, outsider.name, PLAIN, queue), 403)
    assert "allowed_users; allowed_groups: " + group in message


def test_star_means_everyone(app, make_user):
    queue = make_queue(app, allowed_users="*")
    accepted(check(app, make_user().name, PLAIN, queue))
    closed = make_queue(app, excluded_users="*")
    assert "(excluded_users)" in refused(check(app, make_user().name, PLAIN, closed), 403)


def test_exclusions_win_over_allowances(app, make_user):
    alice, intern = make_user(), make_user()
    interns = make_group(app, intern.name)
    queue = make_queue(app, allowed_users=f"{alice.name},{intern.name}", excluded_groups=interns)
    accepted(check(app, alice.name, PLAIN, queue))
    message = refused(check(app, intern.name, PLAIN, queue), 403)
    assert message == f"User {intern.name} is not allowed on queue {queue} (excluded_groups: {interns})"
    queue2 = make_queue(app, allowed_users="*", excluded_users=alice.name)
    assert "(excluded_users)" in refused(check(app, alice.name, PLAIN, queue2), 403)


def test_membership_change_applies_to_the_next_submission(app, client, admin, make_user):
    bob = make_user()
    group = make_group(app)
    queue = make_queue(app, allowed_groups=group)
    refused(check(app, bob.name, PLAIN, queue), 403)
    client.put("/api/ldap/group", headers=admin.headers, data={"group": group, "user": bob.name, "action": "add"})
    accepted(check(app, bob.name, PLAIN, queue))


# -- instance types and restricted parameters ----------------------------------------------
def test_allowed_instance_types_by_type_and_family(app, user):
    queue = make_queue(app, allowed_instance_types="c5,m5.large")
    accepted(check(app, user.name, script("instance_type=c5.24xlarge"), queue))  # family c5
    accepted(check(app, user.name, script("instance_type=m5.large"), queue))
    accepted(check(app, user.name, PLAIN, queue))  # no type asked: nothing to refuse
    message = refused(check(app, user.name, script("instance_type=m5.xlarge"), queue), 403)
    assert message == f"m5.xlarge is not allowed on queue {queue} (allowed_instance_types: c5, m5.large)"
    # Each part of a+b is checked.
    message = refused(check(app, user.name, script("instance_type=c5.large+r5.xlarge"), queue), 403)
    assert message.startswith(f"r5.xlarge is not allowed on queue {queue}")
    # A family is not a prefix: c5n is not c5.
    refused(check(app, user.name, script("instance_type=c5n.large"), queue), 403)


def test_excluded_instance_types(app, user):
    queue = make_queue(app, excluded_instance_types="c5.24xlarge,p3")
    accepted(check(app, user.name, script("instance_type=c5.large"), queue))
    message = refused(check(app, user.name, script("instance_type=c5.24xlarge"), queue), 403)
    assert message == f"c5.24xlarge is not allowed on queue {queue} (excluded_instance_types: c5.24xlarge, p3)"
    refused(check(app, user.name, script("instance_type=p3.2xlarge"), queue), 403)


def test_instance_type_inside_select_chunks_is_checked(app, user):
    queue = make_queue(app, allowed_instance_types="c5")
    refused(check(app, user.name, script("select=1:ncpus=2:instance_type=r5.large"), queue), 403)
    accepted(check(app, user.name, script("select=1:ncpus=2:instance_type=c5.large"), queue))


def test_restricted_instance_type_refuses_the_seed_script_as_is(app, user):
    queue = make_queue(app, restricted_parameters="instance_type")
    message = refused(check(app, user.name, SEED_SCRIPT, queue), 403)
    assert message == f"instance_type cannot be set on queue {queue} (restricted_parameters: instance_type)"
    accepted(check(app, user.name, SEED_SCRIPT.replace(",instance_type=c5.large", ""), queue))
    # Not through a select chunk either.
    refused(check(app, user.name, script("select=1:ncpus=1:instance_type=c5.large"), queue), 403)


def test_restricted_parameters_do_not_stop_defaults(app, user):
    queue = make_queue(app, restricted_parameters="instance_type", default_resources="instance_type=c5.large")
    request = accepted(check(app, user.name, PLAIN, queue))
    assert request.resources["instance_type"] == "c5.large"


# -- limits and defaults -------------------------------------------------------------------
def test_max_walltime(app, user):
    queue = make_queue(app, max_walltime="01:00:00")
    accepted(check(app, user.name, script("walltime=01:00:00"), queue))
    message = refused(check(app, user.name, script("walltime=2:00:00"), queue), 400)
    assert message == f"walltime 02:00:00 is longer than queue {queue} allows (max_walltime: 01:00:00)"
    # No walltime asked: the limit is the job's walltime.
    request = accepted(check(app, user.name, PLAIN, queue))
    assert request.walltime_seconds == 3600 and request.resources["walltime"] == "01:00:00"


def test_max_cpus_per_job(app, user):
    queue = make_queue(app, max_cpus_per_job="4")
    accepted(check(app, user.name, script("ncpus=4"), queue))
    message = refused(check(app, user.name, script("select=2:ncpus=4"), queue), 400)
    assert message == f"8 cpus are more than queue {queue} allows for one job (max_cpus_per_job: 4)"


def test_default_resources_fill_what_the_script_leaves_out(app, user):
    queue = make_queue(app, default_resources="instance_type=c5.large,walltime=00:30:00,mem=2gb,ncpus=2")
    original = parse_script(PLAIN)
    with app.app_context():
        request = queue_rules.check_submission(accounts.get_user_or_404(user.name), original, queue)
    assert request.resources == {"instance_type": "c5.large", "walltime": "00:30:00", "mem": "2gb", "ncpus": "2"}
    assert request.walltime_seconds == 1800 and request.mem_bytes == 2 * 1024**3 and request.ncpus == 2
    assert original.resources == {} and original.walltime_seconds is None  # a copy, not a change

    own = accepted(check(app, user.name, script("instance_type=m5.large", "walltime=10:00"), queue))
    assert own.resources["instance_type"] == "m5.large" and own.walltime_seconds == 600
    assert own.resources["mem"] == "2gb"

    # With select, cpus and memory are the chunks' business: no job-wide default for them.
    chunked = accepted(check(app, user.name, script("select=2:ncpus=3"), queue))
    assert "mem" not in chunked.resources and "ncpus" not in chunked.resources and chunked.ncpus == 6
    assert chunked.resources["instance_type"] == "c5.large"


def test_default_instance_type_must_pass_the_type_rules(app, user):
    queue = make_queue(app, allowed_instance_types="c5", default_resources="instance_type=c5.large")
    request = accepted(check(app, user.name, PLAIN, queue))
    assert request.instance_types == ["c5.large"]


def test_max_queued_jobs_per_user(app, make_user):
    bob, other = make_user(), make_user()
    queue = make_queue(app, max_queued_jobs_per_user="2")
    add_job(app, bob.name, queue, "Q")
    parent = add_job(app, bob.name, queue, "H")
    add_job(app, bob.name, queue, "Q", parent_id=parent, array_index=1)  # a subjob: not counted
    add_job(app, bob.name, queue, "R")  # running: not queued
    add_job(app, bob.name, "normal", "Q")  # another queue
    message = refused(check(app, bob.name, PLAIN, queue), 403)
    assert message == f"User {bob.name} already has 2 queued job(s) on queue {queue} (max_queued_jobs_per_user: 2)"
    accepted(check(app, other.name, PLAIN, queue))


def test_max_running_jobs_per_user(app, make_user):
    bob = make_user()
    queue = make_queue(app, max_running_jobs_per_user="1")
    add_job(app, bob.name, queue, "Q")
    accepted(check(app, bob.name, PLAIN, queue))
    job_id = add_job(app, bob.name, queue, "R")
    message = refused(check(app, bob.name, PLAIN, queue), 403)
    assert "(max_running_jobs_per_user: 1)" in message and "1 running job(s)" in message
    # A finished or deleted job frees the slot.
    from soca_api.extensions import db
    from soca_api.models import Job

    with app.app_context():
        db.session.get(Job, job_id).state = "F"
        db.session.commit()
    accepted(check(app, bob.name, PLAIN, queue))


def test_every_refusal_is_audited(app, make_user):
    bob = make_user()
    queue = make_queue(app, restricted_parameters="instance_type")
    message = refused(check(app, bob.name, SEED_SCRIPT, queue), 403)
    events = audit_events(app, actor=bob.name, action="job.refused")
    assert [(e.target, e.success, e.detail) for e in events] == [(queue, False, message)]


# -- through the job endpoint --------------------------------------------------------------
def test_rules_apply_through_the_job_endpoint(app, client, make_user):
    member, outsider = make_user(), make_user()
    group = make_group(app, member.name)
    queue = make_queue(app, allowed_groups=group, restricted_parameters="instance_type")
    seed_here = SEED_SCRIPT.replace("#PBS -q normal", f"#PBS -q {queue}")

    refused_outsider = client.post("/api/scheduler/job", headers=outsider.headers,
                                   data={"payload": encode(seed_here.replace(",instance_type=c5.large", ""))})
    assert refused_outsider.status_code == 403
    assert refused_outsider.json == {"success": False, "message":
                                     f"User {outsider.name} is not allowed on queue {queue} (allowed_groups: {group})"}

    seed_refused = client.post("/api/scheduler/job", headers=member.headers, data={"payload": encode(seed_here)})
    assert seed_refused.status_code == 403
    assert "restricted_parameters: instance_type" in seed_refused.json["message"]

    accepted_job = client.post("/api/scheduler/job", headers=member.headers,
                               data={"payload": encode(seed_here.replace(",instance_type=c5.large", ""))})
    assert accepted_job.status_code == 200, accepted_job.json
    job_id = accepted_job.json["message"]
    client.delete(f"/api/scheduler/job?job_id={job_id}", headers=member.headers)


def test_seed_payload_verbatim_refused_by_a_restricted_normal_queue(isolated_app):
    """The seed's own queue, on a database of its own: the seed's curl, byte for byte."""
    from soca_api.services import queues

    with isolated_app.app_context():
        queues.update_queue("normal", changes={"restricted_parameters": "instance_type"})
    alice = new_account(isolated_app)
    response = isolated_app.test_client().post("/api/scheduler/job", headers=alice.headers,
                                               data={"payload": SEED_PAYLOAD})
    assert response.status_code == 403
    assert response.json == {"success": False, "message":
                             "instance_type cannot be set on queue normal (restricted_parameters: instance_type)"}


@pytest.mark.parametrize("rules", [{}, {"allowed_users": "*"}])
def test_seed_payload_verbatim_accepted_by_an_open_normal_queue(isolated_app, rules):
    from soca_api.services import queues

    with isolated_app.app_context():
        queues.update_queue("normal", changes=rules)
    alice = new_account(isolated_app)
    response = isolated_app.test_client().post("/api/scheduler/job", headers=alice.headers,
                                               data={"payload": SEED_PAYLOAD})
    assert response.status_code == 200, response.json
    assert response.json["message"].isdigit()
