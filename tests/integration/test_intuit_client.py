"""IntuitClient against the Intuit simulator: real HTTP, real OAuth flows, Intuit's error shapes."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from qbo_health.adapters.intuit import (
    DEFAULT_SCOPES,
    GrantedTokens,
    IntuitClient,
    IntuitEndpoints,
)
from qbo_health.domain.classification import FailureKind, classify, revoke_already_done
from qbo_health.domain.model import IssueType
from qbo_health.errors import ConfigurationError, IntuitCallFailed

CLIENT_ID = "sim-client-id"
CLIENT_SECRET = "sim-client-secret"
REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"
HOUR = 3600
DAY = 24 * HOUR


# --- fixtures and helpers --------------------------------------------------------------------------------


@pytest.fixture
def client(intuit, sim_clock):
    instance = IntuitClient(
        IntuitEndpoints.on_host(intuit.base_url),
        CLIENT_ID,
        CLIENT_SECRET,
        clock=sim_clock,
        timeout_seconds=5.0,
    )
    yield instance
    instance.close()


@pytest.fixture
def company(intuit):
    """A company with one admin user, as (realm_id, user_id)."""
    realm_id = intuit.control.create_company(name="Sierra Bikes")
    user_id = intuit.control.add_user(realm_id, admin=True)
    return realm_id, user_id


@pytest.fixture
def granted(intuit, company):
    """Tokens issued by the simulator directly (as if the customer connected a moment ago)."""
    realm_id, user_id = company
    return intuit.control.issue_tokens(realm_id, user_id)


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.selects: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action")
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values.get("value") or ""
        elif tag == "select":
            self._select = values.get("name") or ""
            self.selects[self._select] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(values.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def consent(intuit, client, realm_id, user_id, *, state="state-123", redirect_uri=REDIRECT_URI):
    """Drive the consent page like a browser would; returns the callback's query parameters."""
    page = requests.get(client.authorization_url(state, redirect_uri), timeout=5)
    assert page.status_code == 200
    form = _FormReader()
    form.feed(page.text)
    assert form.action is not None
    assert realm_id in form.selects["realm_id"] and user_id in form.selects["user_id"]
    data = {**form.fields, "realm_id": realm_id, "user_id": user_id, "decision": "connect"}
    answer = requests.post(urljoin(intuit.base_url, form.action), data=data, allow_redirects=False, timeout=5)
    assert answer.status_code in (302, 303)
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def failure_of(call, *args, **kwargs):
    with pytest.raises(IntuitCallFailed) as caught:
        call(*args, **kwargs)
    return caught.value


def assert_no_secrets(value, *secrets):
    texts = [str(value), repr(value)]
    if isinstance(value, IntuitCallFailed):
        texts += [repr(value.failure), str(value.args)]
    for text in texts:
        for secret in secrets:
            assert secret not in text


# --- endpoints -------------------------------------------------------------------------------------------


def test_endpoints_for_production_and_sandbox():
    production = IntuitEndpoints.production()
    assert production.token_url == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    assert production.revoke_url == "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
    assert production.authorize_url == "https://appcenter.intuit.com/connect/oauth2"
    assert production.api_base == "https://quickbooks.api.intuit.com"
    sandbox = IntuitEndpoints.sandbox()
    assert sandbox.api_base == "https://sandbox-quickbooks.api.intuit.com"
    assert sandbox.userinfo_url.startswith("https://sandbox-accounts.platform.intuit.com/")
    assert not production.uses_loopback_http and not sandbox.uses_loopback_http


@pytest.mark.parametrize(
    "base", ["http://example.com", "http://10.0.0.5:8080", "ftp://127.0.0.1", "127.0.0.1"]
)
def test_plain_http_is_refused_except_on_loopback(base):
    with pytest.raises(ConfigurationError):
        IntuitEndpoints.on_host(base)


@pytest.mark.parametrize("base", ["http://127.0.0.1:5000/", "http://localhost:1", "http://[::1]:9"])
def test_plain_http_is_allowed_on_loopback(base):
    endpoints = IntuitEndpoints.on_host(base)
    assert endpoints.uses_loopback_http
    assert endpoints.token_url.endswith("/oauth2/v1/tokens/bearer")
    assert not endpoints.api_base.endswith("/")


def test_client_repr_hides_the_secret(client):
    assert CLIENT_SECRET not in repr(client)


# --- authorization code ----------------------------------------------------------------------------------


