"""My Jobs, a job's page (attributes, output viewer, delete) and Submit a Job.

Everything goes through `soca_api.services.jobs`, as the API does: list_jobs,
get_attributes / final_attributes, read_output, delete and submit.

The queue chosen in the Submit form is the job's queue, whatever the script says:
before encoding, every directive line that is only `#PBS -q <queue>` (in the directive
block, i.e. before the first command) is replaced by `#PBS -q <chosen>`; when the
script then still does not name the chosen queue (no -q line at all, or -q combined
with other options on one line), a `#PBS -q <chosen>` line is inserted after the last
directive line (qsub takes the last -q), or after the `#!` line when there is none.
Line numbers in error messages are given back in the script as the user wrote it.
"""
from __future__ import annotations

import base64
import re

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from soca_api.errors import ApiError
from soca_api.pbs import script as pbs_script
from soca_api.services import audit, queue_rules, queues
from soca_api.services import jobs as job_service
from soca_api.validation import JOB_ID, QUEUE_NAME, is_valid
from soca_api.web.auth import login_required, signed_in_user
from soca_api.web.forms import ConfirmForm, SubmitForm
from soca_api.web.site import blueprint

PAGE_SIZE = 100
OUTPUT_CHUNK = 256 * 1024
OUTPUT_TAIL_LINES = 500
STATE_FILTERS = [("", "Active and recent"), ("Q", "Queued"), ("R", "Running"), ("H", "Held"),
                 ("W", "Waiting"), ("E", "Exiting"), ("F", "Finished")]
NOT_YOURS = "This job does not exist or is not yours."
_BLANKS = " \t\f\v\r"
_PURE_QUEUE_LINE = re.compile(r"^[ \t]*#PBS[ \t]+-q[ \t]*[^ \t#]+[ \t]*(#.*)?$")
_LINE_PREFIX = re.compile(r"^Line (\d+):")


# -- the queue directive -------------------------------------------------------------------
def _directive_block(lines: list[str]) -> list[int]:
    """Indexes of the `#PBS` lines qsub reads: those before the first command line."""
    found = []
    for index, line in enumerate(lines):
        text = line.strip(_BLANKS)
        if not text:
            continue
        if not text.startswith("#"):
            break
        if text.startswith("#PBS"):
            found.append(index)
    return found


def set_queue_directive(script: str, queue: str) -> tuple[str, int | None]:
    """(script whose queue is `queue`, 1-based number of the line inserted, or None)."""
    lines = script.split("\n")
    block = _directive_block(lines)
    replaced = False
    for index in block:
        if _PURE_QUEUE_LINE.match(lines[index]):
            lines[index] = f"#PBS -q {queue}"
            replaced = True
    candidate = "\n".join(lines)
    try:
        effective = pbs_script.parse_script(candidate).queue
    except pbs_script.ScriptError:
        effective = queue if replaced else None  # the error will be shown anyway
    if effective == queue:
        return candidate, None
    at = block[-1] + 1 if block else 1 if lines and lines[0].startswith("#!") else 0
    lines.insert(at, f"#PBS -q {queue}")
    return "\n".join(lines), at + 1


def _user_line(line: int | None, inserted: int | None) -> int | None:
    """A line of the submitted script, as a line of the script the user wrote."""
    if line is None or inserted is None or line < inserted:
        return line
    return None if line == inserted else line - 1


def usable_queues() -> list[str]:
    """Queues this user's job can go to (enabled, known to the scheduler, rules let them in)."""
    return queue_rules.usable_queues(signed_in_user())


# -- My Jobs -------------------------------------------------------------------------------
def _row(job_id: str, attributes: dict) -> dict[str, object]:
    resources = attributes.get("Resource_List") or {}
    state = attributes.get("job_state", "")
    return {
        "id": job_id,
        "name": attributes.get("Job_Name", ""),
        "queue": attributes.get("queue", ""),
        "state": state,
        "cpus": resources.get("ncpus", ""),
        "nodes": resources.get("nodect", ""),
        "submitted": attributes.get("ctime", ""),
        "exit_status": attributes.get("Exit_status") if state == "F" else None,
    }


