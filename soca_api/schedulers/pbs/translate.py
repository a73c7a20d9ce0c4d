"""A JobRequest -> the qsub command line: the script goes to qsub as written, and what the
service decided beyond its directives travels as options; the script's file name.
"""
from __future__ import annotations

import re

from soca_api.schedulers.values import JobRequest

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def added_options(request: JobRequest, openpbs: bool = False) -> list[str]:
    """qsub options for what the service decided beyond the script's own directives.

    The script goes to qsub as written; the queue the rules were checked against (when the
    script names none), the job name, direct write of the output files and the queue's
    default resources travel on the command line, which PBS lets override directives.
    """
    options: list[str] = []
    given = {d.option for d in request.directives}
    if request.queue and "-q" not in given:
        options += ["-q", request.queue]
    if openpbs and "-N" not in given:
        # The name the service records (STDIN, as PBS names a job read from stdin), not
        # the script file's: the default output is <name>.o<number>.
        options += ["-N", request.name]
    if openpbs and "-k" not in given:
        # Direct write: stdout/stderr go straight to their final paths while the job
        # runs, so /job/output can follow a running job (README: what a site needs).
        options += ["-k", "doe"]
    written = set()
    for directive in request.directives:
        if directive.option == "-l" and directive.value:
            written |= {part.split("=", 1)[0] for part in directive.value.split(",")}
    for name, value in request.resources.items():
        if name not in written:
            options += ["-l", f"{name}={value}"]
    return options


def script_file_name(job_name: str) -> str:
    """A file name from the job name: only `[A-Za-z0-9._-]`, never hidden, never empty."""
    safe = _UNSAFE_NAME.sub("_", job_name or "").lstrip(".-")[:64]
    return (safe or "job") + ".sh"
