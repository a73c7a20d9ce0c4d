"""Sharing scheduler queries between the threads of one process.

`SingleFlight`: concurrent callers asking for the same key share one computation.
`BackgroundSnapshot`: the last answer of an all-jobs query, refreshed at most once per
interval in a background thread; readers get the last answer at once and never wait for
a refresh (only the very first read of a process, when there is no answer yet, does).

Across processes and hosts the one snapshot per interval is the reconciler's
(`soca_api.schedulers.reconciler`), which writes it into the job rows; these helpers are
what an adapter uses for the jobs the rows do not cover and when no reconciler runs.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("soca_api.snapshot")


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None


class SingleFlight:
    """Concurrent callers asking for the same key share one computation: the first runs
    it, the others wait and get its result (or its exception)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def run(self, key: str, compute: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            # The leader stored what `compute()` returned; callers sharing a key share T.
            return flight.result  # type: ignore[return-value]
        try:
            result = compute()
            flight.result = result
            return result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


class BackgroundSnapshot(Generic[T]):
    """The last value of `load()`, at most `interval` seconds old when nobody is waiting
    for a refresh: a stale value is returned at once and one background thread loads the
    next. A failed background load keeps the old value (logged); the next read retries."""

    def __init__(self, load: Callable[[], T], interval: float):
        self._load = load
        self.interval = interval
        self._lock = threading.Lock()
        self._value: T | None = None
        self._taken_at = float("-inf")
        self._refreshing = False
        self._first = SingleFlight()
        self.loads = 0  # how many scheduler queries this process ran (for tests and bench)

    @property
    def age(self) -> float:
        return time.monotonic() - self._taken_at

    def get(self) -> T:
        value = self._value
        if value is None:
            return self._first.run("first", self._load_now)
        if self.age >= self.interval:
            self._start_refresh()
        return value

    def put(self, value: T) -> None:
        """A value loaded elsewhere (the reconciler's own query) counts as a refresh."""
        with self._lock:
            self._value, self._taken_at = value, time.monotonic()

    def mark_stale(self) -> None:
        """The next read starts a refresh (it still answers with the current value)."""
        self._taken_at = float("-inf")

    def _load_now(self) -> T:
        if self._value is not None:  # loaded by the flight that just ended
            return self._value
        value = self._load()
        self.loads += 1
        self.put(value)
        return value

    def _start_refresh(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, daemon=True, name="scheduler-snapshot").start()

    def _refresh(self) -> None:
        try:
            value = self._load()
            self.loads += 1
            self.put(value)
        except Exception as exc:  # keep serving the last answer; the next read retries
            log.warning("scheduler snapshot refresh failed: %s", exc)
            self._taken_at = time.monotonic() - self.interval / 2  # retry soon, not at once
        finally:
            with self._lock:
                self._refreshing = False
