"""Queue rules, checked on every backend before the scheduler is called.

SOCA left these to PBS hooks, so a user learned of a breach only through qsub's stderr
(docs/reference/soca-contract.md, defect 6). Here each refusal names the queue and the rule, and lands in
the audit log as `job.refused`. The rules and their meaning are described in
`soca_api.services.queues`.

Order: the queue (exists 400, enabled 403), who may use it (403), resources the user may
not set (403, judged on what the script itself asks for), then the queue's defaults are
applied and the result is checked: instance types (403), walltime and cpus (400), and the
user's queued and running jobs in the queue (403).
"""
from __future__ import annotations

import dataclasses

from soca_api.errors import ApiError
from soca_api.models import User
from soca_api.pbs import script as pbs_script
from soca_api.schedulers.values import JobRequest
from soca_api.services import audit, queues
from soca_api.services.queues import EVERYONE, Rules, type_matches

# Resources whose values hold chunk resources ("2:ncpus=4:instance_type=c5.large").
_CHUNKED = ("select", "nodes")


def check_submission(user: User, request: JobRequest, queue_name: str) -> JobRequest:
    """Raise ApiError (400/403, naming the queue and the rule) when the job breaks a rule.

    Returns a copy of the request with the queue's default resources applied. A refusal is
    recorded (and committed) in the audit log, so call this before adding anything to the
    session that must not be committed with it.
    """
    try:
        return _check(user, request, queue_name)
    except ApiError as exc:
        audit.record("job.refused", actor=user.name, target=queue_name[:128], success=False,
                     detail=exc.message)
        raise


def usable_queues(user: User) -> list[str]:
    """The queues a job can go to that let this user in (what a submit form offers)."""
    names, _annotated = queues.queue_listing()
    usable = []
    for name in names:
        queue = queues.find_queue(name)
        if queue is None:
            continue  # deleted since the listing was read
        try:
            _check_user(user, Rules.from_json(queue.rules), name)
        except ApiError:
            continue
        usable.append(name)
    return usable


def _check(user: User, request: JobRequest, queue_name: str) -> JobRequest:
    queue = queues.queue_settings(queue_name)
    if queue is None:
        usable = [q.name for q in queues.list_queues() if q.enabled]
        raise ApiError(400, f"Queue {queue_name} does not exist (queues: {', '.join(usable) or 'none'})")
    if not queue.enabled:
        raise ApiError(403, f"Queue {queue_name} is disabled")
    rules = Rules.from_json(queue.rules)
    _check_user(user, rules, queue_name)
    set_by_user = requested_resources(request)
    _check_restricted(set_by_user, rules, queue_name)
    request = apply_defaults(request, rules, queue_name)
    _check_instance_types(request, rules, queue_name)
    _check_limits(request, rules, queue_name)
    _check_job_counts(user, rules, queue_name)
    return request


def requested_resources(request: JobRequest) -> dict[str, list[str]]:
    """Every resource the job sets, job-wide or inside a select/nodes chunk: name -> values."""
    found: dict[str, list[str]] = {}
    for name, value in request.resources.items():
        found.setdefault(name, []).append(value)
        if name in _CHUNKED:
            for chunk in value.split("#", 1)[0].split("+"):
                for item in chunk.split(":"):
                    key, sep, chunk_value = item.partition("=")
                    if sep and key:
                        found.setdefault(key, []).append(chunk_value)
    return found


def _check_user(user: User, rules: Rules, queue_name: str) -> None:
    if EVERYONE in rules.excluded_users or user.name in rules.excluded_users:
        raise ApiError(403, f"User {user.name} is not allowed on queue {queue_name} (excluded_users)")
    # Group membership costs a query: read it only when a rule names groups.
    needs_groups = bool(rules.excluded_groups) or (
        bool(rules.allowed_groups) and EVERYONE not in rules.allowed_users and user.name not in rules.allowed_users)
    groups = {group.name for group in user.groups} if needs_groups else set()
    excluded = sorted(groups.intersection(rules.excluded_groups))
    if EVERYONE in rules.excluded_groups or excluded:
        shown = ", ".join(excluded) or EVERYONE
        raise ApiError(403, f"User {user.name} is not allowed on queue {queue_name} (excluded_groups: {shown})")
    if not rules.allowed_users and not rules.allowed_groups:
        return  # no allow list at all: everyone who is not excluded
    if EVERYONE in rules.allowed_users or user.name in rules.allowed_users:
        return
    if EVERYONE in rules.allowed_groups or groups.intersection(rules.allowed_groups):
        return
    # Name the groups (whom to ask to join), never the other users allowed.
    which = []
    if rules.allowed_users:
        which.append("allowed_users")
    if rules.allowed_groups:
        which.append("allowed_groups: " + ", ".join(rules.allowed_groups))
    raise ApiError(403, f"User {user.name} is not allowed on queue {queue_name} ({'; '.join(which)})")


