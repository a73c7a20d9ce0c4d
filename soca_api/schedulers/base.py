"""The scheduler adapter interface.

Modelled on Open OnDemand's ood_core adapters: a small interface (submit, info,
info_all, delete, hold, release, queues) and every scheduler's answer normalised into
`JobInfo` (schedulers/values.py). Adapters know nothing of HTTP; they raise the
`SchedulerError` family (schedulers/errors.py) and the API maps those to status codes.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

from soca_api.schedulers.errors import JobNotFound, SchedulerError, SchedulerUnavailable
from soca_api.schedulers.values import JobInfo, JobRequest, SubmitContext


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

    def rows_committed(self) -> None:  # noqa: B027 - optional hook, nothing by default
        """Told after the service committed job rows (rows_are_queue): the scheduler may
        look at its queue again. Nothing to do for a scheduler with its own queue."""

    # -- queues -------------------------------------------------------------------------
    def known_queues(self) -> list[str]:
        """queues(), for deciding about a queue: a failure says so and answers 503."""
        try:
            return self.queues()
        except SchedulerError as exc:
            raise SchedulerUnavailable(f"Cannot list the scheduler's queues: {exc.message}") from None

    def apply_queue(self, name: str) -> None:  # noqa: B027 - optional hook, nothing by default
        """Make the scheduler's side of queue `name` ready before the service records it,
        or raise why it cannot be (QueueRejected, or the command's failure). Nothing to do
        when the recorded queue is all there is, or the service does not manage queues."""

    def remove_queue(self, name: str) -> None:  # noqa: B027 - optional hook, nothing by default
        """Remove the scheduler's side of queue `name` (manages_queues), before the
        service forgets it. Nothing to do otherwise."""
