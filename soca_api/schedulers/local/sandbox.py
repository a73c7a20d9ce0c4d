"""The local runner's job sandbox (bubblewrap) and its start-up checks on the data folder.

A service that is not root runs every job as its own account, so only a sandbox keeps
one user's job from the service and from other users' jobs: the system read-only, the
job's own folder writable, a private /tmp, its own pid and IPC namespaces (no other
job can be seen or signalled), and nothing else: not the data folder (secret key,
admin key, database, other users' folders), not the service's home.
"""
from __future__ import annotations

import os
import shutil
import stat

from soca_api.schedulers.commands import run_command
from soca_api.schedulers.errors import SchedulerError

SANDBOX_MODES = ("on", "off")
# What a job sees of the system, read-only. Anything else (/home, /root, /var, /srv, /mnt,
# /media, /run) is absent from its world.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
INSTALL_HINT = ("install bubblewrap (apt-get install bubblewrap), or set SOCA_LOCAL_SANDBOX=off "
                "on a single-user host")


def sandbox_wanted(mode: str) -> bool:
    """A root service separates jobs by uid; any other service needs the sandbox."""
    if mode not in SANDBOX_MODES:
        raise ValueError(f"SOCA_LOCAL_SANDBOX must be one of {SANDBOX_MODES}, not {mode!r}")
    return mode == "on" and os.geteuid() != 0


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bwrap_command(command: list[str], *, job_dir: str, read_only_files: list[str],
                  hidden: list[str], bwrap: str = "bwrap") -> list[str]:
    """The bwrap argument list that runs `command` in `job_dir`'s sandbox.

    `hidden` folders (the data folder, the database's) are covered with an empty tmpfs
    where they lie inside a system folder the job sees; `read_only_files` (the job's
    script and node file, kept in the data folder's spool) are the only files of the
    service the job may read.
    """
    args = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "job"]
    shown: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            shown.append(path)
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--dir", "/var/tmp"]
    for path in hidden:
        if any(_under(path, root) for root in shown) and os.path.isdir(path):
            args += ["--tmpfs", path]
    args += ["--bind", job_dir, job_dir]
    for path in read_only_files:
        args += ["--ro-bind", path, path]
    args += ["--chdir", job_dir, "--", *command]
    return args


def probe(hidden: list[str], scratch_dir: str, timeout: float = 20.0) -> str | None:
    """None when a sandbox can be made here, else why not (for the log, health and jobs)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"the job sandbox cannot be made: bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
    args = bwrap_command(["/bin/sh", "-c", "true"], job_dir=scratch_dir, read_only_files=[], hidden=hidden,
                         bwrap=bwrap)
    try:
        result = run_command(args, timeout=timeout)
    except SchedulerError as exc:
        return f"the job sandbox cannot be made: {exc.message}; {INSTALL_HINT}"
    if not result.ok:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1][:300]
        return (f"the job sandbox cannot be made: bwrap says {reason!r} (are unprivileged user "
                f"namespaces allowed?); {INSTALL_HINT}")
    return None


# -- the data folder -------------------------------------------------------------------------
def untraversable_ancestor(path: str) -> tuple[str, int] | None:
    """The first folder from "/" down to `path` that other accounts cannot pass, with its mode."""
    current = "/"
    for part in [p for p in os.path.abspath(path).split("/") if p]:
        current = os.path.join(current, part)
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return current, 0
        if not mode & stat.S_IXOTH:
            return current, stat.S_IMODE(mode)
    return None


def secure_data_dir(data_dir: str, job_accounts_enter: bool, log) -> str | None:
    """Make the data folder safe for jobs on this host; None, or why jobs cannot start.

    Every file in it is the service's alone (0600); its folders other than jobs/ and
    spool/ too (0700). When job accounts must pass through it (a root service starts jobs
    as other uids, whose scripts wait in spool/), the data folder is made traversable
    (0711, not listable) if it is ours, and refused, naming the folder, if a parent is
    not traversable.
    """
    passable = {"jobs", "spool"}
    with os.scandir(data_dir) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                continue
            if stat.S_ISDIR(info.st_mode):
                wanted = 0o711 if entry.name in passable else 0o700
                if stat.S_IMODE(info.st_mode) != wanted:
                    os.chmod(entry.path, wanted)
                    log.info("data folder: %s made mode %o", entry.path, wanted)
            elif stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    os.fchmod(fd, 0o600)
                finally:
                    os.close(fd)
                log.info("data folder: %s made mode 600 (it was readable by others)", entry.path)
    if not job_accounts_enter:
        return None
    mode = stat.S_IMODE(os.stat(data_dir).st_mode)
    if not mode & stat.S_IXOTH and os.stat(data_dir).st_uid == os.geteuid():
        os.chmod(data_dir, (mode & 0o700) | 0o011)
        log.warning("data folder %s was mode %o: made traversable (%o) so that job accounts reach "
                    "their folders and scripts", data_dir, mode, (mode & 0o700) | 0o011)
    blocked = untraversable_ancestor(data_dir)
    if blocked is not None:
        path, mode = blocked
        return (f"job accounts cannot reach the data folder {data_dir}: {path} is mode {mode:o} "
                f"(not traversable by others); chmod o+x {path} or move SOCA_DATA_DIR")
    return None