@blueprint.get("/jobs")
@login_required
def my_jobs():
    user = signed_in_user()
    state = request.args.get("state", "")
    queue = request.args.get("queue", "")
    before_text = request.args.get("before", "")
    if state not in dict(STATE_FILTERS):
        state = ""
    if queue and not is_valid(QUEUE_NAME, queue):
        queue = ""
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    listing, next_before = job_service.list_jobs(user, owner=user.name, state=state or None,
                                                 queue=queue or None, limit=PAGE_SIZE, before=before)
    rows = [_row(job_id, attributes) for job_id, attributes in listing.items()]
    return render_template("web/jobs.html", rows=rows, state=state, queue=queue, before=before,
                           next_before=next_before, state_filters=STATE_FILTERS,
                           queue_names=[q.name for q in queues.list_queues()], delete_form=ConfirmForm())


# -- one job -------------------------------------------------------------------------------
def _clean_id(job_id: str) -> str:
    if not is_valid(JOB_ID, job_id):
        abort(404, "There is no such job.")
    return job_service.clean_job_id(job_id)


def load_job(job_id: str) -> tuple[dict, bool]:
    """(attributes, live): the scheduler's view while it has the job, else the final record.

    A job that is not the user's (and the user is no admin) gets the same 403 as a job
    that does not exist, so the page tells nothing about other users' jobs.
    """
    user = signed_in_user()
    try:
        return job_service.get_attributes(user, job_id), True
    except ApiError as exc:
        if exc.status != 404:
            abort(exc.status, exc.message)
    try:
        return job_service.final_attributes(user, job_id), False
    except ApiError as exc:
        if exc.status == 404:
            abort(403, NOT_YOURS)
        abort(exc.status, exc.message)


def _first_output(job_id: str, stream: str, owner: str) -> dict[str, object]:
    """The last lines of the output for the first render; the page's script follows on."""
    user = signed_in_user()
    if owner != user.name:
        return {"message": "Only the job's owner can read its output.", "data": "", "next_offset": 0}
    try:
        chunk = job_service.read_output(user, job_id, stream, offset=None, length=OUTPUT_CHUNK,
                                        tail=OUTPUT_TAIL_LINES)
    except ApiError as exc:
        return {"message": exc.message, "data": "", "next_offset": 0, "missing": exc.status == 404}
    offset = chunk["offset"]  # an int: read_output's byte position
    chunk["truncated"] = isinstance(offset, int) and offset > 0
    return chunk


@blueprint.get("/jobs/<job_id>")
@login_required
def job(job_id: str):
    job_id = _clean_id(job_id)
    attributes, live = load_job(job_id)
    stream = "stderr" if request.args.get("stream") == "stderr" else "stdout"
    owner = str(attributes.get("Job_Owner", "")).split("@", 1)[0]
    state = attributes.get("job_state", "")
    finished = state == "F" or not live
    output = _first_output(job_id, stream, owner)
    return render_template(
        "web/job.html", job_id=job_id, attributes=attributes, live=live, state=state, finished=finished,
        deleted=bool(attributes.get("deleted")), owner=owner, stream=stream, output=output,
        joined=attributes.get("Join_Path") in ("oe", "eo"), delete_form=ConfirmForm(),
        row=_row(job_id, attributes),
    )


@blueprint.get("/jobs/<job_id>/output")
@login_required(json=True)
def job_output(job_id: str):
    """JSON for the output viewer: the bytes from `offset` on, and whether the job ended."""
    user = signed_in_user()
    if not is_valid(JOB_ID, job_id):
        return jsonify({"success": False, "message": NOT_YOURS}), 404
    job_id = job_service.clean_job_id(job_id)
    stream = "stderr" if request.args.get("stream") == "stderr" else "stdout"
    offset_text = request.args.get("offset", "0")
    offset = int(offset_text) if offset_text.isdigit() and len(offset_text) < 19 else 0
    try:
        chunk = job_service.read_output(user, job_id, stream, offset=offset, length=OUTPUT_CHUNK, tail=None)
    except ApiError as exc:
        if exc.status != 404 or not exc.message.startswith("No "):
            return jsonify({"success": False, "message": exc.message}), exc.status
        # No output file yet: say whether to keep waiting.
        chunk = {"data": "", "offset": offset, "next_offset": offset, "eof": True,
                 "finished": _is_finished(job_id), "message": exc.message}
    chunk.pop("path", None)
    return jsonify({"success": True, **chunk})


