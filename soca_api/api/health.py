"""Liveness and readiness, without authentication."""
from __future__ import annotations

from flask_restful import Resource
from sqlalchemy import text

from soca_api import schedulers
from soca_api.errors import envelope
from soca_api.extensions import db


class HealthResource(Resource):
    def get(self):
        """Whether the database and the scheduler answer.
        ---
        tags: [Service]
        summary: Health of the service (no authentication)
        security: []
        responses:
          200: {description: Database and scheduler answer}
          503: {description: One of them does not}
        """
        try:
            db.session.execute(text("SELECT 1"))
            database = "ok"
        except Exception:  # any driver error means "not answering"; details go to the log
            database = "unavailable"
        scheduler_ok, scheduler_message = schedulers.get_adapter().health()
        healthy = database == "ok" and scheduler_ok
        report = {"database": database, "scheduler": scheduler_message,
                  "backend": schedulers.get_adapter().name}
        return envelope(healthy, report, 200 if healthy else 503)