def test_authorization_url(client, intuit):
    url = client.authorization_url("xyz", REDIRECT_URI)
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{intuit.base_url}/connect/oauth2"
    assert query["client_id"] == CLIENT_ID
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["state"] == "xyz"
    assert query["scope"].split() == list(DEFAULT_SCOPES)


def test_code_exchange_through_the_consent_form(client, intuit, company, sim_clock):
    realm_id, user_id = company
    callback = consent(intuit, client, realm_id, user_id, state="abc")
    assert callback["state"] == "abc"
    assert callback["realmId"] == realm_id

    now = sim_clock.now()
    granted = client.exchange_code(callback["code"], REDIRECT_URI, realm_id=callback["realmId"])

    assert isinstance(granted, GrantedTokens)
    assert granted.realm_id == realm_id
    assert granted.id_token  # openid scope was asked for
    assert granted.intuit_tid
    pair = granted.pair
    assert pair.access_token and pair.refresh_token
    assert pair.access_expires_at == now + timedelta(hours=1)
    assert pair.refresh_expires_at == now + timedelta(days=100)
    assert pair.hard_expires_at is not None
    assert now + timedelta(days=5 * 365) <= pair.hard_expires_at <= now + timedelta(days=5 * 366)
    assert_no_secrets(granted, pair.access_token, pair.refresh_token, granted.id_token, callback["code"])

    identity = client.userinfo(pair.access_token)
    assert identity.user_id == user_id
    assert identity.email and "@" in identity.email
    assert client.company_info(realm_id, pair.access_token).company_name == "Sierra Bikes"


def test_a_code_works_once(client, intuit, company):
    realm_id, user_id = company
    code = consent(intuit, client, realm_id, user_id)["code"]
    first = client.exchange_code(code, REDIRECT_URI)

    error = failure_of(client.exchange_code, code, REDIRECT_URI)

    assert error.failure.endpoint == "token"
    assert error.failure.status == 400
    assert error.failure.oauth_error == "invalid_grant"
    assert error.failure.intuit_tid
    assert_no_secrets(error, code, CLIENT_SECRET, first.pair.refresh_token)
    # Replaying a code kills what it issued (Intuit treats it as fraud).
    replayed = failure_of(client.refresh, first.pair.refresh_token)
    assert replayed.failure.oauth_error == "invalid_grant"


def test_a_cancelled_consent_redirects_with_an_error(client, intuit, company):
    realm_id, user_id = company
    page = requests.get(client.authorization_url("s1", REDIRECT_URI), timeout=5)
    form = _FormReader()
    form.feed(page.text)
    data = {**form.fields, "realm_id": realm_id, "user_id": user_id, "decision": "cancel"}
    answer = requests.post(urljoin(intuit.base_url, form.action), data=data, allow_redirects=False, timeout=5)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s1"]


# --- refresh ---------------------------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token_after_a_day(client, intuit, granted, sim_clock):
    original = granted["refresh_token"]

    same_day = client.refresh(original)
    assert same_day.pair.refresh_token == original  # inside the rotation window the value may stay

    intuit.control.advance_clock(25 * HOUR)
    now = sim_clock.now()
    rotated = client.refresh(original)

    assert rotated.pair.refresh_token != original
    assert rotated.pair.access_token != same_day.pair.access_token
    assert rotated.pair.access_expires_at == now + timedelta(seconds=3600)
    assert rotated.pair.refresh_expires_at == now + timedelta(days=100)
    assert rotated.id_token is None  # refresh answers carry no id_token
    assert rotated.intuit_tid

    stale = failure_of(client.refresh, original)
    assert stale.failure.endpoint == "token"
    assert stale.failure.oauth_error == "invalid_grant"
    assert stale.failure.status == 400
    assert stale.failure.intuit_tid
    assert classify(stale.failure) == classify(stale.failure, after_fresh_refresh=True)
    assert classify(stale.failure).kind is FailureKind.ISSUE
    assert classify(stale.failure).issue is IssueType.AUTHORIZATION_EXPIRED
    assert_no_secrets(stale, original, rotated.pair.refresh_token, CLIENT_SECRET)

    # The new value keeps working.
    assert client.refresh(rotated.pair.refresh_token).pair.access_token


