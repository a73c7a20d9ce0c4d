"""Decode a submitted PBS batch script and parse its `#PBS` directives into a JobRequest.

Pure functions: no Flask, no I/O. Every rejection is a `ScriptError` whose message is
safe to show a client: it names the line and quotes at most that one directive line,
never the rest of the script (SOCA echoed whole scripts and tracebacks).

Rules follow docs/reference/pbs-facts.md ("Directives") and the OpenPBS
pbs_resources(7B) conversion rules for `nodes=` and job-wide `ncpus`.
"""
from __future__ import annotations

import base64
import binascii
import re
from calendar import monthrange
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from soca_api.schedulers.values import ArraySpec, Dependency, Directive, JobRequest
from soca_api.validation import QUEUE_NAME

__all__ = [
    "ScriptError",
    "ScriptTooLarge",
    "decode_payload",
    "format_mem",
    "format_walltime",
    "parse_script",
    "resource_list",
]


class ScriptError(ValueError):
    """A payload or script the service refuses; `message` is safe to show the client."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line  # 1-based script line, None when not about one line

    def __str__(self) -> str:
        return self.message


class ScriptTooLarge(ScriptError):
    """The payload or the decoded script is over the size limit (HTTP 413)."""


# --- limits -------------------------------------------------------------------------

MAX_JOB_NAME = 230  # docs/reference/pbs-facts.md; OpenPBS answers "Job name is too long" past it
MAX_ARRAY_SUBJOBS = 10_000  # OpenPBS's default server max_array_size
_MAX_COUNT = 1_000_000  # chunk counts, ncpus, ppn: far above any real cluster
_MAX_WALLTIME = 2**31 - 1  # seconds; PBS and Slurm keep it in 32 bits
_MAX_BYTES = 2**62  # sizes (mem); keeps products and sums inside int64
_SHOWN_DIRECTIVE = 100  # characters of a directive line quoted in a message
_BLANKS = " \t\f\v\r"

# --- patterns (ASCII only: `\d` and str.isdigit also accept non-ASCII digits) ------

_INT = re.compile(r"[0-9]{1,12}")
_SIGNED_INT = re.compile(r"[+-]?[0-9]{1,12}")
_JOB_NAME_CHARS = re.compile(r"[A-Za-z0-9._+-]+")
_PROJECT = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_PREFIX = re.compile(r"([A-Za-z0-9][A-Za-z0-9.-]*):(.*)", re.DOTALL)
_SERVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?")
_WALLTIME = re.compile(r"[0-9]{1,10}(:[0-9]{1,10}){0,2}")
_SIZE = re.compile(r"([0-9]{1,20})([kmgtp]?)([bw]?)", re.IGNORECASE)
_MAIL_USER = re.compile(r"[A-Za-z0-9._%+-]+(@[A-Za-z0-9.-]+)?")
_GROUP = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*(@[A-Za-z0-9.-]+)?")
_DEPEND_ID = re.compile(r"[0-9]+(\[[0-9]*\])?(\.[A-Za-z0-9_.-]+)?")
_ARRAY = re.compile(r"([0-9]{1,9})-([0-9]{1,9})(?::([0-9]{1,9}))?(?:%([0-9]{1,9}))?")
_START_AT = re.compile(r"([0-9]{4}|[0-9]{6}|[0-9]{8}|[0-9]{10}|[0-9]{12})(?:\.([0-9]{2}))?")
_KEEP = re.compile(r"n|(?!.*(.).*\1)[oed]{1,3}")  # n, or o/e/d each at most once
_MAIL_POINTS = re.compile(r"n|(?!.*(.).*\1)[abe]{1,3}")

_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
_WORD_BYTES = 8  # PBS's "w" unit is a 64-bit word
_MEM_UNITS = (("pb", 50), ("tb", 40), ("gb", 30), ("mb", 20), ("kb", 10))
_DEPEND_TYPES = ("after", "afterok", "afternotok", "afterany")
_PLACE_ARRANGEMENTS = {"free", "pack", "scatter", "vscatter"}
_PLACE_SHARING = {"excl", "shared", "exclhost"}
# Chunk resources PBS defines as integer counts or sizes; checked inside select too.
_CHUNK_COUNTS = {"ncpus", "mpiprocs", "ompthreads", "ngpus"}
_CHUNK_SIZES = {"mem", "vmem"}
# Host-level resources that must go in the select chunks, never job-wide beside select.
_CHUNK_ONLY_WITH_SELECT = ("ncpus", "mem")


class _Invalid(Exception):
    """A bad value, raised without line context; the parser adds the line.

    `resources` names the -l resources involved, so a problem found after all lines
    were read (e.g. nodes with select) is reported on the line that set them.
    """

    def __init__(self, what: str, resources: tuple[str, ...] = (), hint: str = "") -> None:
        super().__init__(what)
        self.what = what  # the problem, shown before the quoted directive
        self.hint = hint  # how to fix it, shown after
        self.resources = resources

    def sentence(self, where: str = "") -> str:
        return f"{self.what}{where}; {self.hint}" if self.hint else f"{self.what}{where}"


# --- payload --------------------------------------------------------------------------

_B64_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
_B64_BODY = re.compile(r"[A-Za-z0-9+/]*=*")
_B64_ALLOWED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= \t\r\n\f\v"
)
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def decode_payload(payload: str, max_bytes: int) -> str:
    """Decode the base64 `payload` form field into the script text.

    Accepts standard and URL-safe base64, missing `=` padding (the seed's own decode
    example has none) and whitespace or newlines anywhere (`base64` wraps at 76).
    """
    if payload is None or not payload.strip():
        raise ScriptError("payload is empty")
    encoded_limit = 4 * -(-max_bytes // 3)  # base64 length of max_bytes
    # Refuse before doing any work when even generous line wrapping cannot explain it.
    if len(payload) > encoded_limit + encoded_limit // 16 + 64:
        raise _too_large(max_bytes)
    compact = _B64_WHITESPACE.sub("", payload).translate(_URLSAFE_TO_STANDARD)
    if not _B64_BODY.fullmatch(compact):
        raise ScriptError(_base64_problem(payload))
    data = compact.rstrip("=")
    if len(data) % 4 == 1:  # no base64 text has this length, whatever the padding
        raise ScriptError("payload is not valid base64 (its length is wrong; was it cut short?)")
    if len(data) * 3 // 4 > max_bytes:
        raise _too_large(max_bytes)
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except binascii.Error:  # pragma: no cover - the checks above leave nothing for it
        raise ScriptError("payload is not valid base64") from None
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise ScriptError(
            f"Line {line}: script contains a NUL byte; only text scripts can be submitted", line
        )
    try:
        script = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ScriptError(
            f"Line {line}: script is not UTF-8 text (byte 0x{raw[exc.start]:02x})", line
        ) from None
    _check_text(script)
    return script


def _too_large(max_bytes: int) -> ScriptTooLarge:
    return ScriptTooLarge(f"script is larger than the limit of {max_bytes} bytes")


def _base64_problem(payload: str) -> str:
    for position, char in enumerate(payload, 1):
        if char not in _B64_ALLOWED:
            return f"payload is not valid base64 (unexpected character at position {position})"
    return "payload is not valid base64 ('=' padding before the end)"


def _check_text(script: str) -> None:
    """Rejections shared by decode_payload and parse_script (the web form skips base64)."""
    if not script.strip():
        raise ScriptError("script is empty")
    nul = script.find("\0")
    if nul >= 0:
        line = script.count("\n", 0, nul) + 1
        raise ScriptError(
            f"Line {line}: script contains a NUL byte; only text scripts can be submitted", line
        )
    crlf = script.find("\r\n")
    if crlf >= 0:
        line = script.count("\n", 0, crlf) + 1
        raise ScriptError(
            f"Line {line}: script contains CRLF (Windows) line endings; "
            "convert it with dos2unix",
            line,
        )
    if script.startswith("\ufeff"):
        # bash would run "\ufeff#!/bin/bash" as a command and no #PBS line would count.
        raise ScriptError(
            "Line 1: script starts with a byte order mark (BOM); save it as UTF-8 without BOM",
            1,
        )


# --- formatting -------------------------------------------------------------------------


def format_walltime(seconds: int) -> str:
    """Seconds as PBS shows walltime: "HH:MM:SS", hours unbounded ("100:00:00")."""
    if seconds < 0:
        raise ValueError("walltime cannot be negative")
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def format_mem(nbytes: int) -> str:
    """Bytes in PBS size style, in the largest unit that is exact: "8gb", "512mb", "7b"."""
    if nbytes < 0:
        raise ValueError("size cannot be negative")
    for unit, shift in _MEM_UNITS:
        if nbytes and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{unit}"
    return f"{nbytes}b"


# --- resource values --------------------------------------------------------------------


def _parse_walltime(value: str) -> int:
    if not _WALLTIME.fullmatch(value):
        raise _Invalid(
            f'walltime "{_clip(value)}" is not valid',
            ("walltime",),
            hint="use [[hours:]minutes:]seconds (e.g. 04:00:00) or plain seconds",
        )
    seconds = 0
    for part in value.split(":"):
        seconds = seconds * 60 + int(part)
    if seconds == 0:
        # PBS would kill the job at once, while Slurm reads a zero time limit as "none".
        raise _Invalid("walltime must be at least 1 second", ("walltime",))
    if seconds > _MAX_WALLTIME:
        raise _Invalid(f"walltime is too long (at most {_MAX_WALLTIME} seconds)", ("walltime",))
    return seconds


def _parse_size(name: str, value: str) -> int:
    match = _SIZE.fullmatch(value)
    if not match:
        raise _Invalid(
            f'{name} "{_clip(value)}" is not valid',
            (name,),
            hint="use a whole number with an optional unit b, kb, mb, gb, tb, pb "
            "or w, kw, mw, ... (e.g. 8gb)",
        )
    number, prefix, unit = match.group(1), match.group(2).lower(), match.group(3).lower()
    nbytes = int(number) << _SIZE_SHIFT[prefix]
    if unit == "w":
        nbytes *= _WORD_BYTES
    if nbytes == 0:
        # Slurm reads --mem=0 as "all the memory of the node".
        raise _Invalid(f"{name} must be more than 0", (name,))
    if nbytes > _MAX_BYTES:
        raise _Invalid(f"{name} is too large", (name,))
    return nbytes


def _parse_count(name: str, value: str, minimum: int = 1) -> int:
    if not _INT.fullmatch(value) or not minimum <= int(value) <= _MAX_COUNT:
        raise _Invalid(
            f'{name} "{_clip(value)}" is not valid',
            (name,),
            hint=f"use a whole number from {minimum} to {_MAX_COUNT}",
        )
    return int(value)


def _check_resource_value(name: str, value: str) -> None:
    if not value:
        raise _Invalid(f"resource {name} has an empty value", (name,))
    if any(not "!" <= char <= "~" or char in ",'\"" for char in value):
        raise _Invalid(
            f"value of resource {name} is not valid",
            (name,),
            hint="use printable ASCII without spaces, commas or quotes",
        )


@dataclass
class _Chunk:
    """One `N:res=val:...` term of a select statement."""

    count: int
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def ncpus(self) -> int:
        return int(self.resources.get("ncpus", "1"))  # OpenPBS default_chunk.ncpus = 1

    def __str__(self) -> str:
        return ":".join([str(self.count), *(f"{k}={v}" for k, v in self.resources.items())])


def _parse_select(value: str) -> list[_Chunk]:
    chunks = []
    for term in value.split("+"):
        items = term.split(":")
        chunk = _Chunk(1)
        if _INT.fullmatch(items[0]):
            chunk.count = _parse_count("the chunk count in select", items.pop(0))
        for item in items:
            name, sep, chunk_value = item.partition("=")
            well_formed = sep and _RESOURCE_NAME.fullmatch(name) and chunk_value
            if not well_formed or "=" in chunk_value:
                raise _Invalid(
                    f'select chunk "{_clip(term)}" is not valid',
                    ("select",),
                    hint="use [N:]resource=value[:resource=value...] "
                    "(e.g. select=2:ncpus=4:mem=8gb)",
                )
            if name in _CHUNK_COUNTS:
                _parse_count(f"{name} in select", chunk_value, minimum=0)
            elif name in _CHUNK_SIZES:
                _parse_size(f"{name} in select", chunk_value)
            chunk.resources[name] = chunk_value
        chunks.append(chunk)
    if sum(chunk.ncpus * chunk.count for chunk in chunks) == 0:
        raise _Invalid("select requests no cpus at all", ("select",))
    return chunks


@dataclass
class _NodesSpec:
    """A parsed old-style `nodes=N[:ppn=P][:property...][+...][#excl|#shared|#property]`."""

    terms: list[tuple[int, int | None, int | None, list[str]]]  # count, ncpus=X, ppn, props
    place: str


def _parse_nodes(value: str) -> _NodesSpec:
    spec, *suffixes = value.split("#")
    place = "scatter"
    shared_props: list[str] = []
    for suffix in suffixes:
        if suffix in ("excl", "shared"):
            place = f"scatter:{suffix}"
        elif _RESOURCE_NAME.fullmatch(suffix):
            shared_props.append(suffix)
        else:
            raise _Invalid(f'nodes suffix "#{_clip(suffix)}" is not valid', ("nodes",))
    terms = []
    for term in spec.split("+"):
        items = term.split(":")
        if not _INT.fullmatch(items[0]):
            # Old PBS also took host names here; hosts are requested with select=...:host=.
            raise _Invalid(
                f'nodes "{_clip(term)}" does not start with a node count',
                ("nodes",),
                hint="use nodes=N[:ppn=P], or select=N:ncpus=P:host=NAME for a given host",
            )
        count = _parse_count("nodes", items[0])
        ncpus: int | None = None
        ppn: int | None = None
        props: list[str] = []
        for item in items[1:]:
            name, sep, item_value = item.partition("=")
            if sep and name == "ppn":
                ppn = _parse_count("ppn", item_value)
            elif sep and name in ("ncpus", "cpp"):
                ncpus = _parse_count(name, item_value, minimum=0)
            elif not sep and _RESOURCE_NAME.fullmatch(item):
                props.append(item)
            else:
                raise _Invalid(
                    f'"{_clip(item)}" is not valid in nodes',
                    ("nodes",),
                    hint="use ppn=P, ncpus=X or a node property",
                )
        terms.append((count, ncpus, ppn, props + shared_props))
    return _NodesSpec(terms, place)


def _check_place(value: str) -> None:
    for part in value.split(":"):
        name, sep, group = part.partition("=")
        if part in _PLACE_ARRANGEMENTS or part in _PLACE_SHARING:
            continue
        if sep and name == "group" and _RESOURCE_NAME.fullmatch(group):
            continue
        raise _Invalid(
            f'place "{_clip(value)}" is not valid',
            ("place",),
            hint="use [free|pack|scatter|vscatter][:excl|shared|exclhost][:group=resource]",
        )


def _check_resource(name: str, value: str) -> None:
    """Syntax of one `-l name=value`; checks that need other resources come later."""
    _check_resource_value(name, value)
    if name == "walltime":
        _parse_walltime(value)
    elif name in _CHUNK_SIZES:
        _parse_size(name, value)
    elif name == "ncpus":
        _parse_count("ncpus", value)
    elif name == "select":
        _parse_select(value)
    elif name == "nodes":
        _parse_nodes(value)
    elif name == "place":
        _check_place(value)


@dataclass
class _Layout:
    """What the resources amount to: select/place as OpenPBS shows them, and totals."""

    select: str
    place: str
    ncpus: int
    nodes: int
    mem_bytes: int | None
    walltime_seconds: int | None


def _layout(resources: Mapping[str, str]) -> _Layout:
    walltime = resources.get("walltime")
    walltime_seconds = _parse_walltime(walltime) if walltime is not None else None
    mem = resources.get("mem")
    mem_bytes = _parse_size("mem", mem) if mem is not None else None
    ncpus = resources.get("ncpus")
    job_ncpus = _parse_count("ncpus", ncpus) if ncpus is not None else None

    if "nodes" in resources:
        for other in ("select", "place"):
            if other in resources:
                raise _Invalid(
                    f"nodes cannot be used with {other}",
                    ("nodes", other),
                    hint="use either nodes=N[:ppn=P] or select and place",
                )
        return _nodes_layout(
            _parse_nodes(resources["nodes"]),
            job_ncpus,
            mem_bytes,
            walltime_seconds,
        )

    if "select" in resources:
        for name in _CHUNK_ONLY_WITH_SELECT:
            if name in resources:
                # pbs_resources(7B): with select, host-level resources go in the chunks.
                raise _Invalid(
                    f"{name} cannot be requested on its own together with select",
                    (name, "select"),
                    hint=f"put it in the select chunks (e.g. select=1:{name}={resources[name]})",
                )
        chunks = _parse_select(resources["select"])
        chunk_mem = [
            chunk.count * _parse_size("mem", chunk.resources["mem"])
            for chunk in chunks
            if "mem" in chunk.resources
        ]
        return _Layout(
            select=resources["select"],  # shown as written
            place=resources.get("place", "free"),  # pbs_resources(7B) default arrangement
            ncpus=sum(chunk.count * chunk.ncpus for chunk in chunks),
            nodes=sum(chunk.count for chunk in chunks),
            mem_bytes=sum(chunk_mem) if chunk_mem else None,  # job-wide mem is the chunk sum
            walltime_seconds=walltime_seconds,
        )

    if "place" in resources:
        raise _Invalid(
            "place cannot be used without select",
            ("place",),
            hint="add select=N:ncpus=P, or remove place",
        )
    # Only job-wide resources: OpenPBS converts them to one chunk placed "pack".
    total = job_ncpus if job_ncpus is not None else 1
    chunk = _Chunk(1, {"ncpus": str(total)})
    if mem_bytes is not None:
        chunk.resources["mem"] = format_mem(mem_bytes)
    return _Layout(str(chunk), "pack", total, 1, mem_bytes, walltime_seconds)


def _nodes_layout(
    spec: _NodesSpec, job_ncpus: int | None, mem_bytes: int | None, walltime_seconds: int | None
) -> _Layout:
    """Convert `nodes=` the way OpenPBS does (pbs_resources(7B), BACKWARD COMPATIBILITY).

    A chunk gets ncpus=X*P (X from ncpus=/cpp=, P from ppn=, each 1 when absent) and
    mpiprocs=P when ppn is given. A job-wide `-l ncpus=Z` beside nodes (and no ncpus= in
    the spec) is split evenly: each chunk gets Z / number-of-chunks, which must divide.
    A job-wide mem is split the same way (rounded up to a kb when it does not divide).
    """
    total_chunks = sum(count for count, _, _, _ in spec.terms)
    per_chunk_ncpus: int | None = None
    if job_ncpus is not None and all(ncpus is None for _, ncpus, _, _ in spec.terms):
        if job_ncpus % total_chunks:
            raise _Invalid(
                f"ncpus={job_ncpus} cannot be split evenly over {total_chunks} nodes",
                ("ncpus", "nodes"),
                hint="give a multiple of the node count, or cpus per node with ppn=P",
            )
        per_chunk_ncpus = job_ncpus // total_chunks
    per_chunk_mem: str | None = None
    if mem_bytes is not None:
        share = -(-mem_bytes // total_chunks)
        if share * total_chunks != mem_bytes:
            share = -(-share // 1024) * 1024
        per_chunk_mem = format_mem(share)

    chunks = []
    for count, ncpus, ppn, props in spec.terms:
        chunk = _Chunk(count, {prop: "True" for prop in props})
        own_ncpus = (1 if ncpus is None else ncpus) * (ppn or 1)
        chunk_ncpus = own_ncpus if per_chunk_ncpus is None else per_chunk_ncpus
        chunk.resources["ncpus"] = str(chunk_ncpus)
        if ppn is not None:
            chunk.resources["mpiprocs"] = str(ppn)
        if per_chunk_mem is not None:
            chunk.resources["mem"] = per_chunk_mem
        chunks.append(chunk)
    ncpus_total = sum(chunk.count * chunk.ncpus for chunk in chunks)
    if ncpus_total == 0:
        raise _Invalid("nodes requests no cpus at all", ("nodes",))
    return _Layout(
        select="+".join(str(chunk) for chunk in chunks),
        place=spec.place,
        ncpus=ncpus_total,
        nodes=total_chunks,
        mem_bytes=mem_bytes,
        walltime_seconds=walltime_seconds,
    )


def resource_list(request: JobRequest) -> dict[str, object]:
    """The `Resource_List` a real OpenPBS would show for `request` (keys sorted, as qstat).

    ncpus and nodect are ints, everything else strings; select and place follow the
    OpenPBS conversion rules (select kept as written, "free" by default; nodes= becomes
    chunks placed "scatter"; job-wide resources alone become one chunk placed "pack").
    """
    try:
        layout = _layout(request.resources)
    except _Invalid as exc:
        raise ScriptError(exc.sentence()) from None
    shown: dict[str, object] = dict(request.resources)
    shown.pop("mem", None)
    shown.pop("walltime", None)
    shown.update(
        ncpus=request.ncpus, nodect=request.nodes, select=layout.select, place=layout.place
    )
    if request.mem_bytes is not None:
        shown["mem"] = format_mem(request.mem_bytes)
    if request.walltime_seconds is not None:
        shown["walltime"] = format_walltime(request.walltime_seconds)
    return dict(sorted(shown.items()))


# --- directives -------------------------------------------------------------------------


def parse_script(script: str, now: datetime | None = None) -> JobRequest:
    """Read the `#PBS` directives at the top of `script` into a validated JobRequest.

    Directives end at the first executable line (non-blank, not starting with `#`);
    `#PBS` lines after it are ignored, as qsub does. `now` (naive local time) fills the
    parts of `-a` that are left out; it defaults to the current time.
    """
    _check_text(script)
    return _Parser(script, now if now is not None else datetime.now()).run()


def _clip(text: str, limit: int = 40) -> str:
    """A value or line as it may appear in a message: one line, printable, short."""
    text = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text.replace("\t", " ")
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tokenize(text: str) -> list[str]:
    """Split a directive's options like a shell: quotes group, `#` after a blank ends it."""
    tokens: list[str] = []
    current: list[str] = []
    in_token = False
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char in _BLANKS:
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
            i += 1
        elif char == "#" and not in_token:
            break  # trailing comment
        elif char == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise _Invalid("unterminated ' quote")
            current.append(text[i + 1 : close])
            in_token, i = True, close + 1
        elif char == '"':
            i += 1
            while True:
                if i >= end:
                    raise _Invalid('unterminated " quote')
                char = text[i]
                if char == '"':
                    i += 1
                    break
                if char == "\\" and i + 1 < end and text[i + 1] in '"\\$`':
                    char = text[i + 1]
                    i += 1
                current.append(char)
                i += 1
            in_token = True
        elif char == "\\" and i + 1 < end:
            current.append(text[i + 1])
            in_token, i = True, i + 2
        else:
            current.append(char)
            in_token, i = True, i + 1
    if in_token:
        tokens.append("".join(current))
    return tokens


