"""Running scheduler commands: argument lists only, a timeout on every call, a per-call
working directory, and privileges dropped in the child when the service is root.

There is no shell anywhere: the argument list goes to execve as it is.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from soca_api.schedulers.errors import SchedulerTimeout, SchedulerUnavailable

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
    SchedulerTimeout when it outlives `timeout` (the child is killed).
    """
    if not args or not all(isinstance(a, str) for a in args):
        raise ValueError("args must be a non-empty list of strings")
    kwargs: dict[str, object] = {}
    if run_as is not None and os.geteuid() == 0:
        # Python drops privileges in the child between fork and exec (setgroups, setgid,
        # setuid), so the parent never changes identity and threads are not disturbed.
        kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=list(run_as.groups))
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            env=env if env is not None else clean_environment(run_as),
            input=input_text,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            close_fds=True,
            **kwargs,
        )
    except FileNotFoundError as exc:
        raise SchedulerUnavailable(f"Scheduler command not found: {os.path.basename(args[0])}") from exc
    except PermissionError as exc:
        raise SchedulerUnavailable(f"Scheduler command cannot be run: {os.path.basename(args[0])}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SchedulerTimeout(
            f"The scheduler did not answer within {timeout:g} seconds ({os.path.basename(args[0])})"
        ) from exc
    return CommandResult(tuple(args), completed.returncode, completed.stdout, completed.stderr)