def test_refresh_reads_the_hard_expiry(client, granted, sim_clock):
    now = sim_clock.now()
    refreshed = client.refresh(granted["refresh_token"])
    hard = refreshed.pair.hard_expires_at
    assert hard is not None
    expected = now + timedelta(seconds=granted["x_refresh_token_hard_expires_in"])
    assert abs(hard - expected) <= timedelta(seconds=2)
    assert refreshed.pair.refresh_expires_at <= hard


def test_refresh_with_a_wrong_client_secret_is_a_misconfiguration(intuit, granted, sim_clock):
    wrong = IntuitClient(
        IntuitEndpoints.on_host(intuit.base_url), CLIENT_ID, "not-the-secret", clock=sim_clock
    )
    error = failure_of(wrong.refresh, granted["refresh_token"])
    assert error.failure.status == 401
    assert error.failure.oauth_error == "invalid_client"
    assert classify(error.failure).kind is FailureKind.MISCONFIGURED
    assert_no_secrets(error, granted["refresh_token"], "not-the-secret")
    wrong.close()


@pytest.mark.parametrize("with_description", [True, False])
def test_invalid_grant_after_the_app_is_disconnected_in_qbo(
    client, intuit, company, granted, with_description
):
    """``invalid_grant`` sometimes comes without ``error_description`` (oauth-jsclient issue 77): the same
    classification either way (the client never depends on the field)."""
    realm_id, _ = company
    intuit.control.set_oauth_style(invalid_grant_description=with_description)
    intuit.control.disconnect_app(realm_id)

    error = failure_of(client.refresh, granted["refresh_token"])

    assert error.failure.oauth_error == "invalid_grant"
    assert error.failure.endpoint == "token"
    assert classify(error.failure).issue is IssueType.AUTHORIZATION_EXPIRED
    assert_no_secrets(error, granted["refresh_token"], granted["access_token"])

    api = failure_of(client.company_info, realm_id, granted["access_token"])
    assert api.failure.status == 401 and api.failure.codes == ("3200",)


# --- CompanyInfo and its faults --------------------------------------------------------------------------


def test_company_info(client, company, granted):
    realm_id, _ = company
    info = client.company_info(realm_id, granted["access_token"])
    assert info.company_name == "Sierra Bikes"
    assert info.intuit_tid


@pytest.mark.parametrize(("style", "code"), [("100", "100"), ("3200", "3200")])
def test_expired_access_token_is_refused_then_refresh_and_retry_works(
    client, intuit, company, granted, style, code
):
    """An expired access token draws 401 with the XML AuthenticationFault code 100 (Intuit's usual answer),
    or the 3200 gateway fault (type AUTHENTICATION, WWW-Authenticate header): both mean refresh and retry."""
    realm_id, _ = company
    intuit.control.set_company_fault_style(realm_id, expired_token=style)
    intuit.control.advance_clock(HOUR + 1)

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == 401
    assert error.failure.codes == (code,)
    assert error.failure.endpoint == "api"
    assert error.failure.intuit_tid
    assert classify(error.failure).kind is FailureKind.REFRESH_AND_RETRY
    assert classify(error.failure, after_fresh_refresh=True).issue is IssueType.AUTHORIZATION_EXPIRED
    assert_no_secrets(error, granted["access_token"])

    fresh = client.refresh(granted["refresh_token"])
    assert client.company_info(realm_id, fresh.pair.access_token).company_name == "Sierra Bikes"


def test_admin_demoted_answers_3100(client, intuit, company, granted):
    realm_id, user_id = company
    intuit.control.set_admin(realm_id, user_id, False)

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == 403
    assert error.failure.codes == ("3100",)
    assert error.failure.intuit_tid
    assert classify(error.failure).issue is IssueType.ADMIN_ACCESS_LOST
    assert_no_secrets(error, granted["access_token"])


def test_admin_demoted_answers_120_for_some_companies(client, intuit, company, granted):
    realm_id, user_id = company
    intuit.control.set_company_fault_style(realm_id, non_admin_code="120")
    intuit.control.set_admin(realm_id, user_id, False)

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == 401
    assert error.failure.codes == ("120",)
    assert classify(error.failure).issue is IssueType.ADMIN_ACCESS_LOST


@pytest.mark.parametrize("status", [400, 200])
def test_suspended_company_answers_6190_in_the_refusing_style(client, intuit, company, granted, status):
    realm_id, _ = company
    intuit.control.set_company_fault_style(realm_id, status_6190=status, lapsed_reads="refuse")
    intuit.control.suspend(realm_id)

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == status
    assert error.failure.codes == ("6190",)
    assert error.failure.endpoint == "api"
    assert error.failure.intuit_tid
    assert classify(error.failure).issue is IssueType.SUBSCRIPTION_LAPSED
    assert_no_secrets(error, granted["access_token"])


