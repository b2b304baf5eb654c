"""The tile token's rules: bound to one connection, minutes long, unforgeable, and no link is one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from qbo_health.errors import TileTokenInvalid
from qbo_health.service.links import LinkSigner
from qbo_health.service.tile_tokens import MAX_LIFETIME, TileTokenSigner, bearer_token

KEY = b"k" * 40
NOW = datetime(2026, 1, 19, 12, 0, tzinfo=UTC)


def signer(key: bytes = KEY, minutes: int = 10) -> TileTokenSigner:
    return TileTokenSigner(lambda: key, lifetime=timedelta(minutes=minutes))


def refused(token, connection_id="conn-1", now=NOW, tiles=None) -> str:
    with pytest.raises(TileTokenInvalid) as caught:
        (tiles or signer()).verify(token, connection_id, now)
    assert caught.value.status == 401 and caught.value.code == "tile_token_invalid"
    # One message for every refusal: a caller learns nothing about which check failed.
    assert caught.value.message == TileTokenInvalid("x").message
    return caught.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_reads_its_connection_until_it_expires():
    minted = signer().mint("conn-1", NOW)

    assert minted.expires_at == NOW + timedelta(minutes=10)
    signer().verify(minted.token, "conn-1", NOW)
    signer().verify(minted.token, "conn-1", NOW + timedelta(minutes=10) - timedelta(seconds=1))
    assert refused(minted.token, now=NOW + timedelta(minutes=10)) == "expired"


def test_the_lifetime_is_the_setting_and_at_most_an_hour():
    assert signer(minutes=3).mint("conn-1", NOW).expires_at == NOW + timedelta(minutes=3)
    with pytest.raises(ValueError):
        TileTokenSigner(lambda: KEY, lifetime=MAX_LIFETIME + timedelta(seconds=1))


def test_another_connections_token_is_refused():
    token = signer().mint("conn-1", NOW).token
    assert refused(token, connection_id="conn-2") == "other_connection"
    assert refused(token, connection_id="conn-10") == "other_connection"


def test_a_forged_or_altered_token_is_refused():
    token = signer().mint("conn-1", NOW).token
    payload, mac = token.split(".")
    other_payload = b64(
        json.dumps(["tile", "conn-2", int(NOW.timestamp()), int(NOW.timestamp()) + 600]).encode()
    )

    assert refused(f"{other_payload}.{mac}", connection_id="conn-2") == "signature"  # payload swapped
    flipped = b64(
        bytes(byte ^ 1 if i == 0 else byte for i, byte in enumerate(base64.urlsafe_b64decode(mac + "=")))
    )
    assert refused(f"{payload}.{flipped}") == "signature"
    assert refused(signer(key=b"x" * 40).mint("conn-1", NOW).token) == "signature"  # another key
    # A MAC made with the link key itself (not the derived tile key) does not pass either.
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert refused(f"{payload}.{b64(hmac.new(KEY, raw, hashlib.sha256).digest())}") == "signature"


def test_a_reconnect_link_is_no_tile_token_and_a_tile_token_no_link():
    links = LinkSigner(lambda: KEY, "https://connect.example.com")
    link_token = links.token("conn-1", NOW)
    assert refused(link_token) == "signature"

    tile_token = signer().mint("conn-1", NOW).token
    with pytest.raises(Exception) as caught:
        links.verify(tile_token, NOW)
    assert getattr(caught.value, "reason", None) == "signature"


def test_claimed_times_are_checked_even_when_signed():
    tiles = signer()
    issued = int(NOW.timestamp())

    def signed(parts) -> str:
        payload = json.dumps(parts).encode()
        return f"{b64(payload)}.{b64(tiles._mac(payload))}"

    assert refused(signed(["tile", "conn-1", issued + 3600, issued + 3900])) == "times"  # from the future
    assert refused(signed(["tile", "conn-1", issued, issued + 86400])) == "times"  # longer than an hour
    assert refused(signed(["link", "conn-1", issued, issued + 60])) == "purpose"
    assert refused(signed(["tile", "conn-1", str(issued), issued + 60])) == "purpose"
    assert refused(signed({"tile": "conn-1"})) == "purpose"


@pytest.mark.parametrize(
    "token", [None, "", "abc", "a.b.c", "not base64!.xyz", "....", "a" * 600, "é.é"], ids=repr
)
def test_malformed_tokens_are_refused(token):
    assert refused(token) in ("malformed", "signature")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc.def", "abc.def"),
        ("  Bearer   abc.def  ", "abc.def"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
        ("AWS4-HMAC-SHA256 Credential=x", None),
    ],
)
def test_the_bearer_token_of_an_authorization_header(header, token):
    assert bearer_token(header) == token
