"""Intuit's answers around a dead grant, through the real stack: revoking a token Intuit no longer knows
answers 400 with an empty body (already revoked: the disconnect is clean), and ``invalid_grant`` without
``error_description`` means the same as with it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.domain.check import EventKind
from qbo_health.domain.model import ConnectionState, DisconnectReason, IssueType
from qbo_health.service.disconnect import disconnect_connection

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

CONFIRM_DELAY = timedelta(seconds=900)


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


def history_kinds(connection_id):
    return [entry["kind"] for entry in wiring.history_log().entries(connection_id)]


def test_disconnecting_after_the_app_was_disconnected_in_qbo_is_clean(stack, api_client):
    """The user disconnected the app inside QuickBooks (the grant is revoked); the customer then
    disconnects in the product: our revoke answers 400 empty, which means done, not failed."""
    seeded = seed_connection(stack, "conn-1")
    refresh_token = open_tokens(stored("conn-1")).refresh_token
    assert stack.intuit.control.disconnect_app(seeded.realm_id) == 1
    before = stack.intuit.control.stats()

    status = api_client.disconnect("conn-1")

    assert status.state == "DISCONNECTED" and status.disconnect_reason == "CUSTOMER_REQUEST"
    kinds = history_kinds("conn-1")
    assert EventKind.DISCONNECTED.value in kinds
    assert EventKind.REVOKE_FAILED.value not in kinds
    assert stack.intuit.control.grant_status(refresh_token)["revoked"] is True
    revokes = stack.intuit.control.stats()["calls"].get("revoke", 0) - before["calls"].get("revoke", 0)
    assert revokes == 1  # done at the first answer: a 400 empty is not retried


def test_revoking_a_token_intuit_never_knew_is_done_not_failed(stack):
    """A connection whose stored token Intuit does not know (e.g. imported with a stale value)."""
    seeded = seed_connection(stack, "conn-1")
    stack.intuit.control.revoke_grant_of(open_tokens(stored("conn-1")).refresh_token)
    assert seeded.realm_id

    disconnected = disconnect_connection(
        "conn-1", DisconnectReason.GRACE_PERIOD_EXPIRED, wiring.check_deps(), stack.clock.now()
    )

    assert disconnected.state is ConnectionState.DISCONNECTED and disconnected.sealed_tokens is None
    assert EventKind.REVOKE_FAILED.value not in history_kinds("conn-1")


def test_a_real_revoke_failure_is_still_recorded(stack):
    seed_connection(stack, "conn-1")
    stack.intuit.control.set_faults(rate=1.0, kinds=["500"], endpoints=["revoke"], seed=1)

    disconnect_connection("conn-1", DisconnectReason.CUSTOMER_REQUEST, wiring.check_deps(), stack.clock.now())

    assert stored("conn-1").state is ConnectionState.DISCONNECTED
    assert EventKind.REVOKE_FAILED.value in history_kinds("conn-1")


@pytest.mark.parametrize("with_description", [True, False])
def test_invalid_grant_with_or_without_a_description_is_authorization_expired(
    stack, lambdas, with_description
):
    seeded = seed_connection(stack, "conn-1")
    stack.clock.advance(timedelta(days=1))
    stack.intuit.control.set_oauth_style(invalid_grant_description=with_description)
    stack.intuit.control.disconnect_app(seeded.realm_id)

    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()

    connection = stored("conn-1")
    assert connection.state is ConnectionState.NEEDS_ATTENTION
    assert connection.issue is not None and connection.issue.type is IssueType.AUTHORIZATION_EXPIRED
