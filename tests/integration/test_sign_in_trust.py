"""Sign-ins you can trust (issue 12): the callback keeps within API Gateway's 29 s and never leaves an orphan
grant at Intuit, a sign-in started before a customer's disconnect cannot undo it, and a reload after success
says connected."""

from __future__ import annotations

from datetime import timedelta

import pytest

from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.domain.model import ConnectionState, DisconnectReason
from qbo_health.service.disconnect import disconnect_connection
from tests.integration.test_api import callback, deliver, stored


def grant_ids(stack, realm_id):
    return {grant["grant_id"] for grant in stack.intuit.control.grants_of(realm_id)}


def grants_since(stack, realm_id, before):
    return [grant for grant in stack.intuit.control.grants_of(realm_id) if grant["grant_id"] not in before]


@pytest.fixture
def simulated_time(stack, api_front):
    """The API's time left runs on the simulated clock, which each Intuit call moves by the latency given."""
    api_front.use_simulated_invocation_time()

    def latency(seconds: float) -> None:
        stack.intuit.control.set_latency(seconds * 1000, simulated=True)

    yield latency
    stack.intuit.control.set_latency(0)
    api_front.use_wall_time()


# ------------------------------------------------------------------ the callback's time budget


def test_a_callback_with_too_little_time_left_exchanges_nothing(stack, api_front, api_client, monkeypatch):
    """The code exchange needs Intuit's timeout, and as much again to revoke what it returned should the rest
    not fit (20 s of the 29 by default). With less left, nothing reaches Intuit and the page says so."""
    seed_connection(stack, "conn-1")
    before = stored("conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)
    monkeypatch.setattr(api_front, "timeout_seconds", 15.0)
    stack.intuit.control.reset_stats()

    page = deliver(location)

    assert page.status_code == 503 and 'data-status="failed"' in page.text
    assert "Nothing was changed" in page.text and "try again" in page.text
    assert stack.intuit.control.stats()["code_attempts"] == 0
    assert stored("conn-1") == before


def test_a_grant_that_cannot_be_stored_in_time_is_revoked(stack, api_client, simulated_time):
    """Each Intuit call takes 6 s of the 29: after the exchange and the admin check, too little is left for
    the identity call and the revoke. The new grant is revoked at once; the old tokens stay."""
    seeded = seed_connection(stack, "conn-1")
    before = stored("conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)
    existing = grant_ids(stack, seeded.realm_id)
    simulated_time(6)

    page = deliver(location)

    assert page.status_code == 503 and 'data-status="failed"' in page.text
    assert "Nothing was changed" in page.text
    new = grants_since(stack, seeded.realm_id, existing)
    assert len(new) == 1 and new[0]["revoked"], new
    assert stored("conn-1") == before
    assert stack.intuit.control.is_refresh_token_current(open_tokens(before).refresh_token)


def test_a_grant_refused_for_a_busy_connection_is_revoked(stack, api_client, simulated_time):
    """The lease stays taken (a check that will not end): the callback waits only what its budget allows beyond
    the writes and a revoke (under a second here), then revokes the new grant and says to try again."""
    seeded = seed_connection(stack, "conn-1")
    before = stored("conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)
    existing = grant_ids(stack, seeded.realm_id)
    wiring.connection_store().acquire_lease("conn-1", "check:stuck", stack.clock.now(), 600)
    simulated_time(2.7)  # three calls leave 20.9 s: 0.9 s of lease wait beyond the 20 s kept back

    page = deliver(location)

    assert page.status_code == 503 and "Nothing was changed" in page.text
    new = grants_since(stack, seeded.realm_id, existing)
    assert len(new) == 1 and new[0]["revoked"], new
    assert stored("conn-1").sealed_tokens == before.sealed_tokens
    assert stored("conn-1").grant_generation == before.grant_generation


# ------------------------------------------------------------------ a customer's disconnect wins


def test_a_sign_in_started_before_a_customer_disconnect_cannot_complete(stack, api_client):
    seed_connection(stack, "conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)  # consent given, callback pending
    stack.clock.advance(timedelta(seconds=1))
    api_client.disconnect("conn-1")
    stack.intuit.control.reset_stats()

    page = deliver(location)

    assert page.status_code == 400 and "disconnected on request" in page.text
    assert stack.intuit.control.stats()["code_attempts"] == 0
    gone = stored("conn-1")
    assert gone.state is ConnectionState.DISCONNECTED and gone.sealed_tokens is None


def test_a_customer_disconnect_during_the_sign_in_wins_and_the_new_grant_is_revoked(
    stack, api_client, monkeypatch
):
    """The disconnect lands while the callback talks to Intuit (after the exchange): under the lease the
    sign-in finds it, revokes the grant it got and stores nothing."""
    seeded = seed_connection(stack, "conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)
    existing = grant_ids(stack, seeded.realm_id)
    intuit = wiring.intuit_client()
    original = intuit.userinfo

    def userinfo(access_token):
        stack.clock.advance(timedelta(seconds=1))
        now = stack.clock.now()
        disconnect_connection("conn-1", DisconnectReason.CUSTOMER_REQUEST, wiring.check_deps(), now)
        return original(access_token)

    monkeypatch.setattr(intuit, "userinfo", userinfo)

    page = deliver(location)

    assert page.status_code == 400 and "disconnected on request" in page.text
    gone = stored("conn-1")
    assert gone.state is ConnectionState.DISCONNECTED and gone.sealed_tokens is None
    new = grants_since(stack, seeded.realm_id, existing)
    assert len(new) == 1 and new[0]["revoked"], new


# ------------------------------------------------------------------ a reload after success


def test_a_reload_after_a_successful_reconnect_says_connected(stack, api_client):
    seed_connection(stack, "conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)
    assert deliver(location).status_code == 200

    again = deliver(location)  # the success expired the sign-in cookie; the state is used

    assert again.status_code == 200, again.text
    assert 'id="connected"' in again.text and 'data-status="connected"' in again.text
    assert "QuickBooks connected" in again.text
    assert stack.intuit.control.stats()["code_grants"] == 1


def test_a_reload_after_a_refused_sign_in_still_says_it_failed(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    clerk = stack.intuit.control.add_user(seeded.realm_id, admin=False)
    location = callback(stack, api_client.status("conn-1").reconnect_url, user_id=clerk)
    assert deliver(location).status_code == 403

    again = deliver(location)

    assert again.status_code == 400 and 'data-status="failed"' in again.text


def test_a_reload_says_connected_only_while_that_sign_ins_grant_is_the_connections(stack, api_client):
    seed_connection(stack, "conn-1")
    first = callback(stack, api_client.status("conn-1").reconnect_url)
    assert deliver(first).status_code == 200
    second = callback(stack, api_client.status("conn-1").reconnect_url)
    assert deliver(second).status_code == 200

    assert deliver(second).status_code == 200
    stale = deliver(first)  # connected, but by another sign-in's grant: this one's page is not the truth
    assert stale.status_code == 400 and 'data-status="failed"' in stale.text
