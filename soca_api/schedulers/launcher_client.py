"""The worker's side of the command launcher (soca_api/schedulers/launcher.py).

One launcher per worker process and uid floor, started on the first command that runs as
another account, restarted when it dies. Each worker thread gets a channel of its own (a
socket handed to the launcher, served by one launcher thread): a call is one write and
one read by the calling thread itself, with no thread in between on either side.

A launcher that dies while a command runs cannot say whether the command ran (a `qsub`
may have been accepted): that call fails (LauncherGone with sent=True) and is never
retried. A request that could not be written never reached the launcher, and is retried
once on a fresh channel (and, if the launcher is gone, a fresh launcher).
"""
from __future__ import annotations

import atexit
import contextlib
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
    """The launcher (or this thread's channel to it) went away. `sent`: whether it had the
    request, i.e. whether the command may have run."""

    def __init__(self, sent: bool):
        super().__init__("the command launcher stopped" + (" while running the command" if sent else ""))
        self.sent = sent


class LauncherWedged(Exception):
    """No answer within the command's timeout and the grace period: the launcher was killed."""


class Connection:
    """One launcher process and its control socket (which only carries new channels)."""

    def __init__(self, min_uid: int):
        self.min_uid = min_uid
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # No uid change here, so this is a vfork even from a large worker. In this
            # process's working directory: a command given no cwd starts there, as a direct
            # child of the worker would.
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER_PATH, "--fd", str(theirs.fileno()),
                 "--min-uid", str(min_uid)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=dict(_LAUNCHER_ENV), close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        self.owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._channels = threading.local()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def _channel(self) -> socket.socket:
        channel = getattr(self._channels, "socket", None)
        if channel is not None:
            return channel
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                if self._closed:
                    raise LauncherGone(sent=False)
                try:
                    socket.send_fds(self.control, [b"c"], [theirs.fileno()])
                except OSError:
                    self._closed = True  # the launcher is gone, even if not reaped yet
                    raise
        except (OSError, LauncherGone):
            ours.close()
            raise LauncherGone(sent=False) from None
        finally:
            theirs.close()
        self._channels.socket = ours
        return ours

    def _drop_channel(self) -> None:
        channel = getattr(self._channels, "socket", None)
        self._channels.socket = None
        if channel is not None:
            channel.close()

    def call(self, header: dict, blobs: list[bytes], wait_seconds: float) -> tuple[dict, list[bytes]]:
        channel = self._channel()
        channel.settimeout(wait_seconds)
        try:
            send_frame(channel, header, blobs)
        except OSError:
            # Not written whole: the launcher cannot have started the command.
            self._drop_channel()
            raise LauncherGone(sent=False) from None
        try:
            answer = read_frame(channel, MAX_OUTPUT_BYTES)
        except TimeoutError:
            self._drop_channel()
            log.error("command launcher %s gave no answer in %.0f s: killing it", self.pid, wait_seconds)
            self.kill()
            raise LauncherWedged() from None
        except (ProtocolError, OSError):
            answer = None
        if answer is None:
            self._drop_channel()
            raise LauncherGone(sent=True)
        return answer

    def close(self, wait: float = 0.0) -> None:
        """Stop it: on EOF the launcher kills what still runs and exits."""
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                self.control.shutdown(socket.SHUT_RDWR)
            self.control.close()
        if wait:
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
            self.process.wait()


_lock = threading.Lock()
_connections: dict[int, Connection] = {}


def connection(min_uid: int) -> Connection:
    """This process's launcher for that uid floor, started or restarted as needed."""
    with _lock:
        current = _connections.get(min_uid)
        if current is not None and current.owner_pid == os.getpid():
            if current.alive:
                return current
            if current.process.returncode not in (None, 0):
                log.warning("command launcher %s exited with %s: starting another", current.pid,
                            current.process.returncode)
            current.close(wait=1.0)
        fresh = Connection(min_uid)
        _connections[min_uid] = fresh
        return fresh


def call(header: dict, blobs: list[bytes], *, min_uid: int, wait_seconds: float) -> tuple[dict, list[bytes]]:
    """Send one request and wait for its answer; retried (on a fresh channel, then a fresh
    launcher) only when never delivered."""
    for attempt in (1, 2, 3):
        try:
            return connection(min_uid).call(header, blobs, wait_seconds)
        except LauncherGone as exc:
            if exc.sent or attempt == 3:
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
    # A forked child must not talk on its parent's sockets: it starts its own if it needs one.
    global _lock
    _lock = threading.Lock()
    _connections.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)
