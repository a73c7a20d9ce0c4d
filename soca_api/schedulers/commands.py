"""Running scheduler commands: argument lists only, a timeout on every call (it kills the
command's whole process group), a per-call working directory, bounded output, and
privileges dropped in the child when the service is root.

There is no shell anywhere: the argument list goes to execve as it is. A command that
runs as the service's own account is a vfork of this process; one that runs as another
account goes through this worker's command launcher (launcher.py), which forks small.
"""
from __future__ import annotations

import locale
import os
from dataclasses import dataclass

from flask import current_app, has_app_context

from soca_api.schedulers import launcher_client
from soca_api.schedulers.errors import PermissionDenied, SchedulerTimeout, SchedulerUnavailable
from soca_api.schedulers.launcher import MAX_OUTPUT_BYTES, ChildTimeout, OutputTooLarge, run_child

# What a child process may inherit. Everything else (database URL, secrets, tokens) stays out.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class RunAs:
    """A POSIX identity to run a command as (root service only)."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def clean_environment(run_as: RunAs | None = None, extra: dict[str, str] | None = None,
                      path: str = SAFE_PATH) -> dict[str, str]:
    """A minimal environment for a child: never the service's own."""
    env = {"PATH": path, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if run_as is not None:
        env.update({"HOME": run_as.home, "USER": run_as.user, "LOGNAME": run_as.user})
    else:
        env["HOME"] = os.environ.get("HOME", "/")
    if extra:
        env.update(extra)
    return env


def run_command(args: list[str], *, timeout: float, cwd: str | None = None,
                run_as: RunAs | None = None, env: dict[str, str] | None = None,
                input_text: str | None = None) -> CommandResult:
    """Run `args` and capture its output.

    Raises SchedulerUnavailable when the program is missing or cannot be executed and
    SchedulerTimeout when it outlives `timeout` (its whole process group is killed).
    """
    if not args or not all(isinstance(a, str) for a in args):
        raise ValueError("args must be a non-empty list of strings")
    env = env if env is not None else clean_environment(run_as)
    encoding = locale.getpreferredencoding(False)
    data = input_text.encode(encoding, "replace") if input_text else None
    if run_as is not None and os.geteuid() == 0:
        # Dropping to the account between fork and exec rules out vfork: a root worker
        # would copy its whole address space per command. Its small launcher forks instead.
        code, out, err = _through_launcher(args, timeout, cwd, run_as, env, data)
    else:
        code, out, err = _direct(args, timeout, cwd, env, data)
    return CommandResult(tuple(args), code, _text(out, encoding), _text(err, encoding))


def _text(data: bytes, encoding: str) -> str:
    # What subprocess's text mode gives: the locale's encoding, universal newlines.
    return data.decode(encoding, "replace").replace("\r\n", "\n").replace("\r", "\n")


def _name(args: list[str]) -> str:
    return os.path.basename(args[0])


def _direct(args: list[str], timeout: float, cwd: str | None, env: dict[str, str],
            data: bytes | None) -> tuple[int, bytes, bytes]:
    """In this process: no identity change, so a vfork whatever the worker's size."""
    try:
        return run_child(args, timeout=timeout, cwd=cwd, env=env, input_bytes=data)
    except FileNotFoundError as exc:
        raise SchedulerUnavailable(f"Scheduler command not found: {_name(args)}") from exc
    except PermissionError as exc:
        raise SchedulerUnavailable(f"Scheduler command cannot be run: {_name(args)}") from exc
    except ChildTimeout as exc:
        raise _timeout(args, timeout) from exc
    except OutputTooLarge as exc:
        raise _too_large(args) from exc


def _timeout(args: list[str], timeout: float) -> SchedulerTimeout:
    return SchedulerTimeout(f"The scheduler did not answer within {timeout:g} seconds ({_name(args)})")


def _too_large(args: list[str]) -> SchedulerUnavailable:
    return SchedulerUnavailable(f"Scheduler command printed more than {MAX_OUTPUT_BYTES >> 20} MiB: {_name(args)}")


def uid_floor() -> int:
    """The lowest uid a command may run as: the app's SOCA_MIN_JOB_UID (or the start of its
    dedicated uid range, if lower), never below 1. Outside an app: 1 (never root)."""
    if not has_app_context():
        return 1
    config = current_app.config
    floor = int(config.get("SOCA_MIN_JOB_UID", 1))
    uid_range = config.get("SOCA_JOB_UID_RANGE")
    if uid_range:
        floor = min(floor, int(uid_range[0]))
    return max(1, floor)


def _through_launcher(args: list[str], timeout: float, cwd: str | None, run_as: RunAs,
                      env: dict[str, str], data: bytes | None) -> tuple[int, bytes, bytes]:
    floor = uid_floor()
    if type(run_as.uid) is not int or run_as.uid < floor or type(run_as.gid) is not int or run_as.gid < 1:
        raise PermissionDenied(f"Scheduler commands do not run as uid {run_as.uid}, gid {run_as.gid} "
                               f"(uid {floor} or above, gid 1 or above)")
    header = {"args": list(args), "cwd": cwd, "env": env,
              "timeout": float(timeout), "uid": run_as.uid, "gid": run_as.gid,
              "groups": [int(g) for g in run_as.groups]}
    try:
        answer, blobs = launcher_client.call(header, [data] if data else [], min_uid=floor,
                                             wait_seconds=timeout + launcher_client.ANSWER_GRACE_SECONDS)
    except launcher_client.LauncherWedged as exc:
        raise _timeout(args, timeout) from exc
    except launcher_client.LauncherGone as exc:
        raise SchedulerUnavailable(f"Scheduler command interrupted: {_name(args)}", detail=str(exc)) from exc
    except OSError as exc:  # the launcher itself could not be started
        raise SchedulerUnavailable(f"Scheduler command cannot be run: {_name(args)}",
                                   detail=f"command launcher: {exc.strerror or exc}") from exc
    error = answer.get("error")
    if error is None:
        out, err = (blobs + [b"", b""])[:2]
        return int(answer["returncode"]), out, err
    if error == "not_found":
        raise SchedulerUnavailable(f"Scheduler command not found: {_name(args)}")
    if error == "permission":
        raise SchedulerUnavailable(f"Scheduler command cannot be run: {_name(args)}")
    if error == "timeout":
        raise _timeout(args, timeout)
    if error == "too_large":
        raise _too_large(args)
    if error == "refused":
        raise PermissionDenied(f"Scheduler commands do not run as uid {run_as.uid}", detail=answer.get("message"))
    if error == "invalid":
        raise ValueError(answer.get("message", "invalid command"))
    raise OSError(answer.get("errno") or 0, answer.get("message") or "cannot run the command")