@pytest.mark.parametrize(
    "status", ["TRIAL", "TRIALOPTIN", "SUBSCRIBED", "PAID", "RESTRICTED", "SUSPENDED", "CANCELED", "EXPIRED"]
)
def test_company_info_carries_the_subscription_status(client, intuit, company, granted, status):
    """By default a read-only company (suspended, canceled...) still reads: the status says what is wrong."""
    realm_id, _ = company
    intuit.control.set_subscription_status(realm_id, status)

    info = client.company_info(realm_id, granted["access_token"])

    assert info.company_name == "Sierra Bikes"
    assert info.subscription_status == status


def test_a_token_for_another_company_answers_3100(client, intuit, granted):
    other = intuit.control.create_company()
    error = failure_of(client.company_info, other, granted["access_token"])
    assert error.failure.status == 403 and error.failure.codes == ("3100",)


# --- injected faults -------------------------------------------------------------------------------------


def test_throttling_answers_429_in_xml(client, intuit, company, granted):
    realm_id, _ = company
    intuit.control.set_faults(rate=1.0, kinds=["429"], endpoints=["api"])

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == 429
    assert error.failure.codes == ("3001",)
    assert classify(error.failure).kind is FailureKind.TRANSIENT
    assert classify(error.failure).reason == "throttled"


def test_injected_500_on_the_api(client, intuit, company, granted):
    realm_id, _ = company
    intuit.control.set_faults(rate=1.0, kinds=["500"], endpoints=["api"])

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == 500
    assert classify(error.failure).reason == "server_error"


@pytest.mark.parametrize("kind", ["500", "503"])
def test_injected_html_error_on_the_token_endpoint(client, intuit, granted, kind):
    intuit.control.set_faults(rate=1.0, kinds=[kind], endpoints=["token"])

    error = failure_of(client.refresh, granted["refresh_token"])

    assert error.failure.status == int(kind)
    assert error.failure.endpoint == "token"
    assert error.failure.oauth_error is None
    assert classify(error.failure).reason == "server_error"
    assert_no_secrets(error, granted["refresh_token"])


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("token", lambda c, realm, tokens: c.refresh(tokens["refresh_token"])),
        ("api", lambda c, realm, tokens: c.company_info(realm, tokens["access_token"])),
        ("userinfo", lambda c, realm, tokens: c.userinfo(tokens["access_token"])),
        ("revoke", lambda c, realm, tokens: c.revoke(tokens["refresh_token"])),
    ],
)
def test_a_hanging_answer_is_a_timeout(intuit, sim_clock, company, granted, endpoint, call):
    realm_id, _ = company
    impatient = IntuitClient(
        IntuitEndpoints.on_host(intuit.base_url),
        CLIENT_ID,
        CLIENT_SECRET,
        clock=sim_clock,
        timeout_seconds=0.3,
    )
    intuit.control.set_faults(rate=1.0, kinds=["timeout"], endpoints=[endpoint], hang_seconds=1.0)

    error = failure_of(call, impatient, realm_id, granted)
    impatient.close()

    assert error.failure.transport == "timeout"
    assert error.failure.status is None
    assert error.failure.endpoint == endpoint
    assert classify(error.failure).reason == "timeout"
    assert_no_secrets(error, granted["refresh_token"], granted["access_token"])


def test_a_dropped_connection_is_a_connection_failure(client, intuit, company, granted):
    realm_id, _ = company
    intuit.control.set_faults(rate=1.0, kinds=["reset"], endpoints=["api"])

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.transport == "connection"
    assert classify(error.failure).reason == "connection"


def test_nothing_listening_is_a_connection_failure(sim_clock):
    with socket_bound_but_closed() as port:
        dead = IntuitClient(
            IntuitEndpoints.on_host(f"http://127.0.0.1:{port}"),
            CLIENT_ID,
            CLIENT_SECRET,
            clock=sim_clock,
            timeout_seconds=1.0,
        )
        error = failure_of(dead.refresh, "some-refresh-token-value")
    assert error.failure.transport == "connection"
    assert error.failure.endpoint == "token"
    assert_no_secrets(error, "some-refresh-token-value")


