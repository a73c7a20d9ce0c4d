"""The command launcher: a small long-lived process that runs scheduler commands as a
job's account on behalf of one worker, and the one function every command runs through.

Why a separate process: dropping to another uid between fork and exec rules out vfork, so
a root worker (~85 MB, many threads) would copy its page tables for every `sbatch`/`qsub`
(about 4 ms). The launcher is a fresh interpreter of a few MB started once per worker
(`python -I -S launcher.py --fd N --min-uid M`): its forks are cheap.

Stdlib only, and nothing runs at import: the worker imports this module for `run_child`
and the framing helpers; run as a script it serves its socket until the worker goes away.

Sockets: the control socket (a socketpair made by the worker, passed as --fd) carries
only new channels, one socket per worker thread handed over with SCM_RIGHTS; its EOF means
the worker is gone. Each channel is served by one launcher thread, one request at a time:
    4 bytes big-endian header length | header (UTF-8 JSON) | the blobs the header lists
Request header: {"args", "cwd", "env", "timeout", "uid", "gid", "groups", "blobs": [stdin]}.
Answer header:  {"returncode", "blobs": [stdout, stderr]} or {"error", "message", "errno"}.
"""
from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

MAX_HEADER_BYTES = 1 << 20
# Per stream: far above what any scheduler command prints, low enough that a runaway one
# cannot exhaust a worker's memory.
MAX_OUTPUT_BYTES = 256 << 20
MAX_TIMEOUT_SECONDS = 24 * 3600.0
MAX_CHANNELS = 256  # worker threads with a command in flight, at most
_READ_CHUNK = 1 << 16
_HEADER = struct.Struct(">I")


class ChildTimeout(Exception):
    """The command outlived its timeout; its whole process group was killed."""


class OutputTooLarge(Exception):
    """The command printed more than MAX_OUTPUT_BYTES on one stream; its group was killed."""


class ProtocolError(Exception):
    """A malformed frame, or the peer went away in the middle of one."""


# -- running one command ----------------------------------------------------------------
def _kill_group(process: subprocess.Popen) -> None:
    # The child leads its own session (start_new_session), so its pid is its group's id,
    # and it is not reaped yet here: the id cannot belong to anyone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, OSError):
        process.kill()


def run_child(args: list[str], *, timeout: float, cwd: str | None, env: dict[str, str] | None,
              input_bytes: bytes | None = None, uid: int | None = None, gid: int | None = None,
              groups: list[int] | None = None, max_output: int = MAX_OUTPUT_BYTES,
              on_start=None) -> tuple[int, bytes, bytes]:
    """Run `args` (no shell) and return (returncode, stdout, stderr).

    The child leads a new session; at the timeout (or past max_output bytes on a stream)
    its whole process group is killed. Raises what Popen raises when the program cannot
    be started (FileNotFoundError, PermissionError, OSError), ChildTimeout, OutputTooLarge.
    `on_start(process)` / the return bracket the time the child exists (the launcher
    tracks running groups to kill them when its worker goes away).
    """
    deadline = time.monotonic() + timeout
    process = subprocess.Popen(
        args, cwd=cwd, env=env, close_fds=True, start_new_session=True,
        stdin=subprocess.PIPE if input_bytes else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # None (no account given) is Popen's default: the child keeps the caller's ids.
        user=uid, group=gid if uid is not None else None,
        extra_groups=list(groups or ()) if uid is not None else None)
    if on_start is not None:
        on_start(process)
    try:
        out, err = _exchange(process, input_bytes or b"", deadline, max_output)
        return process.returncode, out, err
    finally:
        if process.returncode is None:
            _kill_group(process)
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _exit_fd(process: subprocess.Popen) -> int | None:
    """A pidfd that turns readable when the child exits (None where the kernel has none):
    waiting on it beside the pipes avoids Popen.wait(timeout)'s sleep-and-poll steps."""
    try:
        return os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return None


