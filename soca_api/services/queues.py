"""Queues and their rules: parsing, validation, storage, and the scheduler's side of a queue.

Used by the admin API (`/api/scheduler/queue(s)`) and the CLI (`flask --app wsgi queue ...`);
`soca_api.services.queue_rules` enforces the rules on every submission.

Rules are stored in `Queue.rules` (JSON) in a normalised form and only when set (an absent
key is "no rule"); `Queue.enabled` is a column. Every rule arrives as text (a form field,
a query string parameter or a CLI option) and is validated strictly here:

- `allowed_users`, `excluded_users`, `allowed_groups`, `excluded_groups`: comma-separated
  names; `*` means everyone. When `allowed_users` AND `allowed_groups` are both empty,
  everyone may submit; otherwise only the users listed and the members of the groups
  listed. Exclusions win over allowances.
- `allowed_instance_types`, `excluded_instance_types`: instance types (`c5.large`) or
  families (`c5`, which matches every `c5.*`); `*` means every type. An empty allowed list
  allows every type; a job that sets no instance type passes these rules.
- `restricted_parameters`: `-l` resource names users may not set (`instance_type`, ...),
  also inside `select=` chunks.
- `max_walltime` (`[[h:]m:]s` or seconds), `max_cpus_per_job`, `max_queued_jobs_per_user`,
  `max_running_jobs_per_user`: positive whole numbers. A job without a walltime on a queue
  with `max_walltime` gets that walltime.
- `default_resources`: `name=value,...` added to a job that sets none of that resource
  (`select`, `nodes` and `place` cannot be defaulted: the chunk layout is the user's).

Giving a rule an empty value clears it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from soca_api.errors import ApiError
from soca_api.extensions import db, read_row
from soca_api.models import Job, Queue
from soca_api.pbs import script as pbs_script
from soca_api.schedulers import get_adapter
from soca_api.schedulers.errors import SchedulerError
from soca_api.services import audit
from soca_api.validation import GROUP_NAME, INSTANCE_TYPE, QUEUE_NAME, USER_NAME, is_valid

EVERYONE = "*"

# Job states as the jobs table records them. "T" is the job service's "recorded, not yet
# acknowledged by the scheduler": it counts as queued so that a burst cannot slip through.
QUEUED_STATES = ("Q", "H", "W", "T")
RUNNING_STATES = ("R", "E", "B", "S", "U")
ACTIVE_STATES = QUEUED_STATES + RUNNING_STATES

LIST_FIELDS = {
    "allowed_users": (USER_NAME, "user name"),
    "excluded_users": (USER_NAME, "user name"),
    "allowed_groups": (GROUP_NAME, "group name"),
    "excluded_groups": (GROUP_NAME, "group name"),
    "allowed_instance_types": (INSTANCE_TYPE, "instance type or family"),
    "excluded_instance_types": (INSTANCE_TYPE, "instance type or family"),
    "restricted_parameters": (re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"), "resource name"),
}
COUNT_FIELDS = ("max_cpus_per_job", "max_queued_jobs_per_user", "max_running_jobs_per_user")
RULE_FIELDS = (*LIST_FIELDS, "max_walltime", *COUNT_FIELDS, "default_resources")

# What the API documentation and the CLI help say about each rule.
RULE_HELP = {
    "allowed_users": "comma-separated user names allowed to submit (* = everyone)",
    "excluded_users": "comma-separated user names refused (* = everyone)",
    "allowed_groups": "comma-separated groups whose members may submit (* = everyone)",
    "excluded_groups": "comma-separated groups whose members are refused (* = everyone)",
    "allowed_instance_types": "comma-separated instance types (c5.large) or families (c5) allowed",
    "excluded_instance_types": "comma-separated instance types or families refused",
    "restricted_parameters": "comma-separated -l resource names users may not set (e.g. instance_type)",
    "max_walltime": "longest walltime, [[h:]m:]s or seconds (also the default walltime)",
    "max_cpus_per_job": "most cpus one job may ask for",
    "max_queued_jobs_per_user": "most waiting jobs (Q/H/W) a user may have in the queue",
    "max_running_jobs_per_user": "most running jobs (R/E/B) a user may have when submitting",
    "default_resources": "name=value,... added when the job sets none of that resource",
}

_MAX_COUNT = 1_000_000_000
_MAX_LIST_ITEMS = 1000
_WALLTIME = re.compile(r"^[0-9]{1,10}(:[0-9]{1,10}){0,2}$")
_COUNT = re.compile(r"^[0-9]{1,10}$")
_RESOURCE_NAME = LIST_FIELDS["restricted_parameters"][0]
# Printable, no spaces, commas, quotes or "=": a default can only ever be one -l value.
_RESOURCE_VALUE = re.compile(r"^[A-Za-z0-9_.:+@/-]{1,256}$")
# The chunk layout is the user's: a default select/nodes/place would silently change it.
_NOT_DEFAULTABLE = ("select", "nodes", "place")
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}


# -- rules ---------------------------------------------------------------------------------
@dataclass
class Rules:
    """A queue's rules, normalised; empty lists and None mean "no rule"."""

    allowed_users: list[str] = field(default_factory=list)
    excluded_users: list[str] = field(default_factory=list)
    allowed_groups: list[str] = field(default_factory=list)
    excluded_groups: list[str] = field(default_factory=list)
    allowed_instance_types: list[str] = field(default_factory=list)
    excluded_instance_types: list[str] = field(default_factory=list)
    restricted_parameters: list[str] = field(default_factory=list)
    max_walltime: int | None = None  # seconds
    max_cpus_per_job: int | None = None
    max_queued_jobs_per_user: int | None = None
    max_running_jobs_per_user: int | None = None
    default_resources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> Rules:
        """The rules stored on a queue; keys this version does not know are ignored."""
        rules = cls()
        for name, value in (data or {}).items():
            if name in RULE_FIELDS and value not in (None, "", [], {}):
                setattr(rules, name, value if not isinstance(value, str) else parse_rule(name, value))
        return rules

    def to_json(self) -> dict[str, object]:
        """Only the rules that are set, in RULE_FIELDS order."""
        out: dict[str, object] = {}
        for name in RULE_FIELDS:
            value = getattr(self, name)
            if value not in (None, [], {}):
                out[name] = value
        return out

    def display(self) -> dict[str, object]:
        """Every rule as an admin reads (and could type) it back; unset ones are null."""
        out: dict[str, object] = {}
        for name in RULE_FIELDS:
            value = getattr(self, name)
            if name == "max_walltime" and value is not None:
                value = pbs_script.format_walltime(value)
            out[name] = value if value not in ([], {}) else None
        return out


