"""The adapter interface's defaults: what an adapter gets without writing it."""
from __future__ import annotations

import pytest

from soca_api.schedulers.base import Capabilities, SchedulerAdapter
from soca_api.schedulers.errors import SchedulerError, SchedulerUnavailable


class QueuesOnly(SchedulerAdapter):
    """The smallest adapter: only its queue listing answers."""

    name = "minimal"

    def __init__(self, answer: list[str] | SchedulerError):
        self.answer = answer

    def queues(self) -> list[str]:
        if isinstance(self.answer, SchedulerError):
            raise self.answer
        return list(self.answer)

    def submit(self, request, context):
        raise NotImplementedError

    def info(self, job_id):
        raise NotImplementedError

    def info_all(self, owner=None):
        raise NotImplementedError

    def delete(self, job_id):
        raise NotImplementedError

    def hold(self, job_id):
        raise NotImplementedError

    def release(self, job_id):
        raise NotImplementedError


def test_default_capabilities_describe_an_external_scheduler_with_its_own_queue():
    adapter = QueuesOnly(["normal"])
    assert adapter.capabilities == Capabilities()
    assert not (adapter.capabilities.rows_are_queue or adapter.capabilities.needs_posix_account
                or adapter.capabilities.manages_queues)
    assert adapter.backend_label == "minimal"


def test_queue_hooks_do_nothing_by_default():
    adapter = QueuesOnly(["normal"])
    adapter.apply_queue("normal")
    adapter.remove_queue("normal")
    adapter.rows_committed()
    assert adapter.known_queues() == ["normal"]


def test_known_queues_turns_a_failure_into_503_naming_the_cause():
    adapter = QueuesOnly(SchedulerError("qstat: cannot connect to server"))
    with pytest.raises(SchedulerUnavailable) as raised:
        adapter.known_queues()
    assert raised.value.status == 503
    assert raised.value.message == "Cannot list the scheduler's queues: qstat: cannot connect to server"


def test_health_reports_the_queue_listing():
    assert QueuesOnly(["normal"]).health() == (True, "ok")
    assert QueuesOnly(SchedulerError("down")).health() == (False, "down")