def _exchange(process: subprocess.Popen, data: bytes, deadline: float, max_output: int) -> tuple[bytes, bytes]:
    """Feed stdin and collect stdout/stderr until both close and the child exits, within
    the deadline (past it, or past max_output on a stream, the group is killed)."""
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
    if stdout is None or stderr is None:
        raise ValueError("_exchange needs the child's stdout and stderr as pipes")
    chunks: dict[int, list[bytes]] = {stdout.fileno(): [], stderr.fileno(): []}
    sizes = dict.fromkeys(chunks, 0)
    view, offset = memoryview(data), 0
    exit_fd = _exit_fd(process)
    try:
        with selectors.DefaultSelector() as selector:
            for fd in chunks:
                selector.register(fd, selectors.EVENT_READ)
            if exit_fd is not None:
                selector.register(exit_fd, selectors.EVENT_READ)
            if stdin is not None:
                os.set_blocking(stdin.fileno(), False)
                selector.register(stdin.fileno(), selectors.EVENT_WRITE)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _kill_group(process)
                    raise ChildTimeout()
                for key, _ in selector.select(remaining):
                    fd = key.fd
                    if fd == exit_fd:
                        selector.unregister(fd)
                        process.wait()  # it has exited: no sleep, just the reaping
                    elif fd in chunks:
                        block = os.read(fd, _READ_CHUNK)
                        if not block:
                            selector.unregister(fd)
                            continue
                        sizes[fd] += len(block)
                        if sizes[fd] > max_output:
                            _kill_group(process)
                            raise OutputTooLarge()
                        chunks[fd].append(block)
                    else:
                        try:
                            offset += os.write(fd, view[offset:offset + _READ_CHUNK])
                        except BrokenPipeError:  # the command stopped reading: as subprocess does
                            offset = len(view)
                        if offset >= len(view) and stdin is not None:
                            selector.unregister(fd)
                            stdin.close()
    finally:
        if exit_fd is not None:
            os.close(exit_fd)
    if process.returncode is None:  # no pidfd: wait the rest of the deadline for the exit
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise ChildTimeout() from None
    return b"".join(chunks[stdout.fileno()]), b"".join(chunks[stderr.fileno()])


# -- framing ----------------------------------------------------------------------------
def _read_frame_start(sock: socket.socket, size: int) -> bytes | None:
    """The first `size` bytes of a frame, or None when the peer closed between frames."""
    first = sock.recv(size)
    if not first:
        return None
    return first + _read_exact(sock, size - len(first)) if len(first) < size else first


