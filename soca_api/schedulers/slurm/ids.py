"""Job ids between the API (PBS form) and Slurm: "12[3]" is Slurm's "12_3", "12[]" the
whole array "12"."""
from __future__ import annotations

from soca_api.validation import JOB_ID


def split_job_id(job_id: str) -> tuple[str, str | None]:
    """API id -> (numeric id, index): "12" -> ("12", None), "12[]" -> ("12", ""),
    "12[3].head" -> ("12", "3"). Raises ValueError when the id is not well formed."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ValueError(f"invalid job id: {job_id!r}")
    bare = job_id.split(".", 1)[0]
    if "[" not in bare:
        return bare, None
    number, index = bare[:-1].split("[", 1)
    return number, index


def slurm_job_id(job_id: str) -> str:
    """PBS/API id -> Slurm id: "12" -> "12", "12[]" -> "12" (the whole array), "12[3]" -> "12_3"."""
    number, index = split_job_id(job_id)
    return f"{number}_{index}" if index else number


def pbs_job_id(job_id: str | int, array_job_id: str | int | None = None,
               array_task_id: str | int | None = None) -> str:
    """Slurm record -> API id: a task is "<array job id>[<task>]", a plain job its number."""
    if array_job_id not in (None, "", 0, "0") and array_task_id not in (None, ""):
        task = str(array_task_id)
        return f"{array_job_id}[{task}]" if task.isdigit() else f"{array_job_id}[]"
    return str(job_id)
