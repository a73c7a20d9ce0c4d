"""The worker's side of the command launcher (soca_api/schedulers/launcher.py).

One launcher per worker process and uid floor, started on the first command that runs as
another account, restarted when it dies. Threads share it: each request carries an id, one
reader thread hands every answer to the thread waiting for it.

A launcher that dies while a command runs cannot say whether the command ran (a `qsub`
may have been accepted): that call fails (LauncherGone with sent=True) and is never
retried. A request that could not be written whole never reached the launcher, and is
retried once on a fresh one.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading

from soca_api.schedulers import launcher
from soca_api.schedulers.launcher import MAX_OUTPUT_BYTES, ProtocolError, read_frame, send_frame

log = logging.getLogger(__name__)

LAUNCHER_PATH = os.path.abspath(launcher.__file__)
# The launcher answers at the command's timeout; past this much more it is taken for
# wedged, killed, and started afresh for the next call.
ANSWER_GRACE_SECONDS = 5.0
_LAUNCHER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


class LauncherGone(Exception):
    """The launcher went away. `sent`: whether it had the request (the command may have run)."""

    def __init__(self, sent: bool):
        super().__init__("the command launcher stopped" + (" while running the command" if sent else ""))
        self.sent = sent


class LauncherWedged(Exception):
    """No answer within the command's timeout and the grace period: the launcher was killed."""


class _Pending:
    __slots__ = ("event", "header", "blobs", "gone")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.header: dict | None = None
        self.blobs: list[bytes] = []
        self.gone = False


class Connection:
    """One launcher process and the socket to it."""

    def __init__(self, min_uid: int):
        self.min_uid = min_uid
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # No uid change here, so this is a vfork even from a large worker.
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER_PATH, "--fd", str(theirs.fileno()),
                 "--min-uid", str(min_uid)],
                # In this process's working directory: a command given no cwd starts there,
                # as a direct child of the worker would.
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=dict(_LAUNCHER_ENV), close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.owner_pid = os.getpid()
        self._ids = itertools.count(1)
        self._state_lock = threading.Lock()  # pending and alive; never held while blocking
        self._send_lock = threading.Lock()  # one frame at a time on the socket
        self._pending: dict[int, _Pending] = {}
        self.alive = True
        self._reader = threading.Thread(target=self._read_answers, daemon=True,
                                        name=f"launcher-{self.process.pid}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(self, header: dict, blobs: list[bytes], wait_seconds: float) -> tuple[dict, list[bytes]]:
        pending = _Pending()
        with self._state_lock:
            if not self.alive:
                raise LauncherGone(sent=False)
            request_id = next(self._ids)
            self._pending[request_id] = pending
        try:
            with self._send_lock:
                send_frame(self.sock, {**header, "id": request_id}, blobs)
        except OSError:
            # The frame did not go out whole: the launcher cannot have started the command.
            with self._state_lock:
                self._pending.pop(request_id, None)
            self.close()
            raise LauncherGone(sent=False) from None
        if not pending.event.wait(wait_seconds):
            with self._state_lock:
                self._pending.pop(request_id, None)
            log.error("command launcher %s gave no answer in %.0f s: killing it", self.pid, wait_seconds)
            self.kill()
            raise LauncherWedged()
        if pending.gone:
            raise LauncherGone(sent=True)
        return pending.header, pending.blobs

    def _read_answers(self) -> None:
        try:
            while True:
                frame = read_frame(self.sock, MAX_OUTPUT_BYTES)
                if frame is None:
                    break
                header, blobs = frame
                with self._state_lock:
                    pending = self._pending.pop(header.get("id"), None)
                if pending is not None:
                    pending.header, pending.blobs = header, blobs
                    pending.event.set()
        except (ProtocolError, OSError, ValueError) as exc:
            if self.alive:
                log.error("command launcher %s: %s", self.pid, exc)
        finally:
            self._fail_pending()
            self._reap()

    def _fail_pending(self) -> None:
        with self._state_lock:
            self.alive = False
            pending, self._pending = list(self._pending.values()), {}
        for waiting in pending:
            waiting.gone = True
            waiting.event.set()

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=ANSWER_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.returncode not in (0, None):
            log.warning("command launcher %s exited with %s", self.pid, self.process.returncode)

    def close(self, wait: float = 0.0) -> None:
        """Stop it: on EOF the launcher kills what still runs and exits."""
        with self._state_lock:
            self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if wait and self._reader is not threading.current_thread():
            self._reader.join(wait)
        if wait and self.process.poll() is None:
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Stop a launcher that no longer answers: EOF first, so that it can still kill the
        commands it runs; SIGKILL if it has not left a second later."""
        self.close()
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.process.kill()


_lock = threading.Lock()
_connections: dict[int, Connection] = {}


def connection(min_uid: int) -> Connection:
    """This process's launcher for that uid floor, started or restarted as needed."""
    with _lock:
        current = _connections.get(min_uid)
        if current is not None and current.alive and current.owner_pid == os.getpid():
            return current
        if current is not None and current.owner_pid == os.getpid():
            current.close()
        fresh = Connection(min_uid)
        _connections[min_uid] = fresh
        return fresh


def call(header: dict, blobs: list[bytes], *, min_uid: int, wait_seconds: float) -> tuple[dict, list[bytes]]:
    """Send one request and wait for its answer; retried once only when never delivered."""
    for attempt in (1, 2):
        try:
            return connection(min_uid).call(header, blobs, wait_seconds)
        except LauncherGone as exc:
            if exc.sent or attempt == 2:
                raise
    raise AssertionError("unreachable")


def launcher_pid(min_uid: int) -> int | None:
    """The running launcher's pid for that floor in this process (None: none yet)."""
    with _lock:
        current = _connections.get(min_uid)
        return current.pid if current is not None and current.alive and current.owner_pid == os.getpid() else None


def shutdown(wait: float = 2.0) -> None:
    """Stop this process's launchers (at exit: no launcher outlives its worker)."""
    with _lock:
        mine = [c for c in _connections.values() if c.owner_pid == os.getpid()]
        _connections.clear()
    for current in mine:
        current.close(wait=wait)


def _forget_after_fork() -> None:
    # A forked child must not talk on its parent's socket: it starts its own if it needs one.
    global _lock
    _lock = threading.Lock()
    _connections.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)
