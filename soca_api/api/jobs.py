"""Job resources: the seed's submit / get / delete flow, listings, final records, output."""
from __future__ import annotations

from soca_api.api.base import ApiResource
from soca_api.errors import ApiError
from soca_api.services import jobs
from soca_api.validation import (
    JOBS_PAGE_DEFAULT,
    OUTPUT_LENGTH_DEFAULT,
    OUTPUT_LENGTH_MAX,
    OUTPUT_TAIL_MAX,
)


class JobResource(ApiResource):
    folds_caller_check = True  # GET: the job's row and the caller's check in one query

    def post(self):
        """Submit a PBS job script (base64) to the scheduler.
        ---
        tags: [Jobs]
        summary: Submit a job
        parameters:
          - {name: payload, in: formData, type: string, required: true, minLength: 1, description: "The job script, base64-encoded (standard, unpadded or URL-safe)"}
          - name: Idempotency-Key
            in: header
            x-rule: idempotency_key
            required: false
            description: >
              Makes a retry safe: the same key from the same user within 24 hours answers
              the job the first request created (the same envelope) and creates nothing,
              even if the server was killed in between. The same key with another script
              is a 409. A UUID is a good key.
        responses:
          200: {description: 'The job id, as {"success": true, "message": "11313"}'}
          400: {description: 'Invalid script (the message names the line), Idempotency-Key, queue rule or scheduler refusal'}
          403: {description: A queue rule refuses the job}
          409: {description: 'The Idempotency-Key was used with another script, or its first request is still being submitted (Retry-After)'}
          413: {description: Script larger than SOCA_MAX_SCRIPT_BYTES}
          503: {description: Scheduler unavailable}
          504: {description: Scheduler timed out}
        """
        from flask import request

        payload = request.form.get("payload")
        job_id = jobs.submit(self.user, payload, idempotency_key=request.headers.get("Idempotency-Key"))
        return self.ok(job_id)

    def get(self):
        """Read one job's qstat attributes (owner or admin).
        ---
        tags: [Jobs]
        summary: Get a job
        parameters:
          - {name: job_id, in: query, x-rule: job_id, required: true, description: "e.g. 11313, 11313[], 11313[2], 11313.server"}
        responses:
          200: {description: 'The job''s attributes (Job_Name, Job_Owner, job_state, queue, Resource_List...)'}
          400: {description: Missing or invalid job_id}
          404: {description: 'Unable to retrieve Job ID (unknown, deleted, finished past history, or not yours)'}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        return self.ok(jobs.get_attributes(self.user, job_id))

    def put(self):
        """Hold or release a waiting job (qhold / qrls).
        ---
        tags: [Jobs]
        summary: Hold or release a job (owner or admin)
        parameters:
          - {name: job_id, in: formData, x-rule: job_id, required: true}
          - {name: action, in: formData, type: string, enum: [hold, release], required: true}
        responses:
          200: {description: Job held / Job released}
          400: {description: Missing or invalid parameter}
          404: {description: Unable to retrieve Job ID}
          409: {description: 'The job runs or has finished'}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        action = self.param("action")
        if action not in ("hold", "release"):
            raise ApiError(400, "action is invalid: hold or release")
        return self.ok(jobs.hold_or_release(self.user, job_id, action, actor=self.actor))

    def delete(self):
        """Delete a job: a queued job leaves the queue, a running one is killed.
        ---
        tags: [Jobs]
        summary: Delete a job (owner or admin)
        parameters:
          - {name: job_id, in: query, x-rule: job_id, required: false, allowEmptyValue: true, description: 'The job id (query string, as in the seed)'}
          - {name: job_id, in: formData, x-rule: job_id, required: false, description: 'The job id (form field, as SOCA reads it)'}
        responses:
          200: {description: Job deleted}
          400: {description: Missing or invalid job_id}
          404: {description: Unable to retrieve Job ID}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        jobs.delete(self.user, job_id, actor=self.actor)
        return self.ok("Job deleted")


class JobsResource(ApiResource):
    def get(self):
        """List jobs keyed by id: the caller's, or everyone's for an admin.
        ---
        tags: [Jobs]
        summary: List jobs (newest first, paged)
        parameters:
          - {name: user, in: query, x-rule: user_name, required: false, allowEmptyValue: true, description: Only this user's jobs (admins)}
          - {name: state, in: query, type: string, required: false, allowEmptyValue: true, enum: [Q, H, W, R, E, S, B, F], description: "Only this state; F lists finished jobs of the whole history"}
          - {name: queue, in: query, x-rule: queue_name, required: false, allowEmptyValue: true}
          - {name: limit, in: query, x-rule: jobs_page, required: false, allowEmptyValue: true}
          - {name: before, in: query, x-rule: job_cursor, required: false, allowEmptyValue: true, description: The next_before value of the previous page}
        responses:
          200: {description: 'Object keyed by job id; "next_before" pages on'}
          400: {description: Invalid filter}
          403: {description: Another user's jobs and caller is not an admin}
        """
        listing, next_before = jobs.list_jobs(
            self.user,
            owner=self.param("user", required=False),
            state=self.param("state", required=False),
            queue=self.param("queue", required=False),
            limit=self.whole_number("limit", JOBS_PAGE_DEFAULT, 1, jobs.MAX_PAGE),
            before=self.whole_number("before", None),
        )
        return self.ok(listing, next_before=next_before)


class JobFinalResource(ApiResource):
    def get(self):
        """A finished job's final attributes (Exit_status, times, paths), kept after qstat forgets it.
        ---
        tags: [Jobs]
        summary: Final record of a finished job (owner or admin)
        parameters:
          - {name: job_id, in: query, x-rule: job_id, required: true}
        responses:
          200: {description: 'Final attributes, including Exit_status'}
          400: {description: Missing or invalid job_id}
          404: {description: Unknown job}
          409: {description: The job has not finished yet}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        return self.ok(jobs.final_attributes(self.user, job_id))


class JobOutputResource(ApiResource):
    def get(self):
        """A byte range, or the last lines, of a job's stdout or stderr (owner only).
        ---
        tags: [Jobs]
        summary: Read a job's output
        parameters:
          - {name: job_id, in: query, x-rule: job_id, required: true}
          - {name: stream, in: query, type: string, enum: [stdout, stderr], default: stdout, required: false}
          - {name: offset, in: query, x-rule: byte_offset, required: false, allowEmptyValue: true, description: First byte to read (default 0)}
          - {name: length, in: query, x-rule: output_length, required: false, allowEmptyValue: true}
          - {name: tail, in: query, x-rule: output_tail, required: false, allowEmptyValue: true, description: 'Instead of a range, the last N lines'}
        responses:
          200: {description: '{"data", "offset", "next_offset", "size", "eof", "finished"}'}
          400: {description: Invalid parameter}
          403: {description: The file cannot be read}
          404: {description: 'Unknown job, not yours, or no output yet'}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        stream = self.param("stream", required=False, default="stdout")
        if stream not in ("stdout", "stderr"):
            raise ApiError(400, "stream is invalid: stdout or stderr")
        length = self.whole_number("length", OUTPUT_LENGTH_DEFAULT, 1, OUTPUT_LENGTH_MAX)
        tail = self.whole_number("tail", None, 1, OUTPUT_TAIL_MAX)
        return self.ok(jobs.read_output(self.user, job_id, stream, offset=self.whole_number("offset", None),
                                        length=length, tail=tail))
