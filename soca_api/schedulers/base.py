"""The scheduler adapter interface.

Modelled on Open OnDemand's ood_core adapters: a small interface (submit, info,
info_all, delete, hold, release, queues) and every scheduler's answer normalised into
`JobInfo` (schedulers/values.py). Adapters know nothing of HTTP; they raise the
`SchedulerError` family (schedulers/errors.py) and the API maps those to status codes.
"""
from __future__ import annotations

import abc

from soca_api.schedulers.errors import JobNotFound, SchedulerError
from soca_api.schedulers.values import JobInfo, JobRequest, SubmitContext


class SchedulerAdapter(abc.ABC):
    """What every backend implements. Ids are the API's ids (no server suffix)."""

    name: str = "abstract"

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
