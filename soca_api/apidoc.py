"""The OpenAPI (Swagger 2.0) document and Swagger UI at /api/doc, served from this host.

A resource's docstring holds only its summary, its parameters and its own answers; what
every operation shares is added here when the spec is built (`complete`):

- every answer is the envelope (`#/definitions/Envelope`) unless it states another schema;
- every authenticated operation answers 401 (Not authenticated) unless it says more;
- the security of an operation is the template's default unless it states its own;
- a parameter with `x-rule: NAME` gets the type, pattern, lengths and limits the server
  enforces, from soca_api.validation (`PARAMETER_RULES`), so the spec never restates them.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from flasgger import Swagger
from flask import Flask

from soca_api import validation as v
from soca_api.services.jobs import MAX_PAGE as JOBS_PAGE_MAX

SWAGGER_CONFIG = {
    "headers": [],
    "specs": [{"endpoint": "apispec", "route": "/api/doc/apispec.json",
               "rule_filter": lambda rule: rule.rule.startswith("/api/"),
               "model_filter": lambda tag: True}],
    "static_url_path": "/api/doc/static",
    "swagger_ui": True,
    "specs_route": "/api/doc/",
    "title": "soca-api",
    "uiversion": 3,
    "hide_top_bar": True,
    # flasgger writes this into the page's script as is: without it the page runs
    # `let auth_config = None;` and stops with a JavaScript error.
    "auth": {},
}

TEMPLATE = {
    "swagger": "2.0",
    "info": {
        "title": "soca-api",
        "description": (
            "Submit, follow and delete PBS batch jobs; manage users, groups, API keys and "
            "queues. Every answer is `{\"success\": bool, \"message\": ...}`. Authenticate "
            "with both headers: click **Authorize** and fill in X-SOCA-USER and X-SOCA-TOKEN. "
            "Beyond each operation's own codes, any path answers in the same envelope: "
            "OPTIONS 200 (the allowed methods), 404, 405 (with Allow), 413 (body over "
            "SOCA_MAX_REQUEST_BYTES), 414 (request line over 4094 bytes), 431 (over 100 "
            "header fields, or one over 8190 bytes), 429 (too many failed authentications)."
        ),
        "version": "1.0.0",
    },
    "basePath": "/",
    "consumes": ["multipart/form-data", "application/x-www-form-urlencoded"],
    "produces": ["application/json"],
    "securityDefinitions": {
        "SocaUser": {"type": "apiKey", "in": "header", "name": "X-SOCA-USER",
                     "description": "Your user name"},
        "SocaToken": {"type": "apiKey", "in": "header", "name": "X-SOCA-TOKEN",
                      "description": "Your API key (My API Key page)"},
        "SocaPassword": {"type": "apiKey", "in": "header", "name": "X-SOCA-PASSWORD",
                         "description": "Your password (only GET /api/user/api_key)"},
    },
    "security": [{"SocaUser": [], "SocaToken": []}],
    "definitions": {
        "Envelope": {
            "type": "object",
            "required": ["success", "message"],
            "properties": {
                "success": {"type": "boolean"},
                "message": {"description": "A text, or the requested object or list"},
            },
        },
    },
}


ENVELOPE = {"$ref": "#/definitions/Envelope"}
NOT_AUTHENTICATED = {"description": "Not authenticated"}


def _text(pattern: re.Pattern[str], **lengths: int) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern.pattern, **lengths}


def _whole(low: int, high: int, **default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, **default}


PARAMETER_RULES: dict[str, dict[str, Any]] = {
    "user_name": _text(v.USER_NAME, maxLength=v.NAME_MAX),
    "group_name": _text(v.GROUP_NAME, maxLength=v.NAME_MAX),
    "queue_name": _text(v.QUEUE_NAME, maxLength=v.QUEUE_NAME_MAX),
    "job_id": _text(v.JOB_ID),
    "email": _text(v.EMAIL),
    "idempotency_key": _text(v.IDEMPOTENCY_KEY, minLength=v.IDEMPOTENCY_KEY_MIN,
                             maxLength=v.IDEMPOTENCY_KEY_MAX),
    "audit_actor": _text(v.AUDIT_ACTOR),
    "audit_action": _text(v.AUDIT_ACTION),
    "gid": _whole(0, v.GID_MAX),
    "jobs_page": _whole(1, JOBS_PAGE_MAX, default=v.JOBS_PAGE_DEFAULT),
    "job_cursor": _whole(0, v.COUNT_MAX),
    "byte_offset": _whole(0, v.COUNT_MAX),
    "output_length": _whole(1, v.OUTPUT_LENGTH_MAX, default=v.OUTPUT_LENGTH_DEFAULT),
    "output_tail": _whole(1, v.OUTPUT_TAIL_MAX),
    "audit_page": _whole(1, v.AUDIT_PAGE_MAX),
    "audit_cursor": _whole(1, v.EVENT_ID_MAX),
}


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add what every operation shares (see the module's docstring). Idempotent: flasgger
    caches the spec it built, and rebuilds it on every request in debug mode."""
    default_security = spec.get("security")
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                rule = parameter.pop("x-rule", None)
                if rule is not None:
                    parameter.update(copy.deepcopy(PARAMETER_RULES[rule]))
            responses = operation.setdefault("responses", {})
            if operation.get("security", default_security):
                responses.setdefault("401", dict(NOT_AUTHENTICATED))
            for response in responses.values():
                response.setdefault("schema", dict(ENVELOPE))
    return spec


class SocaSwagger(Swagger):
    def get_apispecs(self, endpoint: str = "apispec_1") -> dict[str, Any]:
        return complete(super().get_apispecs(endpoint))


def init_app(app: Flask) -> Swagger:
    return SocaSwagger(app, config=SWAGGER_CONFIG, template=TEMPLATE)
