"""The public routes anyone can reach: what an anonymous request can make happen, and what it cannot."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from botocore.credentials import Credentials

from local.runner import LambdaInvocationContext, load_handler
from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.client import QboHealthClient
from qbo_health.domain.model import ConnectionState, DisconnectReason
from qbo_health.service.disconnect_landing import RECHECK_WINDOW
from tests.integration.test_api import BROWSER, break_admin, callback, deliver, stored


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


def action_link(page):
    match = re.search(r'id="action" rel="noreferrer" href="([^"]+)"', page.text)
    return html.unescape(match.group(1)) if match else None


def test_intuits_reconnect_url_restarts_the_sign_in_for_the_one_broken_connection_of_a_company(
    stack, api_url, api_client
):
    seeded = seed_connection(stack, "conn-1")
    break_admin(stack, api_client, seeded)
    other = stack.intuit.control.add_user(seeded.realm_id, email="other.admin@example.com", admin=True)

    page = BROWSER.get(f"{api_url}/reconnect", params={"realmId": seeded.realm_id}, timeout=10)

    assert page.status_code == 200 and 'id="reconnect_start"' in page.text
    assert "<script" not in page.text and page.headers["Cache-Control"] == "no-store"
    location = stack.intuit.control.consent(action_link(page), user_id=other)
    assert deliver(location).status_code == 200
    assert stored("conn-1").state is ConnectionState.HEALTHY


def test_intuits_reconnect_url_starts_nothing_it_cannot_pin_to_one_connection_in_need(
    stack, api_url, api_client
):
    healthy = seed_connection(stack, "healthy-1")
    shared_realm = seed_connection(stack, "shared-1")
    seed_connection(stack, "shared-2")  # same company, another tenant
    wiring.connection_store().save(
        replace(stored("shared-2"), realm_id=shared_realm.realm_id, state=ConnectionState.NEEDS_ATTENTION),
        changed_from=stored("shared-2"),
    )
    asked = seed_connection(stack, "asked-1")
    api_client.disconnect("asked-1")  # the customer disconnected on purpose: reconnect from the product
    cases = [
        {},
        {"realmId": "999999"},
        {"realmId": "١٢٣"},
        {"realmId": healthy.realm_id},
        {"realmId": shared_realm.realm_id},
        {"realmId": asked.realm_id},
    ]
    for params in cases:
        page = requests.get(f"{api_url}/reconnect", params=params, allow_redirects=False, timeout=10)
        assert page.status_code == 200, params
        assert 'id="reconnect_from_app"' in page.text and "Reauthorize button" in page.text, params
        assert action_link(page) is None and "Set-Cookie" not in page.headers
    assert stack.intuit.control.stats()["code_grants"] == 0


def test_a_connection_disconnected_by_the_grace_period_can_be_restored_from_quickbooks(stack, api_url):
    seeded = seed_connection(stack, "conn-1")
    wiring.connection_store().save(
        replace(
            stored("conn-1"),
            state=ConnectionState.DISCONNECTED,
            disconnect_reason=DisconnectReason.GRACE_PERIOD_EXPIRED,
            disconnected_at=stack.clock.now(),
        ),
        changed_from=stored("conn-1"),
    )
    page = BROWSER.get(f"{api_url}/reconnect", params={"realmId": seeded.realm_id}, timeout=10)
    assert 'id="reconnect_start"' in page.text
    assert deliver(stack.intuit.control.consent(action_link(page), user_id=seeded.user_id)).status_code == 200
    assert stored("conn-1").state is ConnectionState.HEALTHY


# ------------------------------------------------------------------ smaller items (defect 6)


def https_event(path, route, *, params=None, query=None, cookies=None):
    """An API Gateway v2 event as it arrives over https (the local front is http)."""
    event = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"host": "connect.example.com", "x-forwarded-proto": "https"},
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
            "requestId": "r-1",
            "routeKey": route,
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if params:
        event["pathParameters"] = params
    if query:
        event["queryStringParameters"] = query
    if cookies:
        event["cookies"] = cookies
    return event


def invoke_api(event):
    return load_handler("api")(event, LambdaInvocationContext(function_name="api", timeout_seconds=29))


def test_over_https_the_sign_in_cookie_is_a_host_cookie_and_the_callback_expires_it(stack):
    seeded = seed_connection(stack, "conn-1")
    token = wiring.link_signer().link_for(stored("conn-1"), stack.clock.now()).url.rsplit("/", 1)[1]

    redirect = invoke_api(
        https_event(f"/reconnect/{token}", "GET /reconnect/{token}", params={"token": token})
    )

    [cookie] = redirect["cookies"]
    assert cookie.startswith("__Host-qbo_oauth_") and "; Secure" in cookie and "; Path=/" in cookie
    assert "Domain=" not in cookie
    name = cookie.split("=", 1)[0]
    callback = urlsplit(stack.intuit.control.consent(redirect["headers"]["Location"], user_id=seeded.user_id))
    query = dict(parse_qsl(callback.query))

    # The same cookie without its prefix (which any sibling subdomain could have set) does not count.
    unprefixed = invoke_api(
        https_event("/oauth/callback", "GET /oauth/callback", query=query, cookies=[f"{name[7:]}=1"])
    )
    assert unprefixed["statusCode"] == 400 and 'id="oauth_state_invalid"' in unprefixed["body"]
    assert f"{name}=; Path=/; Max-Age=0" in " ".join(unprefixed["cookies"])
    done = invoke_api(
        https_event("/oauth/callback", "GET /oauth/callback", query=query, cookies=[f"{name}=1"])
    )
    assert done["statusCode"] == 200 and 'id="connected"' in done["body"]
    assert any(c.startswith(f"{name}=;") and "Max-Age=0" in c for c in done["cookies"])


def test_the_callback_clears_the_sign_in_cookie_in_the_browser(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    page = deliver(callback(stack, api_client.status("conn-1").reconnect_url, user_id=seeded.user_id))

    assert page.status_code == 200
    assert not [cookie.name for cookie in BROWSER.cookies if cookie.name.startswith("qbo_oauth_")]


def test_secrets_in_answers_are_never_stored_by_a_cache(stack, api_url):
    seed_connection(stack, "conn-1")
    seen = []
    http = requests.Session()
    http.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response))
    client = QboHealthClient(api_url, "us-east-1", Credentials("testing", "testing", "testing"), session=http)

    client.access_token("conn-1")
    client.connect_link("conn-1")

    assert [response.headers.get("Cache-Control") for response in seen] == ["no-store", "no-store"]


def test_a_realm_id_of_non_ascii_digits_is_refused_as_invalid(stack, api_url):
    page = requests.get(
        f"{api_url}/oauth/callback", params={"code": "c", "state": "s" * 43, "realmId": "١٢٣٤"}, timeout=10
    )
    assert page.status_code == 400 and 'id="invalid_request"' in page.text