def parse_bool(name: str, text: str) -> bool:
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ApiError(400, f"{name} is invalid: it must be true or false")
    return value


def _parse_list(name: str, text: str) -> list[str]:
    pattern, what = LIST_FIELDS[name]
    items: list[str] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ApiError(400, f"{name} is invalid: it has an empty item (use a comma-separated list)")
        if item != EVERYONE and not pattern.fullmatch(item):
            raise ApiError(400, f'{name} is invalid: "{item[:40]}" is not a valid {what}')
        if item not in items:
            items.append(item)
    if len(items) > _MAX_LIST_ITEMS:
        raise ApiError(400, f"{name} is invalid: at most {_MAX_LIST_ITEMS} items")
    return items


def parse_walltime(name: str, text: str) -> int:
    """`[[h:]m:]s` or plain seconds, as PBS reads walltime, into seconds."""
    value = text.strip()
    if not _WALLTIME.fullmatch(value):
        raise ApiError(400, f"{name} is invalid: use [[hours:]minutes:]seconds (e.g. 24:00:00) or seconds")
    seconds = 0
    for part in value.split(":"):
        seconds = seconds * 60 + int(part)
    if not 1 <= seconds <= 2**31 - 1:
        raise ApiError(400, f"{name} is invalid: it must be from 1 second to {2**31 - 1} seconds")
    return seconds


def _parse_count(name: str, text: str) -> int:
    value = text.strip()
    if not _COUNT.fullmatch(value) or not 1 <= int(value) <= _MAX_COUNT:
        raise ApiError(400, f"{name} is invalid: it must be a whole number from 1 to {_MAX_COUNT}")
    return int(value)


def _script_problem(exc: pbs_script.ScriptError) -> str:
    """A parser message without its "Line 1:" and quoted directive: there was no script."""
    text = re.sub(r"^Line \d+: ", "", exc.message)
    return re.sub(r' in "#PBS [^"]*"', "", text)


def _parse_defaults(name: str, text: str) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for part in text.split(","):
        item = part.strip()
        resource, sep, value = item.partition("=")
        resource, value = resource.strip(), value.strip()
        if not sep or not _RESOURCE_NAME.fullmatch(resource) or not _RESOURCE_VALUE.fullmatch(value):
            raise ApiError(400, f'{name} is invalid: "{item[:40]}" must be resource=value '
                                "(printable, no spaces, commas, quotes or =)")
        if resource in _NOT_DEFAULTABLE:
            raise ApiError(400, f"{name} is invalid: {resource} cannot have a default "
                                "(the job's chunk layout is the user's)")
        if resource == "instance_type":
            for part_type in value.split("+"):
                # A default goes to the scheduler as it is: a family alone is no instance type.
                if not INSTANCE_TYPE.fullmatch(part_type) or "." not in part_type:
                    raise ApiError(400, f'{name} is invalid: instance_type "{part_type[:40]}" must be a '
                                        "full instance type such as c5.large")
        defaults[resource] = value
    # The script parser knows every resource's syntax: defaults must pass it as a job would.
    try:
        pbs_script.parse_script(resource_directive(defaults))
    except pbs_script.ScriptError as exc:
        raise ApiError(400, f"{name} is invalid: {_script_problem(exc)}") from None
    return defaults


