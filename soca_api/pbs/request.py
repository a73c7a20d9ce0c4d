"""The typed job request that a PBS script's directives describe.

Every scheduler adapter receives one of these; none of them reads `#PBS` lines itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
