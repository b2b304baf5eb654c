"""Signed reconnect links: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
        (lambda t: "xy" + t, "signature"),
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
