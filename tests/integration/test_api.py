"""The API over the embedded stack, through the local HTTP front (API Gateway v2 events, SigV4 auth)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.client import QboHealthApiError
from qbo_health.domain.model import ConnectionState, IssueType
from qbo_health.messages import CheckRequest
from qbo_health.service.health_check import check_connection

CONFIRM_DELAY = timedelta(seconds=900)


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


def history_kinds(connection_id):
    return [entry["kind"] for entry in wiring.history_log().entries(connection_id)]


def break_admin(stack, api_client, seeded):
    """The admin who connected leaves the company; two checks 15 minutes apart confirm the issue."""
    stack.intuit.control.remove_user(seeded.realm_id, seeded.user_id)
    stack.clock.advance(timedelta(days=1))
    api_client.check_now(seeded.connection_id)
    stack.clock.advance(CONFIRM_DELAY)
    api_client.check_now(seeded.connection_id)
    broken = stored(seeded.connection_id)
    assert broken.state is ConnectionState.NEEDS_ATTENTION
    return broken


# The user's browser: the reconnect link sets a cookie that Intuit's callback must bring back.
BROWSER = requests.Session()


@pytest.fixture(autouse=True)
def _fresh_browser():
    BROWSER.cookies.clear()


def authorize_url(reconnect_url):
    answer = BROWSER.get(reconnect_url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def callback(stack, reconnect_url, *, realm_id=None, user_id=None, decision="connect"):
    return stack.intuit.control.consent(
        authorize_url(reconnect_url), realm_id=realm_id, user_id=user_id, decision=decision
    )


def deliver(location, browser=BROWSER):
    return browser.get(location, allow_redirects=False, timeout=30)


# ------------------------------------------------------------------ internal routes


def test_internal_routes_need_a_valid_sigv4_signature(stack, api_url, api_client):
    seed_connection(stack, "conn-1")
    unsigned = requests.get(f"{api_url}/connections/conn-1", timeout=10)
    assert unsigned.status_code == 403 and unsigned.json() == {"message": "Forbidden"}
    forged = requests.get(
        f"{api_url}/connections/conn-1",
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260105/us-east-1/execute-api/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
            "X-Amz-Date": "20260105T060000Z",
        },
        timeout=10,
    )
    assert forged.status_code == 403
    from botocore.credentials import Credentials

    from qbo_health.client import QboHealthClient

    wrong_secret = QboHealthClient(api_url, "us-east-1", Credentials("testing", "not-the-secret"))
    with pytest.raises(QboHealthApiError) as refused:
        wrong_secret.status("conn-1")
    assert refused.value.status == 403
    assert api_client.status("conn-1").state == "HEALTHY"
    assert requests.get(f"{api_url}/nowhere", timeout=10).status_code == 404


def test_register_then_connect_through_intuit(stack, api_client):
    control = stack.intuit.control
    realm = control.create_company(name="New Co")
    admin = control.add_user(realm, email="new.admin@example.com", admin=True)

    registered = api_client.register(tenant_id="t-1", contacts=["owner@example.com"], connection_id="new-1")
    assert registered.state == "PENDING" and registered.connection.reauthorize
    page = deliver(callback(stack, registered.connect_url, realm_id=realm, user_id=admin))

    assert page.status_code == 200, page.text
    status = api_client.status("new-1")
    assert status.state == "HEALTHY" and status.realm_id == realm and status.company_name == "New Co"
    assert "QuickBooks is connected again for New Co." in page.text
    assert status.authorized_by is not None and status.authorized_by.email == "new.admin@example.com"
    with pytest.raises(QboHealthApiError) as duplicate:
        api_client.register(tenant_id="t-1", connection_id="new-1")
    assert duplicate.value.status == 409 and duplicate.value.error == "already_exists"


def test_status_of_a_broken_connection_carries_the_article_wording(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    break_admin(stack, api_client, seeded)

    status = api_client.status("conn-1")

    assert status.state == "NEEDS_ATTENTION" and status.issue == "ADMIN_ACCESS_LOST"
    assert "no longer an Admin" in (status.user_message or "")
    assert status.remedy and status.who_can_fix and status.reauthorize
    assert status.days_left == 14 and status.deadline is not None
    assert status.reconnect_url and "/reconnect/" in status.reconnect_url


def test_import_is_verified_by_the_first_check(stack, api_client, lambdas):
    control = stack.intuit.control
    realm = control.create_company()
    user = control.add_user(realm, admin=True)
    granted = control.issue_tokens(realm, user, refreshed_days_ago=3)

    imported = api_client.import_connection(
        tenant_id="t-1", realm_id=realm, refresh_token=granted["refresh_token"], connection_id="imp-1"
    )
    assert imported.state == "PENDING"
    lambdas.drain_checks()

    assert api_client.status("imp-1").state == "HEALTHY"
    assert stack.intuit.control.stats()["refresh_grants"] == 1
    assert "VERIFIED" in history_kinds("imp-1")


def test_access_token_works_and_a_broken_connection_answers_its_issue(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    token = api_client.access_token("conn-1")
    stack.intuit.control.stats()
    assert wiring.intuit_client().company_info(seeded.realm_id, token.access_token).company_name
    break_admin(stack, api_client, seeded)

    with pytest.raises(QboHealthApiError) as refused:
        api_client.access_token("conn-1")
    assert refused.value.status == 409
    assert refused.value.body["issue"] == "ADMIN_ACCESS_LOST"


def test_hold_release_and_disconnect(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    assert api_client.hold("conn-1").on_hold is True
    assert api_client.release("conn-1").on_hold is False
    refresh_token = open_tokens(stored("conn-1")).refresh_token

    gone = api_client.disconnect("conn-1")

    assert gone.state == "DISCONNECTED" and gone.disconnect_reason == "CUSTOMER_REQUEST"
    assert stored("conn-1").sealed_tokens is None
    assert not stack.intuit.control.is_refresh_token_current(refresh_token)
    assert {"HOLD_SET", "HOLD_RELEASED", "DISCONNECTED"} <= set(history_kinds("conn-1"))
    # A link minted before a customer's disconnect is refused; a fresh one (from the status) reconnects.
    stack.clock.advance(timedelta(seconds=1))
    fresh = api_client.status("conn-1").reconnect_url
    page = deliver(callback(stack, fresh, realm_id=seeded.realm_id, user_id=seeded.user_id))
    assert page.status_code == 200 and stored("conn-1").state is ConnectionState.HEALTHY
    with pytest.raises(QboHealthApiError) as missing:
        api_client.status("nope")
    assert missing.value.status == 404


def test_a_link_from_before_a_customer_disconnect_is_refused(stack, api_client):
    seed_connection(stack, "conn-1")
    old_link = api_client.status("conn-1").reconnect_url
    stack.clock.advance(timedelta(seconds=1))
    api_client.disconnect("conn-1")

    page = requests.get(old_link, allow_redirects=False, timeout=10)

    assert page.status_code == 400 and "disconnected on request" in page.text


def test_reported_problem_is_checked_not_trusted(stack, api_client):
    seed_connection(stack, "conn-1")
    body = '{"Fault":{"Error":[{"Message":"x","code":"3100"}],"type":"ValidationFault"}}'

    answer = api_client.report_problem("conn-1", 403, body, "application/json")

    assert answer.reported is not None and answer.reported.issue == "ADMIN_ACCESS_LOST"
    assert answer.check.status == "checked" and answer.check.outcome == "HEALTHY"
    assert stored("conn-1").suspect is None and stored("conn-1").state is ConnectionState.HEALTHY


def test_check_now_and_intuit_disconnect_landing(stack, api_url, api_client, lambdas):
    seeded = seed_connection(stack, "conn-1")
    assert api_client.check_now("conn-1").status == "checked"
    stack.intuit.control.disconnect_app(seeded.realm_id)

    page = requests.get(f"{api_url}/intuit/disconnected", params={"realmId": seeded.realm_id}, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    stack.clock.advance(timedelta(days=1))
    lambdas.drain_checks()

    assert stored("conn-1").suspect is not None
    assert stored("conn-1").suspect.type is IssueType.AUTHORIZATION_EXPIRED


# ------------------------------------------------------------------ reauthorization


def test_a_different_admin_restores_a_broken_connection(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    broken = break_admin(stack, api_client, seeded)
    other = stack.intuit.control.add_user(seeded.realm_id, email="other.admin@example.com", admin=True)

    page = deliver(callback(stack, api_client.status("conn-1").reconnect_url, user_id=other))

    assert page.status_code == 200, page.text
    assert "QuickBooks connected" in page.text and "other.admin@example.com" in page.text
    assert "script-src 'nonce-" in page.headers["Content-Security-Policy"]
    restored = stored("conn-1")
    assert restored.state is ConnectionState.HEALTHY and restored.issue is None
    assert restored.authorized_by is not None and restored.authorized_by.user_id == other
    kinds = history_kinds("conn-1")
    assert "REAUTHORIZED" in kinds and "ISSUE_CLOSED" in kinds
    token = api_client.access_token("conn-1").access_token
    assert wiring.intuit_client().company_info(seeded.realm_id, token).company_name
    assert broken.issue is not None


def test_cancel_at_intuit_changes_nothing(stack, api_client):
    seed_connection(stack, "conn-1")
    before = stored("conn-1")

    page = deliver(callback(stack, api_client.status("conn-1").reconnect_url, decision="cancel"))

    assert page.status_code == 400 and "not connected" in page.text
    assert 'data-status="cancelled"' in page.text
    assert stored("conn-1") == before


def test_a_non_admin_is_refused_and_the_old_tokens_stay(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    clerk = stack.intuit.control.add_user(seeded.realm_id, admin=False)
    before = stored("conn-1")

    page = deliver(callback(stack, api_client.status("conn-1").reconnect_url, user_id=clerk))

    assert page.status_code == 403 and "not an Admin" in page.text
    assert stored("conn-1").sealed_tokens == before.sealed_tokens
    assert stack.intuit.control.is_refresh_token_current(open_tokens(before).refresh_token)


def test_realm_mismatch_changes_nothing(stack, api_client):
    seed_connection(stack, "conn-1")
    other = seed_connection(stack, "conn-2")
    before = stored("conn-1")

    page = deliver(
        callback(
            stack, api_client.status("conn-1").reconnect_url, realm_id=other.realm_id, user_id=other.user_id
        )
    )

    assert page.status_code == 400 and "different QuickBooks company" in page.text
    assert stored("conn-1").sealed_tokens.ciphertext == before.sealed_tokens.ciphertext
    assert stored("conn-1") == before
    assert stack.intuit.control.stats()["code_grants"] == 0


def test_double_callback_exchanges_the_code_once(stack, api_client):
    seeded = seed_connection(stack, "conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)

    answers = []
    threads = [threading.Thread(target=lambda: answers.append(deliver(location))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = deliver(location)

    # One delivery exchanges and stores; the other finds the state used (and says connected if by then the
    # first one had stored its grant).
    assert 200 in [answer.status_code for answer in answers]
    assert {answer.status_code for answer in answers} <= {200, 400}
    # A reload after the success: the cookie and the state are gone, but the connection is on this grant.
    assert again.status_code == 200 and 'data-status="connected"' in again.text
    assert stack.intuit.control.stats()["code_grants"] == 1
    stack.clock.advance(timedelta(hours=2))
    token = api_client.access_token("conn-1").access_token  # the stored token still refreshes
    assert wiring.intuit_client().company_info(seeded.realm_id, token).company_name


def test_a_callback_in_another_browser_is_refused_and_the_real_one_still_connects(stack, api_client):
    """Login CSRF: a callback link (someone's own code and state) opened in a browser that did not start
    that sign-in changes nothing; the browser that did start it still completes."""
    seeded = seed_connection(stack, "conn-1")
    before = stored("conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)

    elsewhere = deliver(location, browser=requests.Session())

    assert elsewhere.status_code == 400 and "another browser" in elsewhere.text
    assert stored("conn-1") == before and stack.intuit.control.stats()["code_grants"] == 0
    cookie = next(c for c in BROWSER.cookies if c.name.startswith("qbo_oauth_"))
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/"
    assert deliver(location).status_code == 200
    assert stored("conn-1").realm_id == seeded.realm_id and stored("conn-1").version > before.version


def test_forged_expired_replayed_and_cross_connection_states(stack, api_url, api_client):
    seed_connection(stack, "conn-1")
    other = seed_connection(stack, "conn-2")
    before = stored("conn-1")
    location = callback(stack, api_client.status("conn-1").reconnect_url)
    query = parse_qs(urlsplit(location).query)

    forged = {"code": query["code"][0], "realmId": query["realmId"][0], "state": "forged-" + "x" * 40}
    assert deliver(f"{api_url}/oauth/callback?{urlencode(forged)}").status_code == 400

    # Cross-connection: a state made for conn-2 carrying conn-1's company is a realm mismatch.
    other_location = callback(stack, api_client.status("conn-2").reconnect_url, realm_id=other.realm_id)
    crossed = dict(parse_qs(urlsplit(other_location).query), realmId=[query["realmId"][0]])
    crossed_page = deliver(f"{api_url}/oauth/callback?{urlencode(crossed, doseq=True)}")
    assert crossed_page.status_code == 400 and "different QuickBooks company" in crossed_page.text

    stack.clock.advance(timedelta(minutes=11))  # past the state's 10 minutes (moto never deletes TTL items)
    expired = deliver(location)
    assert expired.status_code == 400 and "expired" in expired.text
    assert deliver(location).status_code == 400  # replayed
    assert stored("conn-1") == before
    assert stack.intuit.control.stats()["code_grants"] == 0


def test_tampered_and_expired_reconnect_links(stack, api_client):
    seed_connection(stack, "conn-1")
    link = api_client.status("conn-1").reconnect_url
    payload, mac = link.rsplit("/", 1)[1].split(".")
    tampered = link.replace(mac, ("A" if mac[0] != "A" else "B") + mac[1:])
    other_payload = link.replace(payload, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"))

    for bad in (tampered, other_payload, link + "x", link.rsplit("/", 1)[0] + "/garbage"):
        page = requests.get(bad, allow_redirects=False, timeout=10)
        assert page.status_code == 400 and "not valid" in page.text

    stack.clock.advance(timedelta(days=31))
    page = requests.get(link, allow_redirects=False, timeout=10)
    assert page.status_code == 400 and "expired" in page.text


def test_bad_input_is_a_clean_4xx_and_never_echoed_unescaped(stack, api_url, api_client):
    seed_connection(stack, "conn-1")
    script = "<script>alert(1)</script>"
    cases = [
        {},
        {"state": "s"},
        {"code": "c" * 513, "state": "s", "realmId": "1"},
        {"code": "c", "state": "s" * 201, "realmId": "1"},
        {"code": script, "state": script, "realmId": script},
        {"error": script, "error_description": script, "state": script},
        {"error": "access_denied"},
        {"code": "c", "state": "s", "realmId": "1" * 65},
    ]
    for params in cases:
        page = requests.get(f"{api_url}/oauth/callback", params=params, timeout=10)
        assert 400 <= page.status_code < 500, (params, page.status_code)
        assert "<script>alert" not in page.text
    for path in (
        f"/reconnect/{script}",
        "/reconnect/" + "a" * 1100,
        f"/intuit/disconnected?realmId={script}",
    ):
        page = requests.get(api_url + path, timeout=10, allow_redirects=False)
        assert page.status_code < 500 and "<script>alert" not in page.text
    signed = api_client
    with pytest.raises(QboHealthApiError) as invalid:
        signed.status(script)
    assert invalid.value.status in (400, 404)
    with pytest.raises(QboHealthApiError) as invalid_body:
        signed._call("POST", "/connections", type(signed.status("conn-1")), None)
    assert invalid_body.value.status == 400 and invalid_body.value.error == "invalid_request"


# ------------------------------------------------------------------ concurrency


def test_concurrent_access_tokens_and_a_worker_check_refresh_once(stack, api_client):
    seeded = seed_connection(stack, "conn-1", refreshed_days_ago=1.5)  # access token expired, refresh due
    stack.intuit.control.set_latency(150)  # keep the refresh in flight while the others arrive
    stack.intuit.control.reset_stats()
    tokens: list[str] = []
    errors: list[BaseException] = []

    def ask():
        try:
            tokens.append(api_client.access_token("conn-1").access_token)
        except BaseException as error:
            errors.append(error)

    def worker():
        check_connection(CheckRequest(connection_id="conn-1"), wiring.check_deps(), stack.clock.now())

    threads = [threading.Thread(target=ask) for _ in range(8)] + [threading.Thread(target=worker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.intuit.control.set_latency(0)

    assert not errors
    assert stack.intuit.control.stats()["refresh_grants"] == 1
    assert len(tokens) == 8
    for token in set(tokens):
        assert wiring.intuit_client().company_info(seeded.realm_id, token).company_name


def test_the_link_key_comes_from_secrets_manager_when_not_inline(stack, api_client, monkeypatch):
    seed_connection(stack, "conn-1")
    inline = api_client.status("conn-1").reconnect_url
    monkeypatch.delenv("LINK_SIGNING_KEY")
    wiring.reset()
    try:
        assert wiring.api_settings().link_signing_secret  # the template's LinkSigningSecret, in moto
        from_secret = api_client.status("conn-1").reconnect_url
        assert from_secret == inline  # same local value, read through Powertools parameters
        assert requests.get(from_secret, allow_redirects=False, timeout=10).status_code == 302
    finally:
        monkeypatch.undo()
        wiring.reset()


# ------------------------------------------------------------------ where access tokens are kept


def test_a_daily_check_keeps_no_access_token_and_the_first_request_refreshes_once(stack, api_client):
    seed_connection(stack, "conn-1", refreshed_days_ago=1)
    check_connection(CheckRequest(connection_id="conn-1"), wiring.check_deps(), stack.clock.now())
    assert open_tokens(stored("conn-1")).access_token == ""  # the connection item stays small
    assert wiring.access_token_cache().get("conn-1", stack.clock.now()) is None
    stack.intuit.control.reset_stats()

    first = api_client.access_token("conn-1")
    second = api_client.access_token("conn-1")

    assert stack.intuit.control.stats()["refresh_grants"] == 1
    assert second.access_token == first.access_token  # kept apart, handed out again without Intuit
    assert wiring.access_token_cache().get("conn-1", stack.clock.now()) is not None


def test_a_caller_waiting_on_a_running_check_gets_the_checks_token(stack, api_client):
    seeded = seed_connection(stack, "conn-1", refreshed_days_ago=1.5)
    stack.intuit.control.set_latency(300)  # the check holds the lease for refresh + probe
    stack.intuit.control.reset_stats()
    worker = threading.Thread(
        target=check_connection,
        args=(CheckRequest(connection_id="conn-1"), wiring.check_deps(), stack.clock.now()),
    )
    worker.start()
    deadline = time.monotonic() + 10
    while wiring.connection_store().get("conn-1").version == 0:  # until the check has refreshed
        assert time.monotonic() < deadline, "the check never refreshed"
    try:
        token = api_client.access_token("conn-1")
    finally:
        worker.join()
        stack.intuit.control.set_latency(0)

    assert stack.intuit.control.stats()["refresh_grants"] == 1  # the caller did not refresh again
    assert wiring.intuit_client().company_info(seeded.realm_id, token.access_token).company_name
    assert stored("conn-1").access_wanted is False


def test_a_disconnect_forgets_the_kept_access_token(stack, api_client):
    seed_connection(stack, "conn-1")
    api_client.access_token("conn-1")
    assert wiring.access_token_cache().get("conn-1", stack.clock.now()) is not None

    api_client.disconnect("conn-1")

    assert wiring.access_token_cache().get("conn-1", stack.clock.now()) is None


def test_an_access_token_request_near_the_api_timeout_refreshes_nothing(
    stack, api_front, api_client, monkeypatch
):
    """With less time left than a refresh and its write need (Intuit's timeout plus 10 s), the API answers
    503 and never calls Intuit: cut off between Intuit's rotation and our write, the token would be lost."""
    seed_connection(stack, "conn-1", refreshed_days_ago=1.5)  # the access token expired: a refresh is needed
    refreshed_before = stored("conn-1").tokens.refreshed_at
    monkeypatch.setattr(api_front, "timeout_seconds", 15.0)  # 29 s on AWS; 20 s needed here
    stack.intuit.control.reset_stats()

    with pytest.raises(QboHealthApiError) as refused:
        api_client.access_token("conn-1")

    assert refused.value.status == 503
    assert stack.intuit.control.stats()["refresh_attempts"] == 0
    assert stored("conn-1").tokens.refreshed_at == refreshed_before
    monkeypatch.undo()
    assert api_client.access_token("conn-1").access_token  # with the whole 29 s, it refreshes


def test_a_tenant_brand_and_language_set_at_registration_shape_its_notices(stack, api_client):
    from qbo_health.domain.notices import NoticeKind, render_email

    api_client.register(tenant_id="t-9", connection_id="brand-1", display_name="Acme Books", locale="fr-CA")
    plain = api_client.register(tenant_id="t-9", connection_id="plain-1")

    status = api_client.status("brand-1")
    assert status.display_name == "Acme Books" and status.locale == "fr-CA"
    assert plain.connection.display_name is None and plain.connection.locale is None
    now = stack.clock.now()
    notices = wiring.notices()
    branded = notices.notice_for(stored("brand-1"), NoticeKind.REAUTH_DUE, now, episode_id="e")
    default = notices.notice_for(stored("plain-1"), NoticeKind.REAUTH_DUE, now, episode_id="e")
    assert branded.brand.product_name == "Acme Books" and branded.locale == "fr-CA"
    assert default.brand.product_name == "QBO Connection Health" and default.locale == "en-US"
    assert "Acme Books" in render_email(branded).text
    with pytest.raises(ValueError, match="locale"):  # a language we do not ship is refused
        api_client.register(tenant_id="t-9", locale="de-DE")


def test_the_result_page_speaks_the_connections_language_and_names_its_company(stack, api_client):
    control = stack.intuit.control
    realm = control.create_company(name="Boulangerie <Dupré>")
    admin = control.add_user(realm, email="chef@dupre.example", admin=True)
    registered = api_client.register(tenant_id="t-fr", connection_id="fr-1", locale="fr-CA")

    page = deliver(callback(stack, registered.connect_url, realm_id=realm, user_id=admin))

    assert page.status_code == 200, page.text
    assert '<html lang="fr-CA">' in page.text and "<title>QuickBooks connecté</title>" in page.text
    assert "QuickBooks est de nouveau connecté pour Boulangerie &lt;Dupré&gt;." in page.text
