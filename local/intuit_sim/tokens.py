"""Token material shaped like Intuit's, and the RS256 key that signs id_tokens.

Values are random and opaque: nothing about a grant can be read from a token, exactly as with Intuit.
Access tokens are long (Intuit's are JWE strings of roughly 900 to 1,100 characters), so storage and
encryption code meets realistic sizes.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

_ALPHANUMERIC = string.ascii_letters + string.digits
# The protected header Intuit's access tokens carry: {"enc":"A128CBC-HS256","alg":"dir"}.
_JWE_HEADER = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0"


def _alphanumeric(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def new_refresh_token() -> str:
    """A 50-character value like Intuit's ``AB11...`` refresh tokens."""
    return "AB11" + _alphanumeric(46)


def new_authorization_code() -> str:
    """A 50-character code like Intuit's (Intuit documents up to 512 characters)."""
    return "AB11" + _alphanumeric(46)


def new_access_token() -> str:
    """A five-part compact JWE (direct encryption, so the key part is empty), about 950 characters."""
    iv = secrets.token_urlsafe(16).rstrip("=")
    ciphertext = secrets.token_urlsafe(640).rstrip("=")
    tag = secrets.token_urlsafe(16).rstrip("=")
    return f"{_JWE_HEADER}..{iv}.{ciphertext}.{tag}"


def new_intuit_tid() -> str:
    """A transaction id in the shape of Intuit's ``intuit_tid`` header."""
    return f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"


class IdTokenSigner:
    """Signs id_tokens with RS256 and publishes the public key as a JWKS, as Intuit does."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "sim-" + secrets.token_hex(8)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        assert isinstance(jwk, dict)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
