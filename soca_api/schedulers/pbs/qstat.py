"""Parsing what `qstat` prints, in both dialects, into plain dicts and `JobInfo`.

Pure functions: no subprocess, no I/O. Written against the recorded OpenPBS 23.06.06
outputs (`../shared/fixtures/openpbs/`), the Torque text format and the output of
Slurm's Torque wrapper (slurm-wlm-torque), as described in `docs/reference/pbs-facts.md`.

- `parse_qstat_json`: OpenPBS / PBS Pro `qstat -f -F json` -> {full job id: attributes}
- `parse_qstat_text`: classic `qstat -f` (OpenPBS text, Torque, Slurm's wrapper)
- `parse_qstat_queues`: the table of `qstat -Q` -> queue names
- `job_info_from_attributes`: one job's attributes (either dialect) -> `JobInfo`
"""
from __future__ import annotations

import json
import re
from datetime import datetime

from soca_api.schedulers.values import JobInfo

PBS_TIME_FORMAT = "%a %b %d %H:%M:%S %Y"

# One job's attributes as parsed: values are strings, numbers (JSON dialect) or, for the
# nested keys, one more level of the same.
Attributes = dict[str, object]

# Attributes whose values are names or free text. PBS prints a numeric `-N 12345` or
# `-P 42` back as a JSON number (docs/reference/pbs-facts.md): these always become strings.
NAME_LIKE_KEYS = frozenset({
    "Job_Name", "project", "Account_Name", "Job_Owner", "queue", "server", "euser", "egroup",
    "group_list", "User_List", "Mail_Users", "Submit_Host", "Submit_arguments", "comment",
    "exec_host", "exec_vnode", "jobdir", "Output_Path", "Error_Path", "array_id",
    "array_indices_submitted", "array_indices_remaining", "depend", "Checkpoint",
    "Hold_Types", "Join_Path", "Keep_Files", "Mail_Points", "job_state", "Rerunable",
})
# Attributes that nest one level, printed as `Resource_List.ncpus = 1` in text.
NESTED_KEYS = frozenset({"Resource_List", "resources_used", "Variable_List"})

_JOB_HEADER = re.compile(r"^Job Id:\s*(?P<id>\S+)\s*$")
# `    name = value` (OpenPBS, Torque) or `<TAB>name = value` (Slurm's wrapper).
_ATTRIBUTE = re.compile(
    r"^(?P<indent>[ \t]+)(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?) =(?: (?P<value>.*))?$")
# A comma in Variable_List separates variables only when a new `NAME=` follows it;
# values themselves may contain commas (PATH-like lists, `-v` values).
_VARIABLE_SEPARATOR = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")
_INTEGER = re.compile(r"^-?\d+$")
# Slurm's wrapper prints `euser = alice(1000)`; OpenPBS prints the bare name.
_SLURM_WRAPPER_EUSER = re.compile(r"^\S+\(\d+\)$")


class QstatParseError(ValueError):
    """qstat printed something this module cannot read. The message is short and never
    contains the text itself (it may hold a user's environment)."""


# -- JSON ---------------------------------------------------------------------------------