def socket_bound_but_closed():
    import contextlib
    import socket

    @contextlib.contextmanager
    def port():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        number = sock.getsockname()[1]
        sock.close()
        yield number

    return port()


# --- revoke and userinfo ---------------------------------------------------------------------------------


def test_revoke_ends_the_grant(client, company, granted):
    realm_id, _ = company
    client.revoke(granted["refresh_token"])

    error = failure_of(client.refresh, granted["refresh_token"])
    assert error.failure.oauth_error == "invalid_grant"
    api = failure_of(client.company_info, realm_id, granted["access_token"])
    assert api.failure.codes == ("3200",)


def test_revoking_an_unknown_token_answers_400_empty_which_means_already_done(client, company, granted):
    """Intuit answers the revoke of an unknown or already revoked token with 400 and an empty body: the
    client reports it as it is, and the domain reads it as done (the disconnect goes on; see
    tests/integration/test_revoke_answers.py)."""
    for token in ("never-issued-token", granted["refresh_token"]):
        if token == granted["refresh_token"]:
            client.revoke(token)  # the first revoke of a live token succeeds
        error = failure_of(client.revoke, token)
        assert error.failure.status == 400
        assert error.failure.endpoint == "revoke"
        assert error.failure.empty_body
        assert revoke_already_done(error.failure)
        assert classify(error.failure).kind is FailureKind.TRANSIENT  # never an issue on its own


def test_metered_calls_past_the_allowance_are_refused_as_metering(client, intuit, company, granted):
    """Past the app's monthly allowance, CompanyInfo (a metered read) answers 403 with Fault 6900 (the
    simulator's assumed shape): its own failure kind, never an issue, never transient."""
    realm_id, _ = company
    intuit.control.set_metering(intuit.control.metered_calls() + 1)
    client.company_info(realm_id, granted["access_token"])  # the last call of the allowance

    error = failure_of(client.company_info, realm_id, granted["access_token"])

    assert error.failure.status == 403
    assert error.failure.codes == ("6900",)
    verdict = classify(error.failure)
    assert verdict.kind is FailureKind.METERED and verdict.issue is None
    assert classify(error.failure, after_fresh_refresh=True).kind is FailureKind.METERED
    client.refresh(granted["refresh_token"])  # OAuth endpoints are not metered


def test_userinfo(client, company, granted):
    _, user_id = company
    identity = client.userinfo(granted["access_token"])
    assert identity.user_id == user_id
    assert identity.email


def test_userinfo_with_an_expired_token(client, intuit, granted):
    intuit.control.advance_clock(HOUR + 1)
    error = failure_of(client.userinfo, granted["access_token"])
    assert error.failure.endpoint == "userinfo"
    assert error.failure.status == 401
    assert classify(error.failure).kind is FailureKind.REFRESH_AND_RETRY
    assert_no_secrets(error, granted["access_token"])


# --- hygiene and concurrency -----------------------------------------------------------------------------


def test_no_token_reaches_the_logs(client, intuit, company, caplog):
    realm_id, user_id = company
    caplog.set_level(logging.DEBUG)
    callback = consent(intuit, client, realm_id, user_id)
    granted = client.exchange_code(callback["code"], REDIRECT_URI)
    refreshed = client.refresh(granted.pair.refresh_token)
    client.company_info(realm_id, refreshed.pair.access_token)
    intuit.control.set_admin(realm_id, user_id, False)
    with pytest.raises(IntuitCallFailed):
        client.company_info(realm_id, refreshed.pair.access_token)
    secrets = [
        callback["code"],
        granted.pair.access_token,
        granted.pair.refresh_token,
        refreshed.pair.access_token,
        CLIENT_SECRET,
    ]
    for secret in secrets:
        assert secret not in caplog.text


def test_one_client_serves_many_threads(client, intuit):
    intuit.control.set_rate_limit(False)  # this test is about threads, not Intuit's per-realm limits
    companies = []
    for n in range(4):
        realm_id = intuit.control.create_company(name=f"Company {n}")
        user_id = intuit.control.add_user(realm_id, admin=True)
        companies.append((realm_id, intuit.control.issue_tokens(realm_id, user_id)))

    def work(i):
        realm_id, tokens = companies[i % len(companies)]
        if i % 3 == 0:
            return client.userinfo(tokens["access_token"]).user_id
        return client.company_info(realm_id, tokens["access_token"]).company_name

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(work, range(96)))
    assert len(results) == 96 and all(results)
