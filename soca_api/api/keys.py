"""API keys: GET returns the current key (creating one), DELETE revokes it."""
from __future__ import annotations

from flask import g

from soca_api.api.base import ApiResource
from soca_api.errors import ApiError
from soca_api.services import accounts
from soca_api.validation import USER_NAME


def _target_user(resource: ApiResource):
    name = resource.param("user", pattern=USER_NAME, describe="^[a-z_][a-z0-9_.-]{0,31}$")
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
          - {name: user, in: query, type: string, required: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name}
        responses:
          200: {description: 'The key, as {"success": true, "message": "<key>"}', schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Missing header or invalid credentials, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Another user's key and caller is not an admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
          429: {description: Too many failed authentications, schema: {$ref: '#/definitions/Envelope'}}
        """
        user = _target_user(self)
        key = accounts.current_or_new_key(user)
        if user.name != g.user.name:
            self.audit("api_key.read", user.name)
        return self.ok(key)

    def delete(self):
        """Revoke a user's API key; the next GET returns a new one.
        ---
        tags: [API keys]
        summary: Revoke the API key of a user (self or admin)
        consumes: [multipart/form-data, application/x-www-form-urlencoded]
        security:
          - SocaUser: []
            SocaToken: []
        parameters:
          - {name: user, in: formData, type: string, required: false, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name (form field)}
          - {name: user, in: query, type: string, required: false, allowEmptyValue: true, pattern: '^[a-z_][a-z0-9_.-]{0,31}$', maxLength: 32, description: user name (query string)}
        responses:
          200: {description: Successfully deactivated, schema: {$ref: '#/definitions/Envelope'}}
          400: {description: Missing or invalid user, schema: {$ref: '#/definitions/Envelope'}}
          401: {description: Not authenticated, schema: {$ref: '#/definitions/Envelope'}}
          403: {description: Not self and not admin, schema: {$ref: '#/definitions/Envelope'}}
          404: {description: Unknown user, schema: {$ref: '#/definitions/Envelope'}}
        """
        user = _target_user(self)
        accounts.revoke_keys(user)
        self.audit("api_key.revoke", user.name)
        return self.ok("Successfully deactivated")
