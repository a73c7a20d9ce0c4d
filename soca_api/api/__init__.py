"""The API blueprint. This file lists every route of /api/."""
from __future__ import annotations

from flask import Blueprint

from soca_api.api import admin, jobs
from soca_api.api.audit import AuditResource
from soca_api.api.base import EnvelopeApi
from soca_api.api.health import HealthResource
from soca_api.api.keys import ApiKeyResource

blueprint = Blueprint("api", __name__, url_prefix="/api")
api = EnvelopeApi(blueprint)

api.add_resource(HealthResource, "/health")
api.add_resource(ApiKeyResource, "/user/api_key")

# Jobs (the seed's flow) and what SOCA lacks: final record and output.
api.add_resource(jobs.JobResource, "/scheduler/job")
api.add_resource(jobs.JobsResource, "/scheduler/jobs")
api.add_resource(jobs.JobFinalResource, "/scheduler/job/final")
api.add_resource(jobs.JobOutputResource, "/scheduler/job/output")

# Administration.
api.add_resource(admin.QueuesResource, "/scheduler/queues")
api.add_resource(admin.QueueResource, "/scheduler/queue")
api.add_resource(admin.UserResource, "/ldap/user")
api.add_resource(admin.UsersResource, "/ldap/users")
api.add_resource(admin.GroupResource, "/ldap/group")
api.add_resource(admin.GroupsResource, "/ldap/groups")
api.add_resource(admin.SudoResource, "/ldap/sudo")
api.add_resource(admin.ResetPasswordResource, "/user/reset_password")
api.add_resource(AuditResource, "/audit")