def _read_exact(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            raise ProtocolError("the peer closed the connection in the middle of a frame")
        got += count
    return bytes(buffer)


def send_frame(sock: socket.socket, header: dict, blobs: Sequence[bytes] = ()) -> None:
    """One frame in one sendall (the caller serialises writers)."""
    header = {**header, "blobs": [len(b) for b in blobs]}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    if len(encoded) > MAX_HEADER_BYTES:
        raise ProtocolError("frame header too large")
    sock.sendall(b"".join([_HEADER.pack(len(encoded)), encoded, *blobs]))


def read_frame(sock: socket.socket, max_blob_bytes: int) -> tuple[dict, list[bytes]] | None:
    """The next (header, blobs), or None when the peer closed between frames."""
    prefix = _read_frame_start(sock, _HEADER.size)
    if prefix is None:
        return None
    (length,) = _HEADER.unpack(prefix)
    if length > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {length} bytes")
    try:
        header = json.loads(_read_exact(sock, length))
    except ValueError as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    sizes = header.get("blobs") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(type(n) is int and 0 <= n <= max_blob_bytes for n in sizes):
        raise ProtocolError("frame blobs must be a list of sizes within bounds")
    return header, [_read_exact(sock, n) if n else b"" for n in sizes]


# -- the launcher process -----------------------------------------------------------------
def _is_int(value: object, low: int, high: int = 2**32 - 2) -> bool:
    return type(value) is int and low <= value <= high


def check_request(header: dict, min_uid: int) -> str | None:
    """Why this request is refused, or None. Never uid 0 or gid 0, never below min_uid."""
    args = header.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return "args must be a non-empty list of strings"
    cwd, env, timeout = header.get("cwd"), header.get("env"), header.get("timeout")
    if cwd is not None and not isinstance(cwd, str):
        return "cwd must be a string"
    if env is not None and not (isinstance(env, dict)
                                and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return "env must map strings to strings"
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        return "timeout must be a positive number of seconds"
    uid, gid, groups = header.get("uid"), header.get("gid"), header.get("groups")
    if not _is_int(uid, max(1, min_uid)):
        return f"the launcher runs nothing as uid {uid!r} (the floor is {max(1, min_uid)})"
    if not _is_int(gid, 1):
        return f"the launcher runs nothing as gid {gid!r}"
    if not isinstance(groups, list) or len(groups) > 65536 or not all(_is_int(g, 0) for g in groups):
        return "groups must be a list of gids"
    if len(header.get("blobs", ())) > 1:
        return "a request carries at most one blob (stdin)"
    return None


class Launcher:
    """Serves one worker: a thread per channel (per worker thread), commands run inline."""

    def __init__(self, control: socket.socket, min_uid: int):
        self.control = control
        self.min_uid = min_uid
        self.lock = threading.Lock()
        self.running: dict[int, subprocess.Popen] = {}  # by the serving thread's id
        self.channels: list[socket.socket] = []

    def serve(self) -> None:
        """Take channels until the worker goes away (EOF on the control socket)."""
        try:
            while True:
                message, fds, _flags, _address = socket.recv_fds(self.control, 16, 16)
                if not message and not fds:
                    break
                for fd in fds:
                    self._open_channel(fd)
        except OSError as exc:
            print(f"soca launcher {os.getpid()}: stopping: {exc}", file=sys.stderr, flush=True)
        finally:
            self.stop()

    def _open_channel(self, fd: int) -> None:
        channel = socket.socket(fileno=fd)
        with self.lock:
            if len(self.channels) >= MAX_CHANNELS:
                channel.close()  # the worker sees EOF on that channel and reports it
                return
            self.channels.append(channel)
        threading.Thread(target=self._serve_channel, args=(channel,), daemon=True).start()

    def stop(self) -> None:
        """The worker is gone: nobody reads the answers, so nothing it asked for outlives it."""
        with self.lock:
            running = list(self.running.values())
        for process in running:
            if process.returncode is None:  # not reaped yet: its group id is still its own
                _kill_group(process)

    def _serve_channel(self, channel: socket.socket) -> None:
        try:
            while True:
                frame = read_frame(channel, MAX_OUTPUT_BYTES)
                if frame is None:
                    break
                answer = self._run(*frame)
                output = answer.pop("output", [])
                send_frame(channel, answer, output)
        except (ProtocolError, OSError):
            pass  # the worker thread went away: so does its channel
        finally:
            with self.lock:
                if channel in self.channels:
                    self.channels.remove(channel)
            channel.close()

    def _track(self, process: subprocess.Popen | None) -> None:
        with self.lock:
            if process is None:
                self.running.pop(threading.get_ident(), None)
            else:
                self.running[threading.get_ident()] = process

    def _run(self, header: dict, blobs: list[bytes]) -> dict:
        refused = check_request(header, self.min_uid)
        if refused is not None:
            return {"error": "refused", "message": refused}
        try:
            code, out, err = run_child(
                header["args"], timeout=float(header["timeout"]), cwd=header["cwd"], env=header["env"],
                input_bytes=blobs[0] if blobs else None, uid=header["uid"], gid=header["gid"],
                groups=header["groups"], on_start=self._track)
        except ChildTimeout:
            return {"error": "timeout", "message": "timed out"}
        except OutputTooLarge:
            return {"error": "too_large", "message": f"more than {MAX_OUTPUT_BYTES} bytes of output"}
        except FileNotFoundError as exc:
            return {"error": "not_found", "message": str(exc), "errno": exc.errno}
        except PermissionError as exc:
            return {"error": "permission", "message": str(exc), "errno": exc.errno}
        except OSError as exc:
            return {"error": "oserror", "message": exc.strerror or str(exc), "errno": exc.errno}
        except (ValueError, TypeError) as exc:  # e.g. a NUL byte in an argument
            return {"error": "invalid", "message": str(exc)}
        finally:
            self._track(None)
        return {"returncode": code, "output": [out, err]}


def _ignore(_signum, _frame) -> None:
    """A signal sent to the service's whole process group must not kill the launcher in
    the middle of a command: it leaves when its worker does (EOF on its socket). A handler,
    not SIG_IGN, so that the commands it starts get the default dispositions back."""


def main(argv: list[str]) -> int:
    fd, min_uid = None, None
    for flag, value in zip(argv[::2], argv[1::2], strict=False):
        if flag == "--fd":
            fd = int(value)
        elif flag == "--min-uid":
            min_uid = int(value)
    if fd is None or min_uid is None or len(argv) != 4:
        print("usage: launcher.py --fd N --min-uid M", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _ignore)
    Launcher(socket.socket(fileno=fd), min_uid).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
