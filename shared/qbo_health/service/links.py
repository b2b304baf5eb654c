"""Signed reconnect links: long-lived enough to sit in an e-mail, useless to anyone who changes a byte.

A token is ``base64url(payload) . base64url(HMAC-SHA256(key, payload))`` where the payload is the JSON array
``[purpose, connection id, issue time (epoch seconds)]`` (any connection id fits). Verification recomputes the MAC and compares in
constant time before reading anything else, then checks purpose and age.
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

from qbo_health.errors import ReconnectLinkInvalid

PURPOSE_RECONNECT = "reconnect"
MAX_TOKEN_LENGTH = 1024
CONNECTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# Links are minted by our own clock; a little skew between functions is tolerated, a future link is not.
_FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class LinkClaims:
    connection_id: str
    issued_at: datetime
    purpose: str


class LinkSigner:
    """Mints and verifies link tokens. ``key`` is called on every use: it may come from a cached secret."""

    def __init__(
        self, key: Callable[[], bytes], public_base_url: str, *, lifetime: timedelta = timedelta(days=30)
    ) -> None:
        self._key = key
        self._base = public_base_url.rstrip("/")
        self.lifetime = lifetime

    def token(self, connection_id: str, now: datetime, purpose: str = PURPOSE_RECONNECT) -> str:
        payload = json.dumps([purpose, connection_id, int(now.timestamp())], separators=(",", ":")).encode()
        if len(payload) > MAX_TOKEN_LENGTH // 2:
            raise ValueError("connection id too long for a link")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def reconnect_url(self, connection_id: str, now: datetime) -> str:
        return f"{self._base}/reconnect/{self.token(connection_id, now)}"

    def verify(self, token: str, now: datetime, purpose: str = PURPOSE_RECONNECT) -> LinkClaims:
        invalid = ReconnectLinkInvalid("This link is not valid.", reason="malformed")
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise invalid
        encoded_payload, encoded_mac = token.split(".")
        try:
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ReconnectLinkInvalid("This link is not valid.", reason="signature")
        try:
            parts = json.loads(payload)
        except ValueError:
            raise ReconnectLinkInvalid("This link is not valid.", reason="purpose") from None
        if (
            not isinstance(parts, list)
            or len(parts) != 3
            or parts[0] != purpose
            or not isinstance(parts[1], str)
            or not isinstance(parts[2], int)
        ):
            raise ReconnectLinkInvalid("This link is not valid.", reason="purpose")
        issued_at = datetime.fromtimestamp(parts[2], tz=UTC)
        if issued_at > now + _FUTURE_SKEW:
            raise ReconnectLinkInvalid("This link is not valid.", reason="future")
        if now - issued_at > self.lifetime:
            raise ReconnectLinkInvalid("This link has expired.", reason="expired")
        return LinkClaims(connection_id=parts[1], issued_at=issued_at, purpose=parts[0])

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key(), payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
