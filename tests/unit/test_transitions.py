"""The transitions outside a check (``domain.check``): a disconnect and a reauthorization, decided on the item
the lease returned. These rules keep the two from undoing each other."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from qbo_health.domain.check import EventKind, NewGrant, disconnected, reauthorized
from qbo_health.domain.model import (
    Authorizer,
    ConnectionState,
    DisconnectReason,
    IssueType,
    OpenIssue,
    SealedTokens,
)
from qbo_health.errors import DisconnectAverted, RealmMismatch, ReconnectLinkInvalid
from tests.unit.test_check_policy import NOW, connection

ISSUE = OpenIssue(IssueType.ADMIN_ACCESS_LOST, "ep-1", NOW, NOW, NOW + timedelta(days=14))
SEALED = SealedTokens(b"ciphertext", b"key", "key-id")


def grant(**changes) -> NewGrant:
    base = NewGrant(
        realm_id="realm-1",
        sealed=SEALED,
        refresh_expires_at=NOW + timedelta(days=100),
        hard_expires_at=None,
        authorized_by=Authorizer("user-2", "new@example.com"),
        company_name="Acme",
        link_generation=0,
        link_issued_at=NOW - timedelta(minutes=5),
    )
    return replace(base, **changes)


def test_the_escalators_disconnect_needs_the_same_episode_still_open_and_no_hold():
    broken = connection(state=ConnectionState.NEEDS_ATTENTION, issue=ISSUE)
    done = disconnected(broken, DisconnectReason.GRACE_PERIOD_EXPIRED, NOW, episode_id="ep-1")
    assert done.connection.state is ConnectionState.DISCONNECTED and done.connection.sealed_tokens is None
    assert done.connection.pending_notice is not None and [e.kind for e in done.events] == [
        EventKind.DISCONNECTED
    ]
    for changed in (
        connection(),
        replace(broken, issue=replace(ISSUE, episode_id="ep-2")),
        replace(broken, on_hold=True),
    ):
        with pytest.raises(DisconnectAverted):
            disconnected(changed, DisconnectReason.GRACE_PERIOD_EXPIRED, NOW, episode_id="ep-1")
    gone = done.connection
    assert disconnected(gone, DisconnectReason.CUSTOMER_REQUEST, NOW).connection is gone  # idempotent


def test_a_reauthorization_heals_and_moves_the_grant_generation_on():
    broken = connection(state=ConnectionState.NEEDS_ATTENTION, issue=ISSUE)
    done = reauthorized(broken, grant(), NOW)
    assert done.connection.state is ConnectionState.HEALTHY and done.connection.issue is None
    assert done.connection.grant_generation == 1 and done.connection.sealed_tokens == SEALED
    assert [e.kind for e in done.events] == [EventKind.REAUTHORIZED, EventKind.ISSUE_CLOSED]


def test_a_sign_in_cannot_undo_a_later_customer_disconnect_nor_replace_a_newer_grant():
    asked = disconnected(connection(), DisconnectReason.CUSTOMER_REQUEST, NOW).connection
    with pytest.raises(ReconnectLinkInvalid) as refused:
        reauthorized(asked, grant(), NOW + timedelta(seconds=1))
    assert refused.value.reason == "disconnected"
    after = reauthorized(asked, grant(link_issued_at=NOW + timedelta(seconds=1)), NOW + timedelta(seconds=2))
    assert after.connection.state is ConnectionState.HEALTHY
    with pytest.raises(ReconnectLinkInvalid):
        reauthorized(replace(connection(), grant_generation=1), grant(), NOW)
    with pytest.raises(RealmMismatch):
        reauthorized(connection(), grant(realm_id="realm-2"), NOW)
