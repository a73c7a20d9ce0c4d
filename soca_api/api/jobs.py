"""Job resources: the seed's submit / get / delete flow, listings, final records, output."""
from __future__ import annotations

import re

from soca_api.api.base import ApiResource
from soca_api.errors import ApiError
from soca_api.services import jobs

_ENV = "{$ref: '#/definitions/Envelope'}"
_DIGITS = re.compile(r"^\d{1,12}$")


def _int_param(resource: ApiResource, name: str, default: int | None, low: int = 0,
               high: int = 999_999_999_999) -> int | None:
    """A whole number from `low` to `high` (as the spec states); out of range is a 400, never clamped."""
    value = resource.param(name, required=False, pattern=_DIGITS, describe="a whole number")
    if value is None:
        return default
    if not low <= int(value) <= high:
        raise ApiError(400, f"{name} is invalid: it must be from {low} to {high}")
    return int(value)


class JobResource(ApiResource):
    def post(self):
        """Submit a PBS job script (base64) to the scheduler.
        ---
        tags: [Jobs]
        summary: Submit a job
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: payload, in: formData, type: string, required: true, minLength: 1, description: "The job script, base64-encoded (standard, unpadded or URL-safe)"}
          - name: Idempotency-Key
            in: header
            type: string
            required: false
            pattern: '^[A-Za-z0-9_.:-]{8,128}$'
            minLength: 8
            maxLength: 128
            description: >
              Makes a retry safe: the same key from the same user within 24 hours answers
              the job the first request created (the same envelope) and creates nothing,
              even if the server was killed in between. The same key with another script
              is a 409. A UUID is a good key.
        responses:
          200: {description: 'The job id, as {"success": true, "message": "11313"}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: 'Invalid script (the message names the line), Idempotency-Key, queue rule or scheduler refusal', schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: A queue rule refuses the job, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: 'The Idempotency-Key was used with another script, or its first request is still being submitted (Retry-After)', schema: {$ref: '#/definitions/Envelope'}}
          413: {description: Script larger than SOCA_MAX_SCRIPT_BYTES, schema: {$ref: '#/definitions/Envelope'}}
          503: {description: Scheduler unavailable, schema: {$ref: '#/definitions/Envelope'}}
          504: {description: Scheduler timed out, schema: {$ref: '#/definitions/Envelope'}}
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
          - {name: job_id, in: query, type: string, required: true, pattern: '^[0-9]+(\\[[0-9]*\\])?(\\.[A-Za-z0-9_.-]+)?$', description: "e.g. 11313, 11313[], 11313[2], 11313.server"}
        responses:
          200: {description: 'The job''s attributes (Job_Name, Job_Owner, job_state, queue, Resource_List...)', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid job_id, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: 'Unable to retrieve Job ID (unknown, deleted, finished past history, or not yours)', schema: {$ref: '#/definitions/Envelope'}}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        return self.ok(jobs.get_attributes(self.user, job_id))

    def put(self):
        """Hold or release a waiting job (qhold / qrls).
        ---
        tags: [Jobs]
        summary: Hold or release a job (owner or admin)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: job_id, in: formData, type: string, required: true, pattern: '^[0-9]+(\\[[0-9]*\\])?(\\.[A-Za-z0-9_.-]+)?$'}
          - {name: action, in: formData, type: string, enum: [hold, release], required: true}
        responses:
          200: {description: Job held / Job released, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid parameter, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unable to retrieve Job ID, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: 'The job runs or has finished', schema: {$ref: '#/definitions/Envelope'}}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        action = self.param("action")
        if action not in ("hold", "release"):
            raise ApiError(400, "action is invalid: hold or release")
        message = jobs.hold_or_release(self.user, job_id, action)
        self.audit(f"job.{action}", job_id)
        return self.ok(message)

    def delete(self):
        """Delete a job: a queued job leaves the queue, a running one is killed.
        ---
        tags: [Jobs]
        summary: Delete a job (owner or admin)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        parameters:
          - {name: job_id, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[0-9]+(\\[[0-9]*\\])?(\\.[A-Za-z0-9_.-]+)?$', description: 'The job id (query string, as in the seed)'}
          - {name: job_id, in: formData, type: string, required: false, pattern: '^[0-9]+(\\[[0-9]*\\])?(\\.[A-Za-z0-9_.-]+)?$', description: 'The job id (form field, as SOCA reads it)'}
        responses:
          200: {description: Job deleted, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid job_id, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unable to retrieve Job ID, schema: {$ref: '#/definitions/Envelope'}}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        jobs.delete(self.user, job_id)
        self.audit("job.delete", job_id)
        return self.ok("Job deleted")


class JobsResource(ApiResource):
    def get(self):
        """List jobs keyed by id: the caller's, or everyone's for an admin.
        ---
        tags: [Jobs]
        summary: List jobs (newest first, paged)
        parameters:
          - {name: user, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: Only this user's jobs (admins)}
          - {name: state, in: query, type: string, required: false, allowEmptyValue: true, enum: [Q, H, W, R, E, S, B, F], description: "Only this state; F lists finished jobs of the whole history"}
          - {name: queue, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,14}$', maxLength: 15}
          - {name: limit, in: query, type: integer, required: false, allowEmptyValue: true, default: 100, minimum: 1, maximum: 1000}
          - {name: before, in: query, type: integer, required: false, allowEmptyValue: true, minimum: 0, maximum: 999999999999, description: The next_before value of the previous page}
        responses:
          200: {description: 'Object keyed by job id; "next_before" pages on', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Invalid filter, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Another user's jobs and caller is not an admin, schema: {$ref: '#/definitions/Envelope'}}
        """
        listing, next_before = jobs.list_jobs(
            self.user,
            owner=self.param("user", required=False),
            state=self.param("state", required=False),
            queue=self.param("queue", required=False),
            limit=_int_param(self, "limit", 100, 1, jobs.MAX_PAGE),
            before=_int_param(self, "before", None),
        )
        return self.ok(listing, next_before=next_before)


class JobFinalResource(ApiResource):
    def get(self):
        """A finished job's final attributes (Exit_status, times, paths), kept after qstat forgets it.
        ---
        tags: [Jobs]
        summary: Final record of a finished job (owner or admin)
        parameters:
          - {name: job_id, in: query, type: string, required: true, pattern: '^[0-9]+(\\[[0-9]*\\])?(\\.[A-Za-z0-9_.-]+)?$'}
        responses:
          200: {description: 'Final attributes, including Exit_status', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid job_id, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown job, schema: {$ref: '#/definitions/Envelope'}}
          409: {description: The job has not finished yet, schema: {$ref: '#/definitions/Envelope'}}
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
          - {name: job_id, in: query, type: string, required: true, pattern: '^[0-9]+(\\[[0-9]*\\])?(\\.[A-Za-z0-9_.-]+)?$'}
          - {name: stream, in: query, type: string, enum: [stdout, stderr], default: stdout, required: false}
          - {name: offset, in: query, type: integer, required: false, allowEmptyValue: true, minimum: 0, maximum: 999999999999, description: First byte to read (default 0)}
          - {name: length, in: query, type: integer, required: false, allowEmptyValue: true, default: 65536, minimum: 1, maximum: 1048576}
          - {name: tail, in: query, type: integer, required: false, allowEmptyValue: true, minimum: 1, maximum: 10000, description: 'Instead of a range, the last N lines'}
        responses:
          200: {description: '{"data", "offset", "next_offset", "size", "eof", "finished"}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Invalid parameter, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: The file cannot be read, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: 'Unknown job, not yours, or no output yet', schema: {$ref: '#/definitions/Envelope'}}
        """
        job_id = jobs.clean_job_id(self.param("job_id", required=False))
        stream = self.param("stream", required=False, default="stdout")
        if stream not in ("stdout", "stderr"):
            raise ApiError(400, "stream is invalid: stdout or stderr")
        length = _int_param(self, "length", 65536, 1, 1024 * 1024)
        tail = _int_param(self, "tail", None, 1, 10000)
        return self.ok(jobs.read_output(self.user, job_id, stream, offset=_int_param(self, "offset", None),
                                        length=length, tail=tail))
