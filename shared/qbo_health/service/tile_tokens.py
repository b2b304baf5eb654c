"""Tile tokens: what the product's page hands the QBO tile so it can read one connection's health.

A tile token is a bearer token for one read, of one connection, for a few minutes (``TileTokenMinutes``):
``base64url(payload) . base64url(HMAC-SHA256(tile key, payload))`` with the payload the JSON array
``["tile", connection id, issued at, expires at]`` (epoch seconds). The tile key is derived from the
link-signing key (HMAC of a fixed label), so a tile token is no reconnect link and a reconnect link no tile
token: each fails the other's signature check before anything else is read.

Read-only by construction: the only route that accepts a tile token is ``GET /tile/connections/{id}``, which
answers the connection's health (and the reconnect link the Reauthorize button opens, which the notices
e-mail anyway). It cannot mint access tokens, check, hold or disconnect: those routes need IAM.

Verification recomputes the MAC and compares it in constant time before reading the payload, then checks
the purpose, the connection and the times. Every refusal is the same :class:`TileTokenInvalid` (401); only
its ``reason`` (for the log) says which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qbo_health.errors import TileTokenInvalid

PURPOSE_TILE = "tile"
MAX_TILE_TOKEN_LENGTH = 512
# The longest a token may claim to live, whatever the setting was when it was minted.
MAX_LIFETIME = timedelta(hours=1)
_FUTURE_SKEW = timedelta(minutes=5)
_KEY_LABEL = b"qbo-connection-health/tile-token/v1"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class TileToken:
    token: str
    connection_id: str
    expires_at: datetime


class TileTokenSigner:
    """Mints and verifies tile tokens. ``key`` is the link-signing key, called on every use (it may come from
    a cached secret); the tile key is derived from it."""

    def __init__(self, key: Callable[[], bytes], *, lifetime: timedelta = timedelta(minutes=10)) -> None:
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError("a tile token lives between a second and an hour")
        self._key = key
        self.lifetime = lifetime

    def mint(self, connection_id: str, now: datetime) -> TileToken:
        issued = int(now.timestamp())
        expires = issued + int(self.lifetime.total_seconds())
        payload = json.dumps([PURPOSE_TILE, connection_id, issued, expires], separators=(",", ":")).encode()
        token = f"{_b64(payload)}.{_b64(self._mac(payload))}"
        if len(token) > MAX_TILE_TOKEN_LENGTH:
            raise ValueError("connection id too long for a tile token")
        return TileToken(token, connection_id, datetime.fromtimestamp(expires, tz=UTC))

    def verify(self, token: str | None, connection_id: str, now: datetime) -> None:
        """Return if ``token`` lets its holder read ``connection_id`` now; raise :class:`TileTokenInvalid`."""
        if not token or len(token) > MAX_TILE_TOKEN_LENGTH or token.count(".") != 1:
            raise TileTokenInvalid("malformed")
        encoded_payload, encoded_mac = token.split(".")
        try:
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (binascii.Error, ValueError):
            raise TileTokenInvalid("malformed") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TileTokenInvalid("signature")
        purpose, subject, issued, expires = _claims(payload)
        if purpose != PURPOSE_TILE:
            raise TileTokenInvalid("purpose")
        if not hmac.compare_digest(subject.encode(), connection_id.encode()):
            raise TileTokenInvalid("other_connection")
        stamp = now.timestamp()
        if issued > stamp + _FUTURE_SKEW.total_seconds() or expires - issued > MAX_LIFETIME.total_seconds():
            raise TileTokenInvalid("times")
        if stamp >= expires:
            raise TileTokenInvalid("expired")

    def _mac(self, payload: bytes) -> bytes:
        tile_key = hmac.new(self._key(), _KEY_LABEL, hashlib.sha256).digest()
        return hmac.new(tile_key, payload, hashlib.sha256).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(payload: bytes) -> tuple[str, str, int, int]:
    try:
        parts = json.loads(payload)
    except ValueError:
        raise TileTokenInvalid("purpose") from None
    if (
        not isinstance(parts, list)
        or len(parts) != 4
        or not isinstance(parts[0], str)
        or not isinstance(parts[1], str)
        or type(parts[2]) is not int
        or type(parts[3]) is not int
    ):
        raise TileTokenInvalid("purpose")
    return parts[0], parts[1], parts[2], parts[3]
