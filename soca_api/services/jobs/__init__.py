"""Submitting, reading, deleting and listing jobs, the same way on every backend.

The service keeps its own record of every job (the `jobs` table): on a backend whose rows
are its queue (the local one) that record is the queue itself; on PBS and Slurm it holds
the owner, the script and the final state beside what the scheduler reports.

- records: finding a job's record, who may see it;
- submission: submit;
- reads: job_info, get_attributes, delete, hold_or_release, final_attributes, list_jobs;
- output: read_output.
"""
from soca_api.services.jobs.output import read_output
from soca_api.services.jobs.reads import (
    MAX_PAGE,
    delete,
    final_attributes,
    get_attributes,
    hold_or_release,
    job_info,
    list_jobs,
)
from soca_api.services.jobs.records import clean_job_id, find_record
from soca_api.services.jobs.submission import submit

__all__ = ["MAX_PAGE", "clean_job_id", "delete", "final_attributes", "find_record", "get_attributes", "hold_or_release",
           "job_info", "list_jobs", "read_output", "submit"]
