#!/usr/bin/env python3
"""A replay fake of the PBS commands (qsub, qstat, qdel, qhold, qrls), for the tests.

As a program (run through a link named qsub, qstat, ...): it reads `scenario.json` from
the directory it was started from, looks up its exact argument list there, and prints the
recorded stdout and stderr and exits with the recorded code. Any other command line fails
loudly: a message on stderr, exit 99, and an `"matched": false` line in the call log the
tests check. Every call is appended to `calls.log` (one JSON object a line) in the same
directory. The scenario lives next to the links (not in an environment variable) because
the adapter runs commands with a clean environment.

scenario.json:
    {"commands": [
        {"argv": ["qstat", "-f", "-F", "json", "1"],   # program name + arguments, exact
         "stdout": "...", "stderr": "...", "exit": 0,
         "sleep": 0,                                    # seconds to hang first (fault)
         "source": "04_qstat_f_json_queued.txt"},      # where the answer was recorded
        ...]}

As a module (the tests import it): `load_fixture()` reads a recorded OpenPBS output file
and `FakePbs` builds a bin directory with the links, the scenario and the log.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass

COMMANDS = ("qsub", "qstat", "qdel", "qhold", "qrls")
SCENARIO_FILE = "scenario.json"
LOG_FILE = "calls.log"
UNMATCHED_EXIT = 99
# The recordings are part of the repository (tests/fixtures/README.md says where from).
FIXTURES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "openpbs")


# -- the program ------------------------------------------------------------------------

def main() -> int:
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    try:
        with open(os.path.join(here, SCENARIO_FILE), encoding="utf-8") as handle:
            commands = json.load(handle)["commands"]
    except (OSError, ValueError, KeyError) as exc:
        return _fail(here, argv, f"fakepbs: cannot read {SCENARIO_FILE}: {exc}")
    entry = next((c for c in commands if c["argv"] == argv), None)
    if entry is None:
        return _fail(here, argv, f"fakepbs: no recorded answer for {argv!r}")
    _log(here, {**_call_record(argv), "matched": True, "source": entry.get("source")})
    if entry.get("sleep"):
        time.sleep(float(entry["sleep"]))
    sys.stdout.write(entry.get("stdout", ""))
    sys.stderr.write(entry.get("stderr", ""))
    sys.stdout.flush()
    sys.stderr.flush()
    return int(entry.get("exit", 0))


def _fail(here: str, argv: list[str], message: str) -> int:
    _log(here, {**_call_record(argv), "matched": False, "error": message})
    sys.stderr.write(message + "\n")
    return UNMATCHED_EXIT


def _call_record(argv: list[str]) -> dict:
    record = {
        "argv": argv, "cwd": os.getcwd(), "uid": os.getuid(), "gid": os.getgid(),
        "time": time.time(), "env": sorted(os.environ), "path": os.environ.get("PATH", ""),
    }
    if argv[0] == "qsub" and len(argv) > 1 and os.path.isfile(argv[-1]):
        info = os.stat(argv[-1])
        with open(argv[-1], encoding="utf-8", errors="replace") as handle:
            record["script"] = {"uid": info.st_uid, "mode": stat.S_IMODE(info.st_mode), "text": handle.read(2000)}
    return record


def _log(here: str, record: dict) -> None:
    # One write of one line with O_APPEND: concurrent fakes do not interleave.
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(os.path.join(here, LOG_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# -- the library ------------------------------------------------------------------------

@dataclass(frozen=True)
class Recorded:
    """One recorded command of `tests/fixtures/openpbs/`."""

    name: str
    user: str
    cmd: str
    stdout: str
    stderr: str
    exit_code: int


def load_fixture(name: str) -> Recorded:
    """Read a recording: `# user:` / `# cmd:` headers, then the exact stdout, stderr and
    exit code sections (stdout may lack a trailing newline, as qstat prints it)."""
    with open(os.path.join(FIXTURES_DIR, name), encoding="utf-8") as handle:
        text = handle.read()
    head, rest = text.split("----- stdout -----\n", 1)
    stdout, rest = rest.split("----- stderr -----\n", 1)
    stderr, tail = rest.rsplit("----- exit code: ", 1)
    headers = dict(line[2:].split(": ", 1) for line in head.splitlines() if line.startswith("# ") and ": " in line)
    return Recorded(name, headers.get("user", ""), headers.get("cmd", ""), stdout, stderr,
                    int(tail.split(" ", 1)[0]))


class FakePbs:
    """A bin directory of fake PBS commands with its scenario and call log."""

    def __init__(self, bin_dir: str, commands: tuple[str, ...] = COMMANDS):
        self.bin_dir = bin_dir
        self.entries: list[dict] = []
        os.makedirs(bin_dir, exist_ok=True)
        program = os.path.join(bin_dir, "fakepbs.py")
        shutil.copyfile(os.path.abspath(__file__), program)
        os.chmod(program, 0o755)
        for command in commands:  # a command left out is "missing" (a fault to test)
            os.symlink("fakepbs.py", os.path.join(bin_dir, command))
        self.write()

    @property
    def log_path(self) -> str:
        return os.path.join(self.bin_dir, LOG_FILE)

    def add(self, argv: list[str], stdout: str = "", stderr: str = "", exit_code: int = 0,
            sleep: float = 0.0, source: str | None = None) -> FakePbs:
        self.entries = [e for e in self.entries if e["argv"] != argv]
        self.entries.append({"argv": argv, "stdout": stdout, "stderr": stderr, "exit": exit_code,
                             "sleep": sleep, "source": source})
        return self.write()

    def add_fixture(self, argv: list[str], fixture: str) -> FakePbs:
        recorded = load_fixture(fixture)
        return self.add(argv, recorded.stdout, recorded.stderr, recorded.exit_code, source=fixture)

    def write(self) -> FakePbs:
        # Write then rename: a fake starting meanwhile reads the old or the new, never half.
        path = os.path.join(self.bin_dir, SCENARIO_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump({"commands": self.entries}, handle, indent=1)
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)
        return self

    def calls(self, command: str | None = None) -> list[dict]:
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        return [r for r in records if command is None or r["argv"][0] == command]

    def unmatched(self) -> list[dict]:
        return [r for r in self.calls() if not r["matched"]]

    def clear_log(self) -> None:
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)


if __name__ == "__main__":
    sys.exit(main())
