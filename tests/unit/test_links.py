"""Signed reconnect links: pure, no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from qbo_health.domain.connect_links import PURPOSE_CONNECT, PURPOSE_RECONNECT, refuse_stale_link
from qbo_health.domain.model import Connection, ConnectionState
from qbo_health.errors import ReconnectLinkInvalid
from qbo_health.service.links import LinkSigner

NOW = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
KEY = b"k" * 40


def signer(key: bytes = KEY) -> LinkSigner:
    return LinkSigner(lambda: key, "https://connect.example.com/")


def test_a_link_verifies_and_names_its_connection():
    url = signer().reconnect_url("conn-1", NOW)
    assert url.startswith("https://connect.example.com/reconnect/")
    claims = signer().verify(url.rsplit("/", 1)[1], NOW + timedelta(days=29))
    assert claims.connection_id == "conn-1" and claims.issued_at == NOW


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "signature"),
        (lambda t: "xyzw" + t, "signature"),
        (lambda t: t.replace(".", ""), "malformed"),
        (lambda t: t + ".x", "malformed"),
        (lambda t: "", "malformed"),
        (lambda t: t + "=" * 1100, "malformed"),
    ],
)
def test_tampered_links_are_refused(mutate, reason):
    token = signer().token("conn-1", NOW)
    with pytest.raises(ReconnectLinkInvalid) as refused:
        signer().verify(mutate(token), NOW)
    assert refused.value.reason == reason


def test_other_key_purpose_and_age_are_refused():
    token = signer().token("conn-1", NOW)
    with pytest.raises(ReconnectLinkInvalid):
        signer(b"o" * 40).verify(token, NOW)
    with pytest.raises(ReconnectLinkInvalid) as wrong_purpose:
        signer().verify(signer().token("conn-1", NOW, purpose="other"), NOW)
    assert wrong_purpose.value.reason == "purpose"
    with pytest.raises(ReconnectLinkInvalid) as expired:
        signer().verify(token, NOW + timedelta(days=30, seconds=1))
    assert expired.value.reason == "expired"
    with pytest.raises(ReconnectLinkInvalid) as future:
        signer().verify(signer().token("conn-1", NOW + timedelta(hours=1)), NOW)
    assert future.value.reason == "future"


def test_any_connection_id_round_trips_and_overlong_ones_are_refused():
    odd = 'a"b<script>\x1f\u00e9/..'
    assert signer().verify(signer().token(odd, NOW), NOW).connection_id == odd
    with pytest.raises(ValueError, match="too long"):
        signer().token("x" * 600, NOW)


def test_a_never_connected_connection_takes_a_short_first_connect_link():
    pending = Connection("c-1", "t-1", None, ConnectionState.PENDING)
    link = signer().link_for(pending, NOW)
    claims = signer().verify(link.url.rsplit("/", 1)[1], NOW + timedelta(minutes=15))
    assert link.purpose == PURPOSE_CONNECT and link.expires_at == NOW + timedelta(minutes=15)
    assert claims.purpose == PURPOSE_CONNECT and claims.generation == 0
    with pytest.raises(ReconnectLinkInvalid) as expired:
        signer().verify(link.url.rsplit("/", 1)[1], NOW + timedelta(minutes=15, seconds=1))
    assert expired.value.reason == "expired"


def test_a_link_works_for_one_grant_and_only_for_its_kind_of_connection():
    connected = Connection("c-1", "t-1", "123", ConnectionState.NEEDS_ATTENTION, grant_generation=2)
    link = signer().link_for(connected, NOW)
    claims = signer().verify(link.url.rsplit("/", 1)[1], NOW)
    assert link.purpose == PURPOSE_RECONNECT and claims.generation == 2
    refuse_stale_link(connected, claims)  # current: accepted
    with pytest.raises(ReconnectLinkInvalid) as used:
        refuse_stale_link(replace(connected, grant_generation=3), claims)
    assert used.value.reason == "used"
    # A reconnect link never opens a connection that has no company to pin.
    pending = Connection("c-1", "t-1", None, ConnectionState.PENDING, grant_generation=2)
    with pytest.raises(ReconnectLinkInvalid) as wrong_kind:
        refuse_stale_link(pending, claims)
    assert wrong_kind.value.reason == "purpose"


def test_a_reconnect_link_minted_before_generations_reads_as_generation_zero():
    legacy_payload = b'["reconnect","conn-1",' + str(int(NOW.timestamp())).encode() + b"]"
    mac = hmac.new(KEY, legacy_payload, hashlib.sha256).digest()
    token = f"{_b64(legacy_payload)}.{_b64(mac)}"
    assert signer().verify(token, NOW).generation == 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
