"""API keys: GET returns the current key (creating one), DELETE revokes it."""
from __future__ import annotations

from flask import g

from soca_api.api.base import ApiResource
from soca_api.errors import ApiError
from soca_api.services import accounts
from soca_api.validation import USER_NAME


def _target_user(resource: ApiResource):
    name = resource.param("user", pattern=USER_NAME)
    if name != g.user.name and not g.user.is_admin:
        raise ApiError(403, "You can only manage your own API key")
    return accounts.get_user_or_404(name)


class ApiKeyResource(ApiResource):
    # Scripts may fetch their key with their password (X-SOCA-PASSWORD), as in SOCA.
    allow_password = True

    def get(self):
        """Return a user's current API key, creating one when the user has none.
        ---
        tags: [API keys]
        summary: Get the current API key of a user (self with password or key, or admin)
        security:
          - SocaUser: []
            SocaToken: []
          - SocaUser: []
            SocaPassword: []
        parameters:
          - {name: user, in: query, x-rule: user_name, required: true, description: user name}
        responses:
          200: {description: 'The key, as {"success": true, "message": "<key>"}'}
          400: {description: Missing or invalid user}
          401: {description: Missing header or invalid credentials}
          403: {description: Another user's key and caller is not an admin}
          404: {description: Unknown user}
          429: {description: Too many failed authentications}
        """
        return self.ok(accounts.current_or_new_key(_target_user(self), actor=self.actor))

    def delete(self):
        """Revoke a user's API key; the next GET returns a new one.
        ---
        tags: [API keys]
        summary: Revoke the API key of a user (self or admin)
        parameters:
          - {name: user, in: formData, x-rule: user_name, required: false, description: user name (form field)}
          - {name: user, in: query, x-rule: user_name, required: false, allowEmptyValue: true, description: user name (query string)}
        responses:
          200: {description: Successfully deactivated}
          400: {description: Missing or invalid user}
          403: {description: Not self and not admin}
          404: {description: Unknown user}
        """
        accounts.revoke_keys(_target_user(self), actor=self.actor)
        return self.ok("Successfully deactivated")