def parse_qstat_json(text: str) -> dict[str, Attributes]:
    """`qstat -f -F json` -> {full job id ("11313.head", "16[].head"): attributes}.

    A document without `Jobs` (nothing matched, or an unknown / finished id whose reason
    went to stderr) gives {}. Invalid JSON raises QstatParseError.
    """
    try:
        # strict=False: tolerate raw control characters inside strings (PBS does not
        # escape everything a user can put in an environment variable).
        document = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise QstatParseError(
            f"qstat returned invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except (TypeError, RecursionError):
        raise QstatParseError("qstat returned invalid JSON") from None
    if not isinstance(document, dict):
        raise QstatParseError("qstat JSON is not an object")
    jobs = document.get("Jobs")
    if jobs is None:
        return {}
    if not isinstance(jobs, dict):
        raise QstatParseError("qstat JSON 'Jobs' is not an object")
    parsed: dict[str, Attributes] = {}
    for job_id, attributes in jobs.items():
        if not isinstance(attributes, dict):
            raise QstatParseError("qstat JSON job entry is not an object")
        parsed[str(job_id)] = _normalise_json_attributes(attributes)
    return parsed


def _normalise_json_attributes(attributes: dict[str, object]) -> Attributes:
    normalised: Attributes = {}
    for key, value in attributes.items():
        if key in NAME_LIKE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = _number_text(value)
        elif key == "Variable_List" and isinstance(value, dict):
            # Environment values are strings by definition, even `FOO=123`.
            value = {str(k): _number_text(v) if isinstance(v, (int, float)) else str(v) for k, v in value.items()}
        normalised[key] = value
    return normalised


def _number_text(value: int | float) -> str:
    # 12345.0 cannot come from PBS, but a float must not gain a ".0" it never had.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- text ---------------------------------------------------------------------------------

def parse_qstat_text(text: str) -> dict[str, Attributes]:
    """Classic `qstat -f` -> {full job id: attributes}; values stay strings.

    Long values wrap onto lines that begin with one TAB, often mid-word: the TAB is
    dropped and the pieces joined with nothing in between. Slurm's wrapper indents its
    attribute lines with a TAB as well (and never wraps), so a TAB line is a
    continuation only in a block whose attributes are indented with spaces, or when it
    does not look like `name = value`.
    """
    jobs: dict[str, Attributes] = {}
    block: _TextBlock | None = None
    for line in text.splitlines():
        header = _JOB_HEADER.match(line)
        if header:
            if block is not None:
                jobs[block.job_id] = block.finish()
            block = _TextBlock(header.group("id"))
        elif block is not None and line.strip():
            block.feed(line)
    if block is not None:
        jobs[block.job_id] = block.finish()
    return jobs


class _TextBlock:
    """The lines of one `Job Id:` block, folded into attributes."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.tab_indented: bool | None = None  # decided by the first attribute line
        self.pairs: list[tuple[str, list[str]]] = []

    def feed(self, line: str) -> None:
        if line.startswith("\t") and self.pairs and self._is_continuation(line):
            self.pairs[-1][1].append(line[1:])
            return
        match = _ATTRIBUTE.match(line)
        if match is None:
            if self.pairs:  # a wrapped piece indented some other way: keep it, never drop data
                self.pairs[-1][1].append(line.lstrip("\t"))
            return
        if self.tab_indented is None:
            self.tab_indented = match.group("indent").startswith("\t")
        self.pairs.append((match.group("name"), [match.group("value") or ""]))

    def _is_continuation(self, line: str) -> bool:
        if not self.tab_indented:
            return True
        return _ATTRIBUTE.match(line) is None

    def finish(self) -> Attributes:
        attributes: Attributes = {}
        for name, pieces in self.pairs:
            _store(attributes, name, "".join(pieces).rstrip())
        variable_list = attributes.get("Variable_List")
        if isinstance(variable_list, str):
            attributes["Variable_List"] = parse_variable_list(variable_list)
        return attributes


def _store(attributes: Attributes, name: str, value: str) -> None:
    if "." in name:
        parent, child = name.split(".", 1)
        nested = attributes.setdefault(parent, {})
        if isinstance(nested, dict):
            nested[child] = value
            return
    attributes[name] = value


def parse_variable_list(value: str) -> dict[str, str]:
    """`A=1,PATH=/a:/b,B=x,y` -> {"A": "1", "PATH": "/a:/b", "B": "x,y"}."""
    variables: dict[str, str] = {}
    if not value:
        return variables
    for item in _VARIABLE_SEPARATOR.split(value):
        name, _, content = item.partition("=")
        if name:
            variables[name] = content
    return variables


# -- queues -------------------------------------------------------------------------------

def parse_qstat_queues(text: str) -> list[str]:
    """Queue names from `qstat -Q`: the first column of every row under the dashed rule
    (OpenPBS prints a header line then `---------------- ----- ...`; Slurm's wrapper
    prints the same layout). Without a rule, every non-blank line counts."""
    lines = [line for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if set(line.strip()) <= {"-", " "}:
            lines = lines[index + 1:]
            break
    names: list[str] = []
    for line in lines:
        if set(line.strip()) <= {"-", " "}:  # Slurm's `-q` totals rule, never a queue
            continue
        name = line.split()[0]
        if name not in names:
            names.append(name)
    return names


# -- times --------------------------------------------------------------------------------

def parse_pbs_time(text: object) -> datetime | None:
    """`"Tue Oct  4 21:23:20 2022"` (local time, no zone) -> naive datetime; None when
    absent or unreadable (Slurm's wrapper prints "Infinite" for some)."""
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, (int, float)):  # epoch seconds, as some attributes carry
        try:
            return datetime.fromtimestamp(text)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        # Collapse the padding space of single-digit days so one format fits all.
        return datetime.strptime(" ".join(text.split()), PBS_TIME_FORMAT)
    except ValueError:
        return None


# -- JobInfo ------------------------------------------------------------------------------

def job_info_from_attributes(full_id: str, attrs: Attributes) -> JobInfo:
    """Normalise one job's attributes (JSON or text dialect) into `JobInfo`."""
    resource_list = _resource_dict(attrs.get("Resource_List"))
    variables = _variables(attrs.get("Variable_List"))
    state = _text(attrs.get("job_state")) or "U"
    created, queued, modified, started, finished = _times(attrs)
    return JobInfo(
        id=short_job_id(full_id),
        name=_text(attrs.get("Job_Name")),
        owner=owner_of(attrs),
        state="F" if state == "C" else state,  # Torque / Slurm wrapper "completed"
        queue=_text(attrs.get("queue")),
        submit_host=_text(attrs.get("Submit_Host")),
        server=_text(attrs.get("server")) or _server_suffix(full_id),
        substate=_int_or_none(attrs.get("substate")),
        created=created,
        queued=queued,
        modified=modified,
        eligible=parse_pbs_time(attrs.get("etime")),
        started=started,
        finished=finished,
        exit_status=_int_or_none(attrs.get("Exit_status", attrs.get("exit_status"))),
        output_path=strip_host(attrs.get("Output_Path")),
        error_path=strip_host(attrs.get("Error_Path")),
        join=_text(attrs.get("Join_Path")) or "n",
        hold_types=_text(attrs.get("Hold_Types")) or "n",
        keep_files=_text(attrs.get("Keep_Files")) or "n",
        mail_points=_text(attrs.get("Mail_Points")) or "a",
        mail_users=_text(attrs.get("Mail_Users")) or None,
        priority=_int_or_none(attrs.get("Priority")) or 0,
        rerunable=_bool(attrs.get("Rerunable"), default=True),
        resource_list=resource_list,
        resources_used=_resource_dict(attrs.get("resources_used")),
        variables=variables,
        project=_text(attrs.get("project")) or "_pbs_project_default",
        account=_text(attrs.get("Account_Name")) or None,
        comment=_text(attrs.get("comment")) or None,
        exec_host=_text(attrs.get("exec_host")) or None,
        ncpus=_positive_int(resource_list.get("ncpus"), 1),
        nodes=_positive_int(resource_list.get("nodect", resource_list.get("nodes")), 1),
        array_indices=_array_indices(attrs),
        depend=_text(attrs.get("depend")) or None,
        workdir=variables.get("PBS_O_WORKDIR") or _text(attrs.get("init_work_dir")) or None,
        native=dict(attrs),
    )


def short_job_id(full_id: str) -> str:
    """"16[].pbshost" -> "16[]", "23" -> "23" (job ids are numeric, servers may be dotted)."""
    return full_id.split(".", 1)[0]


def owner_of(attrs: Attributes) -> str:
    """The user name: `Job_Owner` up to the `@` ("alice@pbshost" -> "alice")."""
    return _text(attrs.get("Job_Owner")).split("@", 1)[0]


def strip_host(path: object) -> str | None:
    """"pbshost:/home/alice/x.o1" -> "/home/alice/x.o1" (paths are absolute after host:)."""
    value = _text(path)
    if not value:
        return None
    host, sep, rest = value.partition(":")
    if sep and "/" not in host:
        return rest
    return value


def _server_suffix(full_id: str) -> str:
    return full_id.split(".", 1)[1] if "." in full_id else ""


def _times(attrs: Attributes) -> tuple[datetime | None, ...]:
    """(created, queued, modified, started, finished)."""
    if _SLURM_WRAPPER_EUSER.match(_text(attrs.get("euser"))):
        # Slurm's wrapper reuses the names: qtime = submit, mtime = start, ctime = end.
        submitted = parse_pbs_time(attrs.get("qtime"))
        started = parse_pbs_time(attrs.get("mtime"))
        ended = parse_pbs_time(attrs.get("ctime"))
        return submitted, submitted, ended or started or submitted, started, ended
    return (
        parse_pbs_time(attrs.get("ctime")),
        parse_pbs_time(attrs.get("qtime")),
        parse_pbs_time(attrs.get("mtime")),
        parse_pbs_time(attrs.get("stime")),
        parse_pbs_time(attrs.get("obittime")),
    )


def _array_indices(attrs: Attributes) -> str | None:
    # OpenPBS: array_indices_submitted on the parent; Torque: job_array_request.
    value = attrs.get("array_indices_submitted", attrs.get("job_array_request"))
    return _text(value) or None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_text(value)
    return str(value)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    return None


def _positive_int(value: object, default: int) -> int:
    number = _int_or_none(value)
    return number if number is not None and number > 0 else default


def _bool(value: object, default: bool) -> bool:
    text = _text(value).strip().lower()
    if text in ("true", "t", "y", "yes", "1"):
        return True
    if text in ("false", "f", "n", "no", "0"):
        return False
    return default


def _resource_dict(value: object) -> dict[str, object]:
    """Resource_List / resources_used, with integers as integers in both dialects (JSON
    already types them; text prints `ncpus = 1`)."""
    if not isinstance(value, dict):
        return {}
    resources: dict[str, object] = {}
    for key, item in value.items():
        number = _int_or_none(item) if isinstance(item, str) else None
        resources[str(key)] = number if number is not None else item
    return resources


def _variables(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, str):
        return parse_variable_list(value)
    return {}
