"""The neutral job values that services and every scheduler adapter share.

`JobRequest` is the typed request a PBS script's directives describe: every adapter
receives one and none of them reads `#PBS` lines itself. `JobInfo` is one job as any
backend reports it, in PBS terms; `SubmitContext` says who submits and where.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# PBS job states (docs/reference/pbs-facts.md) are the letters every backend reports in.
ACTIVE_STATES = frozenset({"Q", "H", "W", "T", "R", "S", "U", "E", "B"})

# PBS substates, as a real OpenPBS reports them with each state.
SUBSTATES = {"Q": 10, "H": 20, "W": 30, "R": 42, "E": 50, "B": 42, "F": 92}
SUBSTATE_DELETED = 91

# PBS-style Exit_status values (docs/reference/pbs-facts.md).
EXIT_KILLED_BY_SIGNAL_BASE = 256
EXIT_WALLTIME = -29
EXIT_ABORTED_ON_RESTART = -4  # JOB_EXEC_INITABT: non-rerunable job lost with its executor


@dataclass(frozen=True)
class Dependency:
    """One `-W depend=TYPE:id[:id...]` clause."""

    kind: str  # after, afterok, afternotok, afterany
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class ArraySpec:
    """`-J start-end[:step][%max_running]`."""

    start: int
    end: int
    step: int = 1
    max_running: int | None = None

    @property
    def indices(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.step))

    def __str__(self) -> str:
        text = f"{self.start}-{self.end}"
        if self.step != 1:
            text += f":{self.step}"
        if self.max_running is not None:
            text += f"%{self.max_running}"
        return text


@dataclass(frozen=True)
class Directive:
    """One option as read from the script, kept for messages and queue rules."""

    line: int  # 1-based line number in the script
    option: str  # e.g. "-l"
    value: str | None


@dataclass
class JobRequest:
    """What a PBS script asks for, parsed and validated.

    `resources` holds every `-l` resource as written (name -> value), including
    site resources such as SOCA's `instance_type`; the derived totals below are what
    the schedulers allocate.
    """

    script: str
    name: str = "STDIN"
    name_given: bool = False
    queue: str | None = None
    resources: dict[str, str] = field(default_factory=dict)
    ncpus: int = 1  # total cpus over all chunks/nodes
    nodes: int = 1  # node count (chunks for select, N for nodes=)
    walltime_seconds: int | None = None
    mem_bytes: int | None = None
    output_path: str | None = None  # -o as given (host: prefix stripped)
    error_path: str | None = None  # -e as given (host: prefix stripped)
    join: str = "n"  # n, oe, eo
    export_all: bool = False  # -V
    variables: dict[str, str] = field(default_factory=dict)  # -v
    project: str | None = None  # -P
    account: str | None = None  # -A
    hold: bool = False  # -h
    start_after: datetime | None = None  # -a
    mail_points: str = "a"  # -m
    mail_users: str | None = None  # -M
    rerunable: bool = True  # -r
    dependencies: list[Dependency] = field(default_factory=list)  # -W depend=
    array: ArraySpec | None = None  # -J
    shell: str | None = None  # -S
    priority: int = 0  # -p
    keep_files: str = "n"  # -k
    group_list: str | None = None  # -W group_list=
    directives: list[Directive] = field(default_factory=list)

    @property
    def instance_types(self) -> list[str]:
        """SOCA's `instance_type=a+b` as a list, empty when not set."""
        value = self.resources.get("instance_type")
        return [part for part in value.split("+") if part] if value else []


@dataclass
class JobInfo:
    """One job as any backend reports it, in PBS terms."""

    id: str  # the id the API shows, without server suffix: "12", "12[]", "12[3]"
    name: str
    owner: str  # user name
    state: str  # PBS letter, see above
    queue: str
    submit_host: str = ""
    server: str = ""
    substate: int | None = None
    created: datetime | None = None  # ctime
    queued: datetime | None = None  # qtime
    modified: datetime | None = None  # mtime
    eligible: datetime | None = None  # etime
    started: datetime | None = None  # stime
    finished: datetime | None = None  # obittime
    exit_status: int | None = None
    output_path: str | None = None  # absolute path on the execution host
    error_path: str | None = None
    join: str = "n"
    hold_types: str = "n"
    keep_files: str = "n"
    mail_points: str = "a"
    mail_users: str | None = None
    priority: int = 0
    rerunable: bool = True
    resource_list: dict[str, object] = field(default_factory=dict)
    resources_used: dict[str, object] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    project: str = "_pbs_project_default"
    account: str | None = None
    comment: str | None = None
    exec_host: str | None = None
    ncpus: int = 1
    nodes: int = 1
    array_indices: str | None = None  # "1-10" on an array parent
    depend: str | None = None
    workdir: str | None = None
    native: dict[str, object] = field(default_factory=dict)  # the scheduler's raw record

    @property
    def is_finished(self) -> bool:
        return self.state in ("F", "C", "X")


@dataclass(frozen=True)
class SubmitContext:
    """Who submits and where the job's files live; built by the job service."""

    user: str
    job_dir: str  # absolute; the job's working directory
    record_id: int | None = None  # the service's own Job row for this submission
    run_as_uid: int | None = None  # set when the service is root and the POSIX user exists
    run_as_gid: int | None = None
    run_as_groups: tuple[int, ...] = ()
    home: str | None = None