# Options qsub takes in a directive, as getopt letters: flags, then options with a value.
_FLAGS = frozenset("Vh")
_OPTION_LIKE = re.compile(r"-[A-Za-z]")
_WITH_VALUE = frozenset("NqloejvPAamMrWJSkpu")
# Real qsub options this service does not take, with the reason shown to the client.
_UNSUPPORTED = {
    "I": "interactive jobs cannot be submitted through the API",
    "X": "X11 forwarding needs an interactive job",
    "C": "the directive prefix cannot be changed from inside a script",
    "c": "checkpointing is not supported",
    "R": "removing output files is not supported",
    "f": "it only changes how the qsub command itself runs",
    "z": "it only changes how the qsub command itself runs",
    "G": "interactive GUI jobs are not supported",
}


def _getopt(tokens: list[str]) -> Iterator[tuple[str, str | None]]:
    """(option, value) pairs with getopt's rules: `-hV` groups flags, `-Nname` is -N name."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if len(token) < 2 or token[0] != "-":
            raise _Invalid(f'unexpected argument "{_clip(token)}"', hint="options start with -")
        j = 1
        while j < len(token):
            letter = token[j]
            j += 1
            option = f"-{_clip(letter)}"
            if letter in _FLAGS:
                yield option, None
            elif letter in _WITH_VALUE:
                if j < len(token):
                    value = token[j:]
                elif i < len(tokens) and not _OPTION_LIKE.match(tokens[i]):
                    value = tokens[i]  # "-p -5" is a value; "-N -j" is a missing name
                    i += 1
                else:
                    raise _Invalid(f"option {option} is missing its value")
                if not value:
                    raise _Invalid(f"option {option} has an empty value")
                yield option, value
                break
            elif letter in _UNSUPPORTED:
                raise _Invalid(f"option {option} is not supported", hint=_UNSUPPORTED[letter])
            else:
                raise _Invalid(f"unknown option {option}")


class _Parser:
    """Builds one JobRequest; each `_opt_X` method handles option -X."""

    def __init__(self, script: str, now: datetime) -> None:
        self.request = JobRequest(script=script)
        self.now = now
        self.line_texts: dict[int, str] = {}
        self.resource_lines: dict[str, int] = {}
        self.line = 0

    def run(self) -> JobRequest:
        for number, line in enumerate(self.request.script.split("\n"), 1):
            text = line.strip(_BLANKS)  # ASCII only, like bash: NBSP is not a blank
            if not text:
                continue
            if not text.startswith("#"):
                break  # first executable line: qsub reads no directive past it
            if text.startswith("#PBS"):
                self.line = number
                self.line_texts[number] = text
                try:
                    self._directive(text[4:])
                except _Invalid as exc:
                    raise self._error(exc, number) from None
        try:
            layout = _layout(self.request.resources)
        except _Invalid as exc:
            lines = [self.resource_lines[n] for n in exc.resources if n in self.resource_lines]
            if not lines:  # pragma: no cover - every layout problem names its resources
                raise ScriptError(exc.sentence()) from None
            raise self._error(exc, max(lines)) from None
        self.request.ncpus = layout.ncpus
        self.request.nodes = layout.nodes
        self.request.mem_bytes = layout.mem_bytes
        self.request.walltime_seconds = layout.walltime_seconds
        return self.request

    def _error(self, problem: _Invalid, line: int) -> ScriptError:
        shown = _clip(self.line_texts[line], _SHOWN_DIRECTIVE)
        return ScriptError(f"Line {line}: " + problem.sentence(f' in "{shown}"'), line)

    def _directive(self, options: str) -> None:
        if options and options[0] not in _BLANKS:
            raise _Invalid('"#PBS" must be followed by a space')
        for option, value in _getopt(_tokenize(options)):
            self.request.directives.append(Directive(self.line, option, value))
            handler = getattr(self, f"_opt_{option[1]}")
            if value is None:
                handler()
            else:
                handler(value)

    # Each handler gets the option's value (flags get none). Later options win, as in
    # qsub, except -l, -v and -W depend, which add to what earlier lines gave.

    def _opt_N(self, value: str) -> None:
        if len(value) > MAX_JOB_NAME:
            raise _Invalid(
                f"job name is too long ({len(value)} characters, at most {MAX_JOB_NAME})"
            )
        if not _JOB_NAME_CHARS.fullmatch(value):
            raise _Invalid(
                f'job name "{_clip(value)}" contains characters that are not allowed',
                hint='use letters, digits, ".", "_", "+" and "-"',
            )
        self.request.name = value
        self.request.name_given = True

    def _opt_q(self, value: str) -> None:
        queue, _, server = value.partition("@")
        if "@" in value and not _SERVER.fullmatch(server):
            raise _Invalid(f'server name "{_clip(server)}" in -q is not valid')
        if queue and not QUEUE_NAME.fullmatch(queue):
            raise _Invalid(
                f'queue name "{_clip(queue)}" is not valid',
                hint='use 1 to 15 letters, digits, "_" or "-", starting with a letter',
            )
        self.request.queue = queue or None  # "@server" alone means that server's default queue

    def _opt_l(self, value: str) -> None:
        for item in value.split(","):
            name, sep, resource_value = item.partition("=")
            if not _RESOURCE_NAME.fullmatch(name):
                raise _Invalid(f'"{_clip(item)}" is not a valid resource', hint="use name=value")
            if not sep:
                raise _Invalid(f"resource {name} has no value", hint=f"use {name}=value")
            _check_resource(name, resource_value)
            self.request.resources[name] = resource_value
            self.resource_lines[name] = self.line

    def _opt_o(self, value: str) -> None:
        self.request.output_path = self._path("-o", value)

    def _opt_e(self, value: str) -> None:
        self.request.error_path = self._path("-e", value)

    @staticmethod
    def _path(option: str, value: str) -> str:
        match = _HOST_PREFIX.fullmatch(value)
        path = match.group(2) if match else value  # the service decides the host
        if not path:
            raise _Invalid(f"option {option} has an empty path")
        if any(not char.isprintable() for char in path):
            raise _Invalid(f"path of {option} contains control characters")
        return path

    def _opt_j(self, value: str) -> None:
        if value not in ("oe", "eo", "n"):
            raise _Invalid(f'-j "{_clip(value)}" is not valid', hint="use oe, eo or n")
        self.request.join = value

    def _opt_V(self) -> None:
        self.request.export_all = True

    def _opt_v(self, value: str) -> None:
        for item in value.split(","):
            name, sep, variable_value = item.partition("=")
            if not _VARIABLE_NAME.fullmatch(name):
                raise _Invalid(f'"{_clip(name)}" is not a valid variable name in -v')
            if any(not char.isprintable() or char in "'\"" for char in variable_value):
                raise _Invalid(
                    f"value of variable {name} in -v contains quotes or control characters"
                )
            # A bare name asks qsub to export that variable's value: recorded as "".
            self.request.variables[name] = variable_value if sep else ""

    def _opt_P(self, value: str) -> None:
        self.request.project = self._project("project (-P)", value)

    def _opt_A(self, value: str) -> None:
        self.request.account = self._project("account (-A)", value)

    @staticmethod
    def _project(what: str, value: str) -> str:
        if not _PROJECT.fullmatch(value):
            raise _Invalid(
                f'{what} "{_clip(value)}" is not valid',
                hint='use 1 to 64 letters, digits, ".", "_", "+" or "-"',
            )
        return value

    def _opt_h(self) -> None:
        self.request.hold = True

    def _opt_a(self, value: str) -> None:
        self.request.start_after = _parse_start_time(value, self.now)

    def _opt_m(self, value: str) -> None:
        if not _MAIL_POINTS.fullmatch(value):
            raise _Invalid(
                f'-m "{_clip(value)}" is not valid', hint="use n, or a, b and e (e.g. abe)"
            )
        self.request.mail_points = value

    def _opt_M(self, value: str) -> None:
        for user in value.split(","):
            if not _MAIL_USER.fullmatch(user):
                raise _Invalid(
                    f'mail user "{_clip(user)}" in -M is not valid', hint="use user[@host]"
                )
        self.request.mail_users = value

    def _opt_r(self, value: str) -> None:
        if value not in ("y", "n"):
            raise _Invalid(f'-r "{_clip(value)}" is not valid', hint="use y or n")
        self.request.rerunable = value == "y"

    def _opt_W(self, value: str) -> None:
        # One attribute per -W: a depend list has commas of its own.
        key, sep, attribute = value.partition("=")
        if not sep or not attribute:
            raise _Invalid(f'-W "{_clip(value)}" is not valid', hint="use -W attribute=value")
        if key == "depend":
            self.request.dependencies.extend(_parse_depend(attribute))
        elif key == "group_list":
            for group in attribute.split(","):
                if not _GROUP.fullmatch(group):
                    raise _Invalid(f'group "{_clip(group)}" in group_list is not valid')
            self.request.group_list = attribute
        elif key == "sandbox":
            if attribute.upper() not in ("HOME", "PRIVATE"):
                raise _Invalid(
                    f'sandbox "{_clip(attribute)}" is not valid', hint="use HOME or PRIVATE"
                )
            # Accepted for compatibility; the service decides the job directory.
        else:
            raise _Invalid(
                f'-W attribute "{_clip(key)}" is not supported',
                hint="use depend, group_list or sandbox",
            )

    def _opt_J(self, value: str) -> None:
        self.request.array = _parse_array(value)

    def _opt_S(self, value: str) -> None:
        if not value.startswith("/") or any(not "!" <= c <= "~" or c in ",@'\"" for c in value):
            raise _Invalid(
                f'shell "{_clip(value)}" is not valid',
                hint="use an absolute path such as /bin/bash",
            )
        self.request.shell = value

    def _opt_k(self, value: str) -> None:
        if not _KEEP.fullmatch(value):
            raise _Invalid(
                f'-k "{_clip(value)}" is not valid', hint="use n, or o, e and d (e.g. oe)"
            )
        self.request.keep_files = value

    def _opt_p(self, value: str) -> None:
        if not _SIGNED_INT.fullmatch(value) or not -1024 <= int(value) <= 1023:
            raise _Invalid(
                f'priority "{_clip(value)}" is not valid',
                hint="use a whole number from -1024 to 1023",
            )
        self.request.priority = int(value)

    def _opt_u(self, value: str) -> None:
        # Accepted for compatibility and ignored: jobs always run as the API user.
        for user in value.split(","):
            if not _MAIL_USER.fullmatch(user):
                raise _Invalid(f'user "{_clip(user)}" in -u is not valid')


def _parse_depend(value: str) -> list[Dependency]:
    dependencies = []
    for clause in value.split(","):
        kind, *job_ids = clause.split(":")
        if kind not in _DEPEND_TYPES:
            raise _Invalid(
                f'dependency type "{_clip(kind)}" is not supported',
                hint="use " + ", ".join(_DEPEND_TYPES),
            )
        if not job_ids:
            raise _Invalid(f"dependency {kind} names no job", hint=f"use {kind}:jobid[:jobid...]")
        for job_id in job_ids:
            if not _DEPEND_ID.fullmatch(job_id):
                raise _Invalid(f'job id "{_clip(job_id)}" in depend is not valid')
        dependencies.append(Dependency(kind, tuple(job_ids)))
    return dependencies


def _parse_array(value: str) -> ArraySpec:
    match = _ARRAY.fullmatch(value)
    if not match:
        raise _Invalid(
            f'-J "{_clip(value)}" is not valid', hint="use start-end[:step][%max_running]"
        )
    start, end = int(match.group(1)), int(match.group(2))
    step = int(match.group(3)) if match.group(3) is not None else 1
    max_running = int(match.group(4)) if match.group(4) is not None else None
    if start > end:
        raise _Invalid(f"array start {start} is greater than its end {end}")
    if step < 1:
        raise _Invalid("array step must be at least 1")
    if max_running is not None and max_running < 1:
        raise _Invalid("array %max_running must be at least 1")
    subjobs = (end - start) // step + 1
    if subjobs > MAX_ARRAY_SUBJOBS:
        raise _Invalid(f"array has {subjobs} subjobs; at most {MAX_ARRAY_SUBJOBS} are allowed")
    return ArraySpec(start, end, step, max_running)


def _parse_start_time(value: str, now: datetime) -> datetime:
    """`-a [[[[CC]YY]MM]DD]hhmm[.SS]`, the missing parts taken from `now`.

    As qsub does, a time whose leading parts were left out and that is already past
    moves to the next day, month or year; a fully given past time is kept (the job is
    simply eligible at once).
    """
    match = _START_AT.fullmatch(value)
    problem = _Invalid(
        f'-a "{_clip(value)}" is not a valid date and time', hint="use [[[[CC]YY]MM]DD]hhmm[.SS]"
    )
    if not match:
        raise problem
    digits, second = match.group(1), int(match.group(2) or 0)
    hour, minute = int(digits[-4:-2]), int(digits[-2:])
    day = int(digits[-6:-4]) if len(digits) >= 6 else None
    month = int(digits[-8:-6]) if len(digits) >= 8 else None
    year = None
    if len(digits) == 10:
        year = now.year // 100 * 100 + int(digits[:2])
    elif len(digits) == 12:
        year = int(digits[:4])
    if hour > 23 or minute > 59 or second > 59:
        raise problem
    if (month is not None and not 1 <= month <= 12) or (day is not None and not 1 <= day <= 31):
        raise problem
    if year is not None and year < 1:  # datetime has no year 0
        raise problem

    def at(y: int, m: int, d: int) -> datetime | None:
        if d > monthrange(y, m)[1]:
            return None
        return datetime(y, m, d, hour, minute, second)

    if year is not None and month is not None and day is not None:  # all given
        when = at(year, month, day)
        if when is None:
            raise problem
        return when
    if month is not None and day is not None:
        for y in range(now.year, now.year + 9):  # Feb 29 may need the next leap year
            when = at(y, month, day)
            if when is not None and when > now:
                return when
        raise problem
    if day is not None:
        y, m = now.year, now.month
        for _ in range(13):  # day 31 waits for the next month that has one
            when = at(y, m, day)
            if when is not None and when > now:
                return when
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        raise problem  # pragma: no cover - a day 1..31 always fits within 13 months
    when = datetime(now.year, now.month, now.day, hour, minute, second)
    return when if when > now else when + timedelta(days=1)
