"""Connect and reconnect links are single-use; a first-connect link lives minutes and may be bound to a
company or a user (defect 1 of the public-surface review: a leaked link let a stranger attach their company)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.client import QboHealthApiError
from qbo_health.domain.model import ConnectionState
from tests.integration.test_api import BROWSER, break_admin, callback, deliver, stored


def new_company(stack, name, email):
    realm = stack.intuit.control.create_company(name=name)
    return realm, stack.intuit.control.add_user(realm, email=email, admin=True)


def opened(link):
    return requests.get(link, allow_redirects=False, timeout=10)


def test_a_first_connect_link_replayed_after_success_is_refused(stack, api_client):
    realm, admin = new_company(stack, "Victim Co", "owner@victim.example")
    evil_realm, evil_admin = new_company(stack, "Evil Co", "mallory@evil.example")
    registered = api_client.register(tenant_id="t-1", connection_id="new-1")
    link = registered.connect_url

    assert deliver(callback(stack, link, realm_id=realm, user_id=admin)).status_code == 200
    grants = stack.intuit.control.stats()["code_grants"]
    # Someone finds the link later (a forwarded message, a browser history) and tries their own company.
    replayed = opened(link)

    assert replayed.status_code == 400 and "already used" in replayed.text
    assert 'id="reconnect_link_invalid"' in replayed.text
    assert stored("new-1").realm_id == realm and stack.intuit.control.stats()["code_grants"] == grants
    assert evil_realm and evil_admin  # the stranger never reached Intuit's consent page


def test_a_first_connect_link_past_its_lifetime_is_refused_and_a_new_one_works(stack, api_client):
    realm, admin = new_company(stack, "New Co", "owner@new.example")
    registered = api_client.register(tenant_id="t-1", connection_id="new-1")
    assert registered.connect_url_expires_at == stack.clock.now().replace(microsecond=0) + timedelta(
        minutes=15
    )
    # Never connected: the status carries no link (an e-mailed status must not leak one).
    assert api_client.status("new-1").reconnect_url is None

    stack.clock.advance(timedelta(minutes=15, seconds=1))
    late = opened(registered.connect_url)
    assert late.status_code == 400 and "expired" in late.text

    fresh = api_client.connect_link("new-1")
    assert fresh.kind == "connect"
    assert deliver(callback(stack, fresh.url, realm_id=realm, user_id=admin)).status_code == 200
    assert stored("new-1").state is ConnectionState.HEALTHY


def test_two_tabs_on_one_first_connect_link_store_one_grant(stack, api_client):
    realm, admin = new_company(stack, "Victim Co", "owner@victim.example")
    evil_realm, evil_admin = new_company(stack, "Evil Co", "mallory@evil.example")
    link = api_client.register(tenant_id="t-1", connection_id="new-1").connect_url
    mallory = requests.Session()
    # Both open the link before either finishes at Intuit.
    theirs = stack.intuit.control.consent(
        mallory.get(link, allow_redirects=False, timeout=10).headers["Location"],
        realm_id=evil_realm,
        user_id=evil_admin,
    )
    ours = callback(stack, link, realm_id=realm, user_id=admin)

    assert deliver(ours).status_code == 200
    late = deliver(theirs, browser=mallory)

    assert late.status_code == 400 and "already used" in late.text
    assert stored("new-1").realm_id == realm


def test_a_reconnect_link_stops_working_once_it_restored_the_connection(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    break_admin(stack, api_client, seeded)
    other = stack.intuit.control.add_user(seeded.realm_id, email="other.admin@example.com", admin=True)
    link = api_client.status("conn-1").reconnect_url
    assert api_client.connect_link("conn-1").kind == "reconnect"

    assert deliver(callback(stack, link, user_id=other)).status_code == 200
    BROWSER.cookies.clear()

    replayed = opened(link)
    assert replayed.status_code == 400 and "already used" in replayed.text
    # A link minted after the grant still reauthorizes (the realm pin and the admin consent protect it).
    assert (
        deliver(callback(stack, api_client.status("conn-1").reconnect_url, user_id=other)).status_code == 200
    )


def test_a_first_connect_bound_to_a_company_and_a_user_refuses_others(stack, api_client):
    realm, admin = new_company(stack, "Right Co", "owner@right.example")
    wrong_realm, wrong_admin = new_company(stack, "Wrong Co", "someone@wrong.example")
    colleague = stack.intuit.control.add_user(realm, email="colleague@right.example", admin=True)
    link = api_client.register(
        tenant_id="t-1", connection_id="new-1", expected_realm_id=realm, expected_email="OWNER@right.example"
    ).connect_url

    other_company = deliver(callback(stack, link, realm_id=wrong_realm, user_id=wrong_admin))
    assert other_company.status_code == 400 and "different QuickBooks company" in other_company.text
    other_user = deliver(callback(stack, link, realm_id=realm, user_id=colleague))
    assert other_user.status_code == 403 and 'id="identity_mismatch"' in other_user.text
    assert stored("new-1").state is ConnectionState.PENDING and stored("new-1").sealed_tokens is None
    assert stack.intuit.control.stats()["code_grants"] == 1  # the colleague's grant, revoked since

    assert deliver(callback(stack, link, realm_id=realm, user_id=admin)).status_code == 200
    assert stored("new-1").realm_id == realm


def test_connect_link_for_an_unknown_connection_is_404(stack, api_client):
    with pytest.raises(QboHealthApiError) as missing:
        api_client.connect_link("nobody")
    assert missing.value.status == 404
    assert wiring.connection_store()  # the stack's store is the one the API used
