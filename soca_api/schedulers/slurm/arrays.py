"""Slurm arrays in PBS terms: array index text ("2-4%1" <-> "1-5:2") and the one
"123[]" record qstat shows for an array, built from its task records. An array submitted
as 123 has tasks `123_N` (PBS `123[N]`); the tasks still pending share one record whose
ArrayTaskId is a range such as `2-4%1`.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from soca_api.schedulers.values import SUBSTATE_DELETED, SUBSTATES, JobInfo


def array_task_ids(text: str) -> list[int]:
    """"2-4%1", "3,5%1", "1-9:2", "7" -> the task numbers."""
    ids: list[int] = []
    for part in text.split("%", 1)[0].split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not match:
            continue
        start = int(match.group(1))
        end = int(match.group(2) or start)
        ids += range(start, end + 1, int(match.group(3) or 1))
    return ids


def indices_text(ids: Iterable[int]) -> str | None:
    """[1, 3, 5] -> "1-5:2"; irregular sets as comma-separated runs."""
    ordered = sorted(set(ids))
    if not ordered:
        return None
    if len(ordered) == 1:
        return str(ordered[0])
    steps = {b - a for a, b in itertools.pairwise(ordered)}
    if len(steps) == 1:
        step = steps.pop()
        return f"{ordered[0]}-{ordered[-1]}" + (f":{step}" if step != 1 else "")
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def array_job_id(info: JobInfo) -> str | None:
    """"123[4]" / "123[]" -> "123"; None for a plain job."""
    return info.id.split("[", 1)[0] if "[" in info.id else None


def _task_ids(info: JobInfo) -> list[int]:
    index = info.id.split("[", 1)[1].rstrip("]")
    return [int(index)] if index else array_task_ids(info.array_indices or "")


def _array_exit_status(tasks: list[JobInfo]) -> int:
    """PBS: 0 when every subjob exited 0, 2 when one was deleted or aborted (negative
    status), 1 when one exited non-zero."""
    if any(task.substate == SUBSTATE_DELETED or (task.exit_status or 0) < 0 for task in tasks):
        return 2
    return 1 if any(task.exit_status for task in tasks) else 0


def array_parent(parent_id: str, tasks: list[JobInfo]) -> JobInfo:
    """The PBS view of an array ("123[]") from its task records: F when all finished, B
    once any task has started, H when every pending task is held, else Q."""
    first = min(tasks, key=lambda t: (_task_ids(t) or [0])[0])
    states = [task.state for task in tasks]
    if all(task.is_finished for task in tasks):
        letter = "F"
    elif any(s in ("R", "E", "S") or s == "F" for s in states):
        letter = "B"
    elif all(s == "H" for s in states):
        letter = "H"
    else:
        letter = "Q"
    started = [task.started for task in tasks if task.started]
    finished = [task.finished for task in tasks if task.finished]
    parent = JobInfo(
        id=f"{parent_id}[]",
        name=first.name,
        owner=first.owner,
        state=letter,
        queue=first.queue,
        submit_host=first.submit_host,
        substate=SUBSTATES.get(letter),
        created=first.created,
        queued=first.queued,
        eligible=first.eligible,
        modified=max((t.modified for t in tasks if t.modified), default=None),
        started=min(started) if started else None,
        finished=max(finished) if letter == "F" and finished else None,
        exit_status=_array_exit_status(tasks) if letter == "F" else None,
        output_path=first.output_path,
        error_path=first.error_path,
        join=first.join,
        hold_types=first.hold_types if letter == "H" else "n",
        mail_points=first.mail_points,
        mail_users=first.mail_users,
        priority=first.priority,
        rerunable=first.rerunable,
        resource_list=dict(first.resource_list),
        project=first.project,
        account=first.account,
        ncpus=first.ncpus,
        nodes=first.nodes,
        array_indices=indices_text(i for task in tasks for i in _task_ids(task)),
        depend=first.depend,
        workdir=first.workdir,
        native={"tasks": [task.native for task in tasks]},
    )
    return parent


def group_arrays(infos: list[JobInfo]) -> list[JobInfo]:
    """Per-record infos -> what `qstat` shows: plain jobs and one "123[]" per array (in
    the order first seen); subjobs are asked for one by one with info("123[4]")."""
    result: list[JobInfo | str] = []
    arrays: dict[str, list[JobInfo]] = {}
    for info in infos:
        parent = array_job_id(info)
        if parent is None:
            result.append(info)
            continue
        if parent not in arrays:
            arrays[parent] = []
            result.append(parent)
        arrays[parent].append(info)
    return [array_parent(item, arrays[item]) if isinstance(item, str) else item for item in result]
