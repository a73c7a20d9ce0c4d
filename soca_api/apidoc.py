"""The OpenAPI (Swagger 2.0) document and Swagger UI at /api/doc, served from this host."""
from __future__ import annotations

from flasgger import Swagger
from flask import Flask

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


def init_app(app: Flask) -> Swagger:
    return Swagger(app, config=SWAGGER_CONFIG, template=TEMPLATE)
