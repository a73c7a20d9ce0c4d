"""API keys and passwords.

An API key is shown to its user but stored only as
- `digest`: HMAC-SHA256 under the server secret, to authenticate (constant-time compare);
- `sealed`: the key encrypted (Fernet) under a key derived from the same secret, so the
  "My API Key" page and `GET /api/user/api_key` can show it again.
The secret lives outside the database (SOCA_SECRET_KEY or the data folder), so a copy of
the database neither authenticates nor reveals a key.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from werkzeug.security import check_password_hash, generate_password_hash

KEY_PREFIX = "soca_"
KEY_BYTES = 32
# A dummy hash so that an unknown user costs the same time as a wrong password.
_DUMMY_PASSWORD_HASH = generate_password_hash(secrets.token_urlsafe(16))


@functools.lru_cache(maxsize=16)  # one secret per process: derived once, not per API call
def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_digest(secret: str, api_key: str) -> str:
    return hmac.new(_derive(secret, "api-key-digest"), api_key.encode(), hashlib.sha256).hexdigest()


def digests_match(expected: str, presented: str) -> bool:
    return hmac.compare_digest(expected.encode(), presented.encode())


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(secret, "api-key-seal")))


def seal(secret: str, api_key: str) -> str:
    return _fernet(secret).encrypt(api_key.encode()).decode()


def unseal(secret: str, sealed: str) -> str | None:
    """The key in clear, or None when the secret changed since it was sealed."""
    try:
        return _fernet(secret).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        check_password_hash(_DUMMY_PASSWORD_HASH, password)
        return False
    return check_password_hash(password_hash, password)


def password_problem(password: str, user_name: str = "") -> str | None:
    """Why a password is too weak, or None. Length matters most (NIST SP 800-63B)."""
    if len(password) < 10:
        return "Password must be at least 10 characters long"
    if len(password) > 256:
        return "Password must be at most 256 characters long"
    if user_name and user_name.lower() in password.lower():
        return "Password must not contain the user name"
    classes = sum(bool(any(test(c) for c in password)) for test in (str.islower, str.isupper, str.isdigit))
    classes += any(not c.isalnum() for c in password)
    if classes < 2:
        return "Password must mix at least two of: lower case, upper case, digits, symbols"
    return None
