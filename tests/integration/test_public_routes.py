"""The public routes anyone can reach: what an anonymous request can make happen, and what it cannot."""

from __future__ import annotations

import requests

from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.service.disconnect_landing import RECHECK_WINDOW
from tests.integration.test_api import stored


def test_fifty_disconnect_landings_make_at_most_one_intuit_check_per_realm(stack, api_url, lambdas):
    # Intuit calls the URL after a real disconnect: from then on every check of that company refreshes
    # (refused) and probes, so each landing that became a check would cost Intuit calls.
    realms = [seed_connection(stack, f"conn-{n}", refreshed_days_ago=1.5).realm_id for n in (1, 2)]
    for realm in realms:
        stack.intuit.control.disconnect_app(realm)
    stack.intuit.control.reset_stats()

    for _ in range(25):
        for realm in realms:
            page = requests.get(f"{api_url}/intuit/disconnected", params={"realmId": realm}, timeout=10)
            assert page.status_code == 200 and 'data-status="neutral"' in page.text
    lambdas.drain_checks()

    assert stack.intuit.control.stats()["refresh_attempts"] == 2  # one check per realm
    assert stored("conn-1").suspect is not None and stored("conn-2").suspect is not None


def test_the_debounce_lets_one_landing_per_realm_through_per_window(stack):
    control = wiring.control_store()
    now = stack.clock.now()

    assert control.claim_disconnect_recheck("123", now, RECHECK_WINDOW)
    assert not control.claim_disconnect_recheck("123", now + RECHECK_WINDOW / 2, RECHECK_WINDOW)
    assert control.claim_disconnect_recheck("456", now, RECHECK_WINDOW)  # per realm
    # Past the window the item's time has passed: claimed again (TTL deletion is lazy; moto never deletes).
    assert control.claim_disconnect_recheck("123", now + RECHECK_WINDOW, RECHECK_WINDOW)


def test_a_landing_for_an_unknown_or_odd_realm_checks_nothing_and_reads_the_same(stack, api_url, lambdas):
    seeded = seed_connection(stack, "conn-1")
    before = stored("conn-1")
    stack.intuit.control.reset_stats()
    answers = [
        requests.get(f"{api_url}/intuit/disconnected", params=params, timeout=10)
        for params in ({"realmId": "999999"}, {"realmId": "١٢٣"}, {"realmId": seeded.realm_id + "x"}, {})
    ]
    lambdas.drain_checks()

    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.text.split("<main", 1)[1] for answer in answers}) == 1  # says nothing about the realm
    assert sum(stack.intuit.control.stats()["calls"].values()) == 0
    assert stored("conn-1") == before