def resource_directive(resources: Mapping[str, str]) -> str:
    """A one-line script asking for `resources` (values already validated)."""
    return "#PBS -l " + ",".join(f"{key}={value}" for key, value in resources.items()) + "\n"


def parse_rule(name: str, text: str) -> object:
    """One rule from its text form; raises ApiError(400) naming the field."""
    if name in LIST_FIELDS:
        return _parse_list(name, text)
    if name == "max_walltime":
        return parse_walltime(name, text)
    if name in COUNT_FIELDS:
        return _parse_count(name, text)
    if name == "default_resources":
        return _parse_defaults(name, text)
    raise ApiError(400, f"Unknown queue rule {name[:40]}")


def updated_rules(current: Mapping[str, object] | None, changes: Mapping[str, str]) -> Rules:
    """`current` with `changes` (field -> text; "" clears the rule) applied and checked."""
    rules = Rules.from_json(current)
    for name, text in changes.items():
        if name not in RULE_FIELDS:
            raise ApiError(400, f"Unknown queue rule {name[:40]} (known: {', '.join(RULE_FIELDS)})")
        if text is None or text.strip() == "":
            setattr(rules, name, getattr(Rules(), name))
        else:
            setattr(rules, name, parse_rule(name, text))
    _check_consistency(rules)
    return rules


def _check_consistency(rules: Rules) -> None:
    """Rules that contradict each other would refuse every job that relies on a default."""
    defaults = rules.default_resources
    if rules.max_walltime is not None and "walltime" in defaults:
        seconds = parse_walltime("default_resources", defaults["walltime"])
        if seconds > rules.max_walltime:
            raise ApiError(400, "default_resources is invalid: its walltime is longer than max_walltime")
    if (rules.max_cpus_per_job is not None and "ncpus" in defaults
            and int(defaults["ncpus"]) > rules.max_cpus_per_job):
        raise ApiError(400, "default_resources is invalid: its ncpus is more than max_cpus_per_job")
    for instance_type in defaults.get("instance_type", "").split("+"):
        if not instance_type:
            continue
        if rules.allowed_instance_types and not type_matches(instance_type, rules.allowed_instance_types):
            raise ApiError(400, f"default_resources is invalid: {instance_type} is not in allowed_instance_types")
        if type_matches(instance_type, rules.excluded_instance_types):
            raise ApiError(400, f"default_resources is invalid: {instance_type} is in excluded_instance_types")


def type_matches(instance_type: str, entries: Iterable[str]) -> bool:
    """`c5.large` matches the entries `c5.large`, `c5` (its family) and `*`."""
    instance_type = instance_type.lower()
    family = instance_type.split(".", 1)[0]
    return any(entry in (EVERYONE, instance_type) or "." not in entry and entry == family for entry in entries)


# -- queues --------------------------------------------------------------------------------
class QueueSettings(Protocol):
    """A queue row's `enabled` and `rules` (a Queue, or a plain row of just those)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def rules(self) -> dict[str, Any]: ...


_QUEUE_BY_NAME = sa.select(Queue).where(Queue.name == sa.bindparam("name"))
_QUEUE_SETTINGS = sa.select(Queue.enabled, Queue.rules).where(Queue.name == sa.bindparam("name"))


def find_queue(name: str) -> Queue | None:
    if not is_valid(QUEUE_NAME, name):
        return None
    return db.session.execute(_QUEUE_BY_NAME, {"name": name}).scalar_one_or_none()


def queue_settings(name: str) -> QueueSettings | None:
    """What a submission checks of its queue (enabled, rules), read without the ORM: every
    submission asks, and an admin's change applies to the next one."""
    if not is_valid(QUEUE_NAME, name):
        return None
    return read_row(_QUEUE_SETTINGS, {"name": name})


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise ApiError(400, f"name is invalid: it must match {QUEUE_NAME.pattern}")
    return name


def get_queue_or_404(name: str) -> Queue:
    queue = find_queue(check_queue_name(name))
    if queue is None:
        raise ApiError(404, f"Queue {name} does not exist")
    return queue


def list_queues() -> list[Queue]:
    return list(db.session.execute(sa.select(Queue).order_by(Queue.name)).scalars())


def describe(queue: Queue) -> dict[str, object]:
    return {
        "name": queue.name,
        "enabled": queue.enabled,
        "rules": Rules.from_json(queue.rules).display(),
        "created": queue.created_at.isoformat(timespec="seconds") + "Z",
    }


