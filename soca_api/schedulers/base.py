"""The scheduler adapter interface and the one job-info value every backend returns.

Modelled on Open OnDemand's ood_core adapters: a small interface (submit, info,
info_all, delete, hold, release, queues) and every scheduler's answer normalised into
`JobInfo`. Adapters know nothing of HTTP; they raise the `SchedulerError` family and
the API maps those to status codes.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime

from soca_api.pbs.request import JobRequest

# PBS job states (pbs-facts.md) are the letters every backend reports in.
ACTIVE_STATES = frozenset({"Q", "H", "W", "T", "R", "S", "U", "E", "B"})

# PBS substates, as a real OpenPBS reports them with each state.
SUBSTATES = {"Q": 10, "H": 20, "W": 30, "R": 42, "E": 50, "B": 42, "F": 92}
SUBSTATE_DELETED = 91

# PBS-style Exit_status values (pbs-facts.md).
EXIT_KILLED_BY_SIGNAL_BASE = 256
EXIT_WALLTIME = -29
EXIT_ABORTED_ON_RESTART = -4  # JOB_EXEC_INITABT: non-rerunable job lost with its executor


class SchedulerError(Exception):
    """Base of every adapter failure. `message` is safe to show to the client."""

    status = 502

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail  # the scheduler's own words (e.g. qsub stderr), safe to show


class JobRejected(SchedulerError):
    """The scheduler refused the job (unknown queue or resource, limits, bad dependency)."""

    status = 400


class JobNotFound(SchedulerError):
    """Unknown, purged or deleted job."""

    status = 404


class PermissionDenied(SchedulerError):
    status = 403


class SchedulerUnavailable(SchedulerError):
    """Server down or command missing."""

    status = 503


class SchedulerTimeout(SchedulerError):
    status = 504


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


@dataclass(frozen=True)
class Capabilities:
    """What sets one backend apart, declared by each adapter (as ood_core's adapters do):
    services ask these, never which scheduler they talk to. The defaults describe an
    external scheduler that keeps its own queue and whose queues the service only uses.
    """

    # The service's own records ARE the scheduler's state: committing a job row queues the
    # job (no acknowledgement to wait for, no job without a row) and the recorded queues
    # are the scheduler's queues.
    rows_are_queue: bool = False
    # Jobs run as real POSIX accounts known on every node: an API user without an eligible
    # account of its own name is refused, never given a dedicated uid.
    needs_posix_account: bool = False
    # Creating or deleting a queue through the API also creates or deletes the scheduler's
    # queue (apply_queue / remove_queue do the work).
    manages_queues: bool = False


class QueueRejected(SchedulerError):
    """The scheduler cannot serve a queue of that name (e.g. Slurm has no such partition)."""

    status = 400


class SchedulerAdapter(abc.ABC):
    """What every backend implements. Ids are the API's ids (no server suffix)."""

    name: str = "abstract"
    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    def submit(self, request: JobRequest, context: SubmitContext) -> str:
        """Queue the job; return its id."""

    @abc.abstractmethod
    def info(self, job_id: str) -> JobInfo:
        """One job; raises JobNotFound."""

    @abc.abstractmethod
    def info_all(self, owner: str | None = None) -> list[JobInfo]:
        """Every job the scheduler still shows, or one owner's."""

    def snapshot(self) -> list[JobInfo]:
        """Every job the scheduler shows now, finished ones (history) and array subjobs
        included, from one query: what the reconciler writes into the job rows."""
        raise NotImplementedError(f"the {self.name} backend keeps its jobs in the job rows")

    def query(self, job_id: str) -> JobInfo | None:
        """One job asked for directly (None: the scheduler does not know it), shared by
        concurrent callers: for a job the snapshot does not hold."""
        try:
            return self.info(job_id)
        except JobNotFound:
            return None

    @abc.abstractmethod
    def delete(self, job_id: str) -> None:
        """Remove a queued job or kill a running one."""

    @abc.abstractmethod
    def hold(self, job_id: str) -> None: ...

    @abc.abstractmethod
    def release(self, job_id: str) -> None: ...

    @abc.abstractmethod
    def queues(self) -> list[str]: ...

    def health(self) -> tuple[bool, str]:
        """(ok, message) for /api/health; must be cheap."""
        try:
            self.queues()
        except SchedulerError as exc:
            return False, exc.message
        return True, "ok"

    @property
    def backend_label(self) -> str:
        """What the service writes into Job.backend (and names the reconciler's lease by):
        a label that keeps each backend's rows apart, never a reason to branch."""
        return self.name

    def rows_committed(self) -> None:
        """Told after the service committed job rows (rows_are_queue): the scheduler may
        look at its queue again. Nothing to do for a scheduler with its own queue."""

    # -- queues -------------------------------------------------------------------------
    def known_queues(self) -> list[str]:
        """queues(), for deciding about a queue: a failure says so and answers 503."""
        try:
            return self.queues()
        except SchedulerError as exc:
            raise SchedulerUnavailable(f"Cannot list the scheduler's queues: {exc.message}") from None

    def apply_queue(self, name: str) -> None:
        """Make the scheduler's side of queue `name` ready before the service records it,
        or raise why it cannot be (QueueRejected, or the command's failure). Nothing to do
        when the recorded queue is all there is, or the service does not manage queues."""

    def remove_queue(self, name: str) -> None:
        """Remove the scheduler's side of queue `name` (manages_queues), before the
        service forgets it. Nothing to do otherwise."""