def _is_finished(job_id: str) -> bool:
    try:
        return job_service.get_attributes(signed_in_user(), job_id).get("job_state") == "F"
    except ApiError:
        return True


@blueprint.post("/jobs/<job_id>/delete")
@login_required
def delete_job(job_id: str):
    user = signed_in_user()
    job_id = _clean_id(job_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        job_service.delete(user, job_id, actor=audit.Actor(user.name, via="web"))
    except ApiError as exc:
        if exc.status == 404:
            abort(403, NOT_YOURS)
        flash(exc.message, "error")
        return redirect(url_for("web.job", job_id=job_id))
    flash(f"Job {job_id} deleted.", "success")
    return redirect(url_for("web.my_jobs"))


# -- Submit a Job --------------------------------------------------------------------------
def _script_from(form: SubmitForm) -> tuple[str | None, bytes | None]:
    """(text, raw bytes that are not UTF-8). A browser sends a textarea with CRLF line
    ends, which are no part of what the user typed; an uploaded file is taken as it is."""
    upload = form.upload.data
    if upload is not None and getattr(upload, "filename", None):  # a file was chosen
        raw = upload.read(current_app.config["SOCA_MAX_SCRIPT_BYTES"] + 1)
        if raw:
            try:
                return raw.decode("utf-8"), None
            except UnicodeDecodeError:
                return None, raw
    text = (form.script.data or "").replace("\r\n", "\n")
    return (text if text.strip() else None), None


def _excerpt(script: str, line: int | None) -> list[tuple[int, str]]:
    if line is None:
        return []
    lines = script.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts no new one
    start, end = max(1, line - 2), min(len(lines), line + 2)
    return [(number, lines[number - 1]) for number in range(start, end + 1)]


@blueprint.route("/submit", methods=["GET", "POST"])
@login_required
def submit():
    user = signed_in_user()
    form = SubmitForm()
    names = usable_queues()
    form.queue.choices = [(name, name) for name in names]
    if request.method == "GET":
        defaults = [q for q in current_app.config["SOCA_DEFAULT_QUEUES"] if q in names]
        form.queue.data = defaults[0] if defaults else (names[0] if names else None)
        return render_template("web/submit.html", form=form, error=None, queue_names=names)

    error, status = None, 400
    if not form.validate_on_submit():
        error = {"message": "; ".join(f"{form[name].label.text}: {', '.join(problems)}"
                                      for name, problems in form.errors.items()) or "Invalid form"}
    else:
        text, raw = _script_from(form)
        queue = form.queue.data
        if text is None and raw is None:
            error = {"message": "Paste a job script or choose a file to upload."}
        else:
            inserted = None
            if text is not None:
                prepared, inserted = set_queue_directive(text, queue)
                payload = base64.b64encode(prepared.encode()).decode()
            else:
                payload = base64.b64encode(raw).decode()  # the service says why it is refused
            try:
                job_id = job_service.submit(user, payload)
            except ApiError as exc:
                status = exc.status
                line = _user_line(exc.extra.get("line"), inserted)
                message = exc.message
                if line is not None:
                    message = _LINE_PREFIX.sub(f"Line {line}:", message)
                error = {"message": message, "line": line, "stderr": exc.extra.get("stderr"),
                         "excerpt": _excerpt(text or "", line)}
                if form.upload.data is not None and getattr(form.upload.data, "filename", "") and text:
                    form.script.data = text  # show the uploaded script, so the line can be found
            else:
                flash(f"Job {job_id} submitted to queue {queue}.", "success")
                return redirect(url_for("web.job", job_id=job_id))
    return render_template("web/submit.html", form=form, error=error, queue_names=names), status