def active_job_count(queue_name: str) -> int:
    return db.session.execute(
        sa.select(sa.func.count(Job.id)).where(
            Job.queue == queue_name, Job.deleted_at.is_(None), Job.state.in_(ACTIVE_STATES))
    ).scalar_one()


def user_job_counts(user_name: str, queue_name: str) -> tuple[int, int]:
    """(queued, running) top-level jobs of a user in a queue: an array counts once."""
    rows = db.session.execute(
        sa.select(Job.state, sa.func.count(Job.id))
        .where(Job.owner == user_name, Job.queue == queue_name, Job.deleted_at.is_(None),
               Job.parent_id.is_(None), Job.state.in_(ACTIVE_STATES))
        .group_by(Job.state)
    ).all()
    queued = sum(count for state, count in rows if state in QUEUED_STATES)
    running = sum(count for state, count in rows if state in RUNNING_STATES)
    return queued, running


def queues_using_group(group_name: str) -> list[str]:
    """Queues whose rules name a group (a deleted group would silently change them)."""
    return [queue.name for queue in list_queues()
            if group_name in (queue.rules or {}).get("allowed_groups", [])
            or group_name in (queue.rules or {}).get("excluded_groups", [])]


def _settings(queue: Queue, **_: object) -> str:
    return f"enabled={queue.enabled} rules={queue.rules}"


@audit.records(audit.QUEUE_CREATE, target="name", detail=_settings)
def create_queue(name: str, *, enabled: bool = True, changes: Mapping[str, str] | None = None,
                 actor: audit.Actor | None = None) -> Queue:
    """Validate, create on the scheduler's side when the service manages it, then record."""
    check_queue_name(name)
    rules = updated_rules({}, changes or {})
    if find_queue(name) is not None:
        raise ApiError(409, f"Queue {name} already exists")
    _scheduler_create(name)
    queue = Queue(name=name, enabled=enabled, rules=rules.to_json())
    db.session.add(queue)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, f"Queue {name} already exists") from None
    return queue


@audit.records(audit.QUEUE_UPDATE, target="name", detail=_settings)
def update_queue(name: str, *, enabled: bool | None = None, changes: Mapping[str, str] | None = None,
                 actor: audit.Actor | None = None) -> Queue:
    queue = get_queue_or_404(name)
    rules = updated_rules(queue.rules, changes or {})
    queue.rules = rules.to_json()  # a new dict: SQLAlchemy does not see in-place changes
    if enabled is not None:
        queue.enabled = enabled
    db.session.commit()
    return queue


@audit.records(audit.QUEUE_DELETE, target="name")
def delete_queue(name: str, *, actor: audit.Actor | None = None) -> None:
    queue = get_queue_or_404(name)
    active = active_job_count(name)
    if active:
        raise ApiError(409, f"Queue {name} has {active} active job(s); delete them or wait for them to finish")
    _scheduler_delete(name)
    db.session.delete(queue)
    db.session.commit()


# -- the scheduler's side ------------------------------------------------------------------
def _scheduler_create(name: str) -> None:
    """The adapter readies its side of the queue (PBS with qmgr when it manages queues;
    Slurm only checks the partition exists), or says why it cannot."""
    try:
        get_adapter().apply_queue(name)
    except SchedulerError as exc:
        raise _scheduler_refusal(exc) from None


def _scheduler_delete(name: str) -> None:
    try:
        get_adapter().remove_queue(name)
    except SchedulerError as exc:
        raise _scheduler_refusal(exc) from None


def _scheduler_refusal(exc: SchedulerError) -> ApiError:
    return ApiError(exc.status, exc.message, extra={"stderr": exc.detail} if exc.detail else None)


# -- the list every user sees --------------------------------------------------------------
def queue_listing() -> tuple[list[str], list[dict[str, object]]]:
    """(names of the queues a job can go to, every recorded queue annotated).

    A queue is usable when it is enabled and, on PBS or Slurm, the scheduler has it. When
    the scheduler cannot be asked, the recorded queues are shown with `scheduler: null`.
    """
    rows = list_queues()
    adapter = get_adapter()
    known: set[str] | None
    if adapter.capabilities.rows_are_queue:
        known = {queue.name for queue in rows}
    else:
        try:
            known = set(adapter.queues())
        except SchedulerError as exc:
            current_app.logger.warning("cannot list the scheduler's queues: %s", exc.message)
            known = None
    annotated = [{"name": queue.name, "enabled": queue.enabled,
                  "scheduler": None if known is None else queue.name in known} for queue in rows]
    names = [entry["name"] for entry in annotated if entry["enabled"] and entry["scheduler"] is not False]
    return names, annotated  # type: ignore[return-value]