def _check_restricted(set_by_user: dict[str, list[str]], rules: Rules, queue_name: str) -> None:
    for name in rules.restricted_parameters:
        if name in set_by_user:
            raise ApiError(403, f"{name} cannot be set on queue {queue_name} "
                                f"(restricted_parameters: {', '.join(rules.restricted_parameters)})")


def apply_defaults(request: JobRequest, rules: Rules, queue_name: str) -> JobRequest:
    """A copy of `request` with the queue's defaults for the resources it does not set.

    max_walltime doubles as the default walltime (as Slurm's MaxTime does for DefaultTime),
    so that no job on a limited queue runs without a limit.
    """
    defaults = dict(rules.default_resources)
    if rules.max_walltime is not None and "walltime" not in defaults:
        defaults["walltime"] = pbs_script.format_walltime(rules.max_walltime)
    set_anywhere = requested_resources(request)
    chunked = any(name in request.resources for name in _CHUNKED)
    added = {}
    for name, value in defaults.items():
        if name in set_anywhere:
            continue
        # With select or nodes the cpus and memory belong to the chunks the user wrote.
        if chunked and name in ("ncpus", "mem"):
            continue
        added[name] = value
    if not added:
        return request
    resources = {**request.resources, **added}
    try:
        totals = pbs_script.parse_script(queues.resource_directive(resources))
    except pbs_script.ScriptError:
        raise ApiError(400, f"The job cannot take the defaults of queue {queue_name} "
                            f"(default_resources: {', '.join(sorted(added))})") from None
    return dataclasses.replace(request, resources=resources, ncpus=totals.ncpus, nodes=totals.nodes,
                               mem_bytes=totals.mem_bytes, walltime_seconds=totals.walltime_seconds)


def _instance_types(request: JobRequest) -> list[str]:
    """Every instance type asked for: `c5.large+m5.xlarge` job-wide and in each chunk."""
    types: list[str] = []
    for value in requested_resources(request).get("instance_type", []):
        types.extend(part for part in value.split("+") if part)
    return types


def _check_instance_types(request: JobRequest, rules: Rules, queue_name: str) -> None:
    for instance_type in _instance_types(request):
        if rules.allowed_instance_types and not type_matches(instance_type, rules.allowed_instance_types):
            raise ApiError(403, f"{instance_type} is not allowed on queue {queue_name} "
                                f"(allowed_instance_types: {', '.join(rules.allowed_instance_types)})")
        if type_matches(instance_type, rules.excluded_instance_types):
            raise ApiError(403, f"{instance_type} is not allowed on queue {queue_name} "
                                f"(excluded_instance_types: {', '.join(rules.excluded_instance_types)})")


def _check_limits(request: JobRequest, rules: Rules, queue_name: str) -> None:
    if (rules.max_walltime is not None and request.walltime_seconds is not None
            and request.walltime_seconds > rules.max_walltime):
        asked = pbs_script.format_walltime(request.walltime_seconds)
        limit = pbs_script.format_walltime(rules.max_walltime)
        raise ApiError(400, f"walltime {asked} is longer than queue {queue_name} allows (max_walltime: {limit})")
    if rules.max_cpus_per_job is not None and request.ncpus > rules.max_cpus_per_job:
        raise ApiError(400, f"{request.ncpus} cpus are more than queue {queue_name} allows for one job "
                            f"(max_cpus_per_job: {rules.max_cpus_per_job})")


def _check_job_counts(user: User, rules: Rules, queue_name: str) -> None:
    if rules.max_queued_jobs_per_user is None and rules.max_running_jobs_per_user is None:
        return
    queued, running = queues.user_job_counts(user.name, queue_name)
    limit = rules.max_queued_jobs_per_user
    if limit is not None and queued >= limit:
        raise ApiError(403, f"User {user.name} already has {queued} queued job(s) on queue {queue_name} "
                            f"(max_queued_jobs_per_user: {limit})")
    limit = rules.max_running_jobs_per_user
    if limit is not None and running >= limit:
        raise ApiError(403, f"User {user.name} already has {running} running job(s) on queue {queue_name} "
                            f"(max_running_jobs_per_user: {limit})")
