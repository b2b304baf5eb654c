"""Signed links that start Intuit's sign-in: useless to anyone who changes a byte.

A token is ``base64url(payload) . base64url(HMAC-SHA256(key, payload))`` where the payload is the JSON array
``[purpose, connection id, issue time (epoch seconds), grant generation]`` (any connection id fits).
Verification recomputes the MAC and compares in constant time before reading anything else, then checks
purpose and age. Which purpose a connection takes, and the single use, are the domain's
(:mod:`qbo_health.domain.connect_links`): a first-connect link lives minutes, a reconnect link 30 days.
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

from qbo_health.domain.connect_links import PURPOSE_CONNECT, PURPOSE_RECONNECT, LinkClaims, link_purpose
from qbo_health.domain.model import Connection
from qbo_health.errors import ReconnectLinkInvalid

MAX_TOKEN_LENGTH = 1024
CONNECTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# Links are minted by our own clock; a little skew between functions is tolerated, a future link is not.
_FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class MintedLink:
    url: str
    purpose: str
    expires_at: datetime


class LinkSigner:
    """Mints and verifies link tokens. ``key`` is called on every use: it may come from a cached secret."""

    def __init__(
        self,
        key: Callable[[], bytes],
        public_base_url: str,
        *,
        lifetime: timedelta = timedelta(days=30),
        connect_lifetime: timedelta = timedelta(minutes=15),
    ) -> None:
        self._key = key
        self._base = public_base_url.rstrip("/")
        self._lifetimes = {PURPOSE_RECONNECT: lifetime, PURPOSE_CONNECT: connect_lifetime}

    def token(
        self, connection_id: str, now: datetime, purpose: str = PURPOSE_RECONNECT, generation: int = 0
    ) -> str:
        payload = json.dumps(
            [purpose, connection_id, int(now.timestamp()), generation], separators=(",", ":")
        ).encode()
        if len(payload) > MAX_TOKEN_LENGTH // 2:
            raise ValueError("connection id too long for a link")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def reconnect_url(self, connection_id: str, now: datetime, generation: int = 0) -> str:
        return f"{self._base}/reconnect/{self.token(connection_id, now, PURPOSE_RECONNECT, generation)}"

    def link_for(self, connection: Connection, now: datetime) -> MintedLink:
        """The link this connection takes now: first-connect or reconnect, bound to its grant generation."""
        purpose = link_purpose(connection)
        token = self.token(connection.connection_id, now, purpose, connection.grant_generation)
        issued = datetime.fromtimestamp(int(now.timestamp()), tz=UTC)
        return MintedLink(f"{self._base}/reconnect/{token}", purpose, issued + self._lifetimes[purpose])

    def verify(self, token: str, now: datetime) -> LinkClaims:
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
        claims = _claims(payload)
        if claims.issued_at > now + _FUTURE_SKEW:
            raise ReconnectLinkInvalid("This link is not valid.", reason="future")
        if now - claims.issued_at > self._lifetimes[claims.purpose]:
            raise ReconnectLinkInvalid("This link has expired.", reason="expired")
        return claims

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key(), payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(payload: bytes) -> LinkClaims:
    """The payload's fields; a reconnect link minted before generations existed reads as generation 0."""
    wrong = ReconnectLinkInvalid("This link is not valid.", reason="purpose")
    try:
        parts = json.loads(payload)
    except ValueError:
        raise wrong from None
    if isinstance(parts, list) and len(parts) == 3 and parts[0] == PURPOSE_RECONNECT:
        parts = [*parts, 0]
    if (
        not isinstance(parts, list)
        or len(parts) != 4
        or parts[0] not in (PURPOSE_CONNECT, PURPOSE_RECONNECT)
        or not isinstance(parts[1], str)
        or type(parts[2]) is not int
        or type(parts[3]) is not int
    ):
        raise wrong
    return LinkClaims(
        connection_id=parts[1],
        issued_at=datetime.fromtimestamp(parts[2], tz=UTC),
        purpose=parts[0],
        generation=parts[3],
    )
