"""The simulator behaves like Intuit: lifetimes, rotation, account states, error shapes, bad input, metering.

Given a company and a grant seeded through the control API, when a client calls Intuit's endpoints over HTTP,
then it gets what Intuit would answer. Time moves with ``sim_clock``; nothing here sleeps.
"""

from __future__ import annotations

import base64
import html
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from local.intuit_sim import IntuitSimulator, SimulatorControlError
from qbo_health.clock import SimulatedClock

DAY = 86400
HUNDRED_DAYS = 100 * DAY
FIVE_YEARS_DAYS = 5 * 365
BASIC = "Basic " + base64.b64encode(b"sim-client-id:sim-client-secret").decode()
REDIRECT_URI = "http://localhost:5173/callback"
V3 = "{http://schema.intuit.com/finance/v3}"


@dataclass
class Company:
    realm_id: str
    admin_id: str


@pytest.fixture
def company(intuit: IntuitSimulator) -> Company:
    realm_id = intuit.control.create_company(name="Craig's Design and Landscaping")
    return Company(realm_id, intuit.control.add_user(realm_id, email="craig@example.com", admin=True))


def refresh(
    intuit: IntuitSimulator, refresh_token: str, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{intuit.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers={"Authorization": BASIC, "Accept": "application/json", **(headers or {})},
        timeout=5,
    )


def companyinfo(
    intuit: IntuitSimulator,
    realm_id: str,
    access_token: str | None,
    accept: str | None = "application/json",
    path_realm: str | None = None,
) -> requests.Response:
    headers = {}
    if access_token is not None:
        headers["Authorization"] = f"Bearer {access_token}"
    if accept is not None:
        headers["Accept"] = accept
    path_realm = path_realm or realm_id
    return requests.get(
        f"{intuit.base_url}/v3/company/{path_realm}/companyinfo/{path_realm}?minorversion=75",
        headers=headers,
        timeout=5,
    )


def gateway_error(response: requests.Response) -> dict[str, Any]:
    error = response.json()["fault"]["error"][0]
    if error["code"] == "3200":  # Intuit types 3200 AUTHENTICATION and adds the RFC 6750 challenge
        assert response.json()["fault"]["type"] == "AUTHENTICATION"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="Intuit", error="invalid_token"'
    else:
        assert response.json()["fault"]["type"] == "SERVICE"
    return error


def xml_error(response: requests.Response) -> tuple[str | None, ET.Element]:
    """(the Fault's type, its Error element) of an XML answer."""
    assert response.headers["Content-Type"].startswith("application/xml")
    fault = ET.fromstring(response.content).find(f"{V3}Fault")
    assert fault is not None
    error = fault.find(f"{V3}Error")
    assert error is not None
    return fault.get("type"), error


def assert_expired_token_answer(response: requests.Response) -> None:
    """Intuit's answer to an expired access token: 401, XML AuthenticationFault code 100, even when JSON was
    asked for (oauth-jsclient #91 and #135, python-quickbooks #120)."""
    assert response.status_code == 401
    fault_type, error = xml_error(response)
    assert fault_type == "AuthenticationFault"
    assert error.get("code") == "100"
    assert error.findtext(f"{V3}Message") == "General Authentication Error"
    assert error.findtext(f"{V3}Detail") == (
        "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401"
    )


def service_error(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert "time" in body
    return body["Fault"]["Error"][0] | {"type": body["Fault"]["type"]}


# -- the 100-day rolling window and the 5-year cap ---------------------------------------------------------


def test_refresh_at_99_days_works_and_renews_the_window(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id, refreshed_days_ago=99)
    assert tokens["x_refresh_token_expires_in"] == DAY
    assert tokens["expires_in"] == 0  # its access token died long ago

    answer = refresh(intuit, tokens["refresh_token"])

    assert answer.status_code == 200
    body = answer.json()
    assert body["x_refresh_token_expires_in"] == HUNDRED_DAYS
    assert body["refresh_token"] != tokens["refresh_token"]  # last issued 99 days ago: rotates
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert "x_refresh_token_hard_expires_in" not in body
    assert "id_token" not in body  # only the code exchange carries an id_token
    assert answer.headers["Cache-Control"] == "no-store"


def test_refresh_at_101_days_is_invalid_grant(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    lapsed = intuit.control.issue_tokens(company.realm_id, company.admin_id, refreshed_days_ago=101)
    assert lapsed["x_refresh_token_expires_in"] == 0
    answer = refresh(intuit, lapsed["refresh_token"])
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert not intuit.control.is_refresh_token_current(lapsed["refresh_token"])

    # The same lapse reached by waiting: fine just before the 100th day, dead at it.
    fresh = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    kept = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    sim_clock.advance(HUNDRED_DAYS - 1)
    assert refresh(intuit, kept["refresh_token"]).status_code == 200
    sim_clock.advance(1)
    assert refresh(intuit, fresh["refresh_token"]).json()["error"] == "invalid_grant"
    assert intuit.control.grant_of(fresh["refresh_token"])["refresh_expired"] is True


def test_regular_refreshes_keep_a_grant_alive_until_the_5_year_cap(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    token = intuit.control.issue_tokens(company.realm_id, company.admin_id)["refresh_token"]
    hard_header = {"x-include-refresh-token-hard-expires-in": "true"}
    elapsed_days = 0
    while elapsed_days + 90 < FIVE_YEARS_DAYS:
        sim_clock.advance(90 * DAY)
        elapsed_days += 90
        answer = refresh(intuit, token, hard_header)
        assert answer.status_code == 200, elapsed_days
        body = answer.json()
        token = body["refresh_token"]
        left = (FIVE_YEARS_DAYS - elapsed_days) * DAY
        assert body["x_refresh_token_hard_expires_in"] == left
        assert body["x_refresh_token_expires_in"] == min(HUNDRED_DAYS, left)

    sim_clock.advance((FIVE_YEARS_DAYS - elapsed_days) * DAY)
    assert refresh(intuit, token).json()["error"] == "invalid_grant"


def test_hard_cap_caps_the_rolling_window(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    tokens = intuit.control.issue_tokens(
        company.realm_id, company.admin_id, refreshed_days_ago=0, authorized_days_ago=FIVE_YEARS_DAYS - 1
    )
    assert tokens["x_refresh_token_hard_expires_in"] == DAY
    assert tokens["x_refresh_token_expires_in"] == DAY

    sim_clock.advance(DAY / 2)
    body = refresh(
        intuit, tokens["refresh_token"], {"x-include-refresh-token-hard-expires-in": "true"}
    ).json()
    assert body["x_refresh_token_expires_in"] == DAY // 2
    assert body["x_refresh_token_hard_expires_in"] == DAY // 2

    sim_clock.advance(DAY / 2)
    assert refresh(intuit, body["refresh_token"]).json()["error"] == "invalid_grant"


def test_issue_tokens_rejects_impossible_history(intuit: IntuitSimulator, company: Company) -> None:
    with pytest.raises(SimulatorControlError) as failure:
        intuit.control.issue_tokens(
            company.realm_id, company.admin_id, refreshed_days_ago=5, authorized_days_ago=1
        )
    assert failure.value.status == 400


# -- access tokens ------------------------------------------------------------------------------------------


def test_access_token_lives_3600_seconds(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    sim_clock.advance(3599)
    assert companyinfo(intuit, company.realm_id, tokens["access_token"]).status_code == 200

    sim_clock.advance(1)
    expired = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert_expired_token_answer(expired)
    assert tokens["access_token"] not in expired.text


def test_expired_access_token_in_the_3200_style(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id, refreshed_days_ago=1)
    intuit.control.set_company_fault_style(company.realm_id, expired_token="3200")

    expired = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert expired.status_code == 401
    error = gateway_error(expired)
    assert error["code"] == "3200"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert error["detail"].startswith("Token expired")


def test_old_access_token_survives_a_refresh_until_it_expires(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    sim_clock.advance(1800)
    renewed = refresh(intuit, tokens["refresh_token"]).json()

    assert renewed["access_token"] != tokens["access_token"]
    assert companyinfo(intuit, company.realm_id, tokens["access_token"]).status_code == 200
    sim_clock.advance(1800)
    assert companyinfo(intuit, company.realm_id, tokens["access_token"]).status_code == 401
    assert companyinfo(intuit, company.realm_id, renewed["access_token"]).status_code == 200


def test_backdated_grant_has_an_expired_access_token(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id, refreshed_days_ago=1)
    assert_expired_token_answer(companyinfo(intuit, company.realm_id, tokens["access_token"]))


def test_expire_access_token_control(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.expire_access_token(tokens["access_token"])
    assert companyinfo(intuit, company.realm_id, tokens["access_token"]).status_code == 401
    assert refresh(intuit, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "header", ["Basic c2ltOnNpbQ==", "Bearer", "Bearer two parts", "token-without-scheme"]
)
def test_malformed_authorization_header_is_code_100(
    intuit: IntuitSimulator, company: Company, header: str
) -> None:
    response = requests.get(
        f"{intuit.base_url}/v3/company/{company.realm_id}/companyinfo/{company.realm_id}",
        headers={"Authorization": header, "Accept": "application/json"},
        timeout=5,
    )
    assert response.status_code == 401
    error = service_error(response)
    assert error["code"] == "100"
    assert error["Message"] == "General Authentication Error"
    assert error["type"] == "AuthenticationFault"


def test_missing_unknown_or_revoked_token_is_3200(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.revoke_grant_of(tokens["access_token"])
    for token in (None, "eyJunknown", tokens["access_token"]):
        response = companyinfo(intuit, company.realm_id, token)
        assert response.status_code == 401
        assert gateway_error(response)["code"] == "3200"

    xml = companyinfo(intuit, company.realm_id, "eyJunknown", accept="application/xml")
    fault_type, error = xml_error(xml)
    assert (fault_type, error.get("code")) == ("AUTHENTICATION", "3200")
    assert xml.headers["WWW-Authenticate"] == 'Bearer realm="Intuit", error="invalid_token"'


def test_token_for_another_company_is_3100(intuit: IntuitSimulator, company: Company) -> None:
    other_realm = intuit.control.create_company()
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)

    response = companyinfo(intuit, company.realm_id, tokens["access_token"], path_realm=other_realm)

    assert response.status_code == 403
    assert gateway_error(response)["code"] == "3100"


# -- account states: admin, subscription, disconnect --------------------------------------------------------


def test_companyinfo_when_all_is_well(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    response = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert response.status_code == 200
    body = response.json()
    assert body["CompanyInfo"]["CompanyName"] == "Craig's Design and Landscaping"
    assert body["CompanyInfo"]["Id"] == "1"  # like Intuit: CompanyInfo's Id is "1", not the realm id
    assert body["CompanyInfo"]["Email"]["Address"] == "craig@example.com"
    assert body["time"].endswith("-08:00")


def test_companyinfo_in_xml(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    for accept in ("application/xml", None):  # QuickBooks answers XML unless JSON is asked for
        response = companyinfo(intuit, company.realm_id, tokens["access_token"], accept=accept)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(response.content)
        assert root.tag == f"{V3}IntuitResponse"
        assert root.findtext(f"{V3}CompanyInfo/{V3}CompanyName") == "Craig's Design and Landscaping"


def test_admin_removed_is_3100(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.set_admin(company.realm_id, company.admin_id, False)

    response = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert response.status_code == 403
    error = gateway_error(response)
    assert error["code"] == "3100"
    assert error["message"] == "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"
    # The token endpoint does not care about the role: refreshing still works, the API still refuses.
    renewed = refresh(intuit, tokens["refresh_token"]).json()
    assert companyinfo(intuit, company.realm_id, renewed["access_token"]).status_code == 403

    intuit.control.set_admin(company.realm_id, company.admin_id, True)
    assert companyinfo(intuit, company.realm_id, renewed["access_token"]).status_code == 200


def test_admin_removed_in_the_120_style(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.set_company_fault_style(company.realm_id, non_admin_code="120")
    intuit.control.set_admin(company.realm_id, company.admin_id, False)

    response = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert response.status_code == 401
    error = service_error(response)
    assert error["code"] == "120"
    assert error["Message"] == "AuthorizationFailure"
    assert "You do not have access to use QuickBooks Online" in error["Detail"]


def test_user_removed_from_company_is_refused(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.remove_user(company.realm_id, company.admin_id)
    assert gateway_error(companyinfo(intuit, company.realm_id, tokens["access_token"]))["code"] == "3100"


def test_non_admin_consent_gives_tokens_that_the_api_refuses(
    intuit: IntuitSimulator, company: Company
) -> None:
    bookkeeper = intuit.control.add_user(company.realm_id, email="books@example.com", admin=False)
    tokens = intuit.control.issue_tokens(company.realm_id, bookkeeper)
    assert companyinfo(intuit, company.realm_id, tokens["access_token"]).status_code == 403


def test_suspended_company_refusing_reads_is_6190_with_400(intuit: IntuitSimulator, company: Company) -> None:
    """The older reported style (opt-in): a lapsed company's reads are refused too. Subscription states in
    the default style are in test_simulator_subscriptions.py."""
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.set_company_fault_style(company.realm_id, lapsed_reads="refuse")
    intuit.control.suspend(company.realm_id)

    response = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert response.status_code == 400
    error = service_error(response)
    assert error["code"] == "6190"
    assert error["Message"] == "Invalid Company Status"
    assert error["type"] == "ValidationFault"
    assert error["element"] == ""

    intuit.control.reactivate(company.realm_id)
    assert companyinfo(intuit, company.realm_id, tokens["access_token"]).status_code == 200


def test_suspended_company_refusing_reads_is_6190_with_200(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.set_company_fault_style(company.realm_id, status_6190=200)
    intuit.control.set_company_fault_style(company.realm_id, lapsed_reads="refuse")  # keeps status_6190
    intuit.control.suspend(company.realm_id)

    response = companyinfo(intuit, company.realm_id, tokens["access_token"])

    assert response.status_code == 200
    assert "CompanyInfo" not in response.json()
    assert service_error(response)["code"] == "6190"


def test_6190_in_xml(intuit: IntuitSimulator) -> None:
    realm_id = intuit.control.create_company(subscription="suspended")
    intuit.control.set_company_fault_style(realm_id, lapsed_reads="refuse")
    tokens = intuit.control.issue_tokens(realm_id, intuit.control.add_user(realm_id))

    response = companyinfo(intuit, realm_id, tokens["access_token"], accept="application/xml")

    assert response.status_code == 400
    error = ET.fromstring(response.content).find(f"{V3}Fault/{V3}Error")
    assert error is not None
    assert error.get("code") == "6190"
    assert error.findtext(f"{V3}Message") == "Invalid Company Status"


def test_app_disconnected_in_quickbooks(intuit: IntuitSimulator, company: Company) -> None:
    intuit.control.register_app("other-app", "other-secret", ["https://other.example/cb"])
    ours = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    theirs = intuit.control.issue_tokens(company.realm_id, company.admin_id, client_id="other-app")

    assert intuit.control.disconnect_app(company.realm_id) == 1

    assert refresh(intuit, ours["refresh_token"]).json()["error"] == "invalid_grant"
    assert gateway_error(companyinfo(intuit, company.realm_id, ours["access_token"]))["code"] == "3200"
    status = intuit.control.grant_of(ours["refresh_token"])
    assert status["revoked"] is True
    assert status["revoked_reason"] == "disconnected_in_quickbooks"
    assert companyinfo(intuit, company.realm_id, theirs["access_token"]).status_code == 200


def test_grant_status_and_currency(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id, refreshed_days_ago=2)
    status = intuit.control.grant_of(tokens["refresh_token"])
    assert status["user_id"] == company.admin_id
    assert status["realm_id"] == company.realm_id
    assert status["revoked"] is False
    assert status["token_kind"] == "refresh"
    assert status["token_is_current"] is True
    assert "refresh_token" not in status and "access_token" not in status

    new = refresh(intuit, tokens["refresh_token"]).json()["refresh_token"]

    assert not intuit.control.is_refresh_token_current(tokens["refresh_token"])
    assert intuit.control.is_refresh_token_current(new)
    assert intuit.control.grant_of(tokens["refresh_token"])["token_is_current"] is False
    grants = intuit.control.grants_of(company.realm_id)
    assert [grant["grant_id"] for grant in grants] == [status["grant_id"]]
    assert not intuit.control.is_refresh_token_current("AB11never-issued")


def test_revoke_grant_of_control(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.revoke_grant_of(tokens["access_token"])
    assert refresh(intuit, tokens["refresh_token"]).json()["error"] == "invalid_grant"


# -- userinfo and discovery ---------------------------------------------------------------------------------


def test_userinfo(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    url = f"{intuit.base_url}/v1/openid_connect/userinfo"

    info = requests.get(url, headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5)
    assert info.status_code == 200
    assert info.json()["sub"] == company.admin_id
    assert info.json()["email"] == "craig@example.com"
    assert {"emailVerified", "givenName", "familyName"} <= set(info.json())

    accounting_only = intuit.control.issue_tokens(
        company.realm_id, company.admin_id, scope="com.intuit.quickbooks.accounting"
    )
    refused = requests.get(
        url, headers={"Authorization": f"Bearer {accounting_only['access_token']}"}, timeout=5
    )
    assert refused.status_code == 403
    assert "id_token" not in accounting_only

    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert requests.get(url, timeout=5).status_code == 401
    intuit.control.revoke_grant_of(tokens["access_token"])
    revoked = requests.get(url, headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5)
    assert revoked.status_code == 401
    assert revoked.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/openid_configuration",
        "/.well-known/openid_sandbox_configuration",
        "/.well-known/openid_configuration/",
    ],
)
def test_discovery_document(intuit: IntuitSimulator, path: str) -> None:
    doc = requests.get(intuit.base_url + path, timeout=5).json()

    assert doc["authorization_endpoint"] == f"{intuit.base_url}/connect/oauth2"
    assert doc["token_endpoint"] == f"{intuit.base_url}/oauth2/v1/tokens/bearer"
    assert doc["userinfo_endpoint"] == f"{intuit.base_url}/v1/openid_connect/userinfo"
    assert doc["revocation_endpoint"] == f"{intuit.base_url}/v2/oauth2/tokens/revoke"
    assert doc["issuer"].startswith(intuit.base_url)
    keys = requests.get(doc["jwks_uri"], timeout=5).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"


# -- the consent page ---------------------------------------------------------------------------------------


def authorization_url(intuit: IntuitSimulator, **overrides: str) -> str:
    params = {
        "client_id": "sim-client-id",
        "response_type": "code",
        "scope": "com.intuit.quickbooks.accounting openid email",
        "redirect_uri": REDIRECT_URI,
        "state": "st-123",
    } | overrides
    params = {key: value for key, value in params.items() if value != "<omit>"}
    return f"{intuit.base_url}/connect/oauth2?{urlencode(params)}"


def test_consent_page_lists_companies_and_users_escaped(intuit: IntuitSimulator) -> None:
    realm_id = intuit.control.create_company(name="<script>alert(1)</script> & Co")
    intuit.control.add_user(realm_id, email="boss@example.com", admin=True)
    intuit.control.add_user(realm_id, email="clerk@example.com", admin=False)

    page = requests.get(authorization_url(intuit, state='"><img src=x>'), timeout=5)

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<script>alert(1)</script>" not in page.text
    assert html.escape("<script>alert(1)</script> & Co") in page.text
    assert "<img src=x>" not in page.text
    assert 'action="/connect/oauth2/decision"' in page.text
    assert '<select name="realm_id" id="company">' in page.text
    assert '<select name="user_id" id="user">' in page.text
    assert 'id="connect"' in page.text and 'id="cancel"' in page.text
    assert "boss@example.com (Company admin)" in page.text
    assert "clerk@example.com (Standard user)" in page.text


def test_consent_connect_redirects_with_code_state_and_realm(
    intuit: IntuitSimulator, company: Company
) -> None:
    callback = intuit.control.consent(authorization_url(intuit), company.realm_id, company.admin_id)

    parts = urlsplit(callback)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    query = parse_qs(parts.query)
    assert set(query) == {"code", "state", "realmId"}
    assert query["state"] == ["st-123"] and query["realmId"] == [company.realm_id]


def test_consent_cancel_redirects_with_access_denied(intuit: IntuitSimulator, company: Company) -> None:
    callback = intuit.control.consent(authorization_url(intuit), decision="cancel")

    query = parse_qs(urlsplit(callback).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["st-123"]
    assert query["error_description"]
    assert "code" not in query


def test_identity_only_consent_has_no_realm(intuit: IntuitSimulator, company: Company) -> None:
    callback = intuit.control.consent(authorization_url(intuit, scope="openid email"))
    assert "realmId" not in parse_qs(urlsplit(callback).query)


def test_consent_for_a_user_outside_the_company_is_refused(intuit: IntuitSimulator, company: Company) -> None:
    elsewhere = intuit.control.create_company()
    stranger = intuit.control.add_user(elsewhere)

    with pytest.raises(SimulatorControlError) as failure:
        intuit.control.consent(authorization_url(intuit), company.realm_id, stranger)
    assert failure.value.status == 400
    assert "does not belong" in failure.value.body


def test_redirect_uris_of_registered_apps_must_match_exactly(
    intuit: IntuitSimulator, company: Company
) -> None:
    intuit.control.register_app("prod-app", "prod-secret", ["https://app.example.com/qbo/callback"])

    ok = authorization_url(intuit, client_id="prod-app", redirect_uri="https://app.example.com/qbo/callback")
    assert requests.get(ok, timeout=5).status_code == 200
    for uri in ("https://app.example.com/qbo/callback/", "http://127.0.0.1:8000/cb"):
        page = requests.get(authorization_url(intuit, client_id="prod-app", redirect_uri=uri), timeout=5)
        assert page.status_code == 400
    # The default app takes any loopback URI with a port, nothing else.
    assert (
        requests.get(authorization_url(intuit, redirect_uri="http://127.0.0.1:1/x"), timeout=5).status_code
        == 200
    )
    assert (
        requests.get(authorization_url(intuit, redirect_uri="https://evil.example/"), timeout=5).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "<omit>"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "<omit>"}, "invalid_scope"),
        ({"scope": "com.intuit.quickbooks.everything"}, "invalid_scope"),
    ],
)
def test_authorize_errors_are_redirected_with_state(
    intuit: IntuitSimulator, overrides: dict[str, str], error: str
) -> None:
    response = requests.get(authorization_url(intuit, **overrides), allow_redirects=False, timeout=5)

    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == [error]
    assert query["state"] == ["st-123"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "unknown-client"},
        {"client_id": "<omit>"},
        {"redirect_uri": "https://attacker.example/steal"},
        {"redirect_uri": "<omit>"},
    ],
)
def test_authorize_never_redirects_to_an_unverified_uri(
    intuit: IntuitSimulator, overrides: dict[str, str]
) -> None:
    response = requests.get(authorization_url(intuit, **overrides), allow_redirects=False, timeout=5)

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'id="error"' in response.text


def test_decision_needs_a_valid_request(intuit: IntuitSimulator, company: Company) -> None:
    url = f"{intuit.base_url}/connect/oauth2/decision"
    forged = {
        "client_id": "sim-client-id",
        "redirect_uri": "https://attacker.example/",
        "response_type": "code",
        "scope": "com.intuit.quickbooks.accounting",
        "realm_id": company.realm_id,
        "user_id": company.admin_id,
        "decision": "connect",
    }
    assert requests.post(url, data=forged, allow_redirects=False, timeout=5).status_code == 400
    undecided = forged | {"redirect_uri": REDIRECT_URI, "decision": "maybe"}
    assert requests.post(url, data=undecided, allow_redirects=False, timeout=5).status_code == 400


# -- bad input at the token and revoke endpoints --------------------------------------------------------------


def token_call(intuit: IntuitSimulator, **kwargs: Any) -> requests.Response:
    return requests.post(f"{intuit.base_url}/oauth2/v1/tokens/bearer", timeout=5, **kwargs)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"sim-client-id:wrong").decode(),
        "Basic " + base64.b64encode(b"nobody:sim-client-secret").decode(),
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic !!!not-base64!!!",
        "Bearer abc",
    ],
)
def test_bad_client_authentication_is_401_invalid_client(
    intuit: IntuitSimulator, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = token_call(intuit, data={"grant_type": "refresh_token", "refresh_token": "x"}, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"data": {"grant_type": "password", "username": "u"}}, "unsupported_grant_type"),
        ({"data": {"refresh_token": "x"}}, "invalid_request"),
        ({"data": {"grant_type": "refresh_token"}}, "invalid_request"),
        ({"data": {"grant_type": "authorization_code", "code": "x"}}, "invalid_request"),
        ({"json": {"grant_type": "refresh_token", "refresh_token": "x"}}, "invalid_request"),
        ({"data": "grant_type=refresh_token&refresh_token=a&refresh_token=b"}, "invalid_request"),
        ({"data": b"\xff\xfe%%%"}, "invalid_request"),
        ({"data": {"grant_type": "refresh_token", "refresh_token": "AB11unknown"}}, "invalid_grant"),
        (
            {"data": {"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT_URI}},
            "invalid_grant",
        ),
    ],
)
def test_bad_token_requests_get_rfc6749_errors(
    intuit: IntuitSimulator, kwargs: dict[str, Any], error: str
) -> None:
    headers = {"Authorization": BASIC}
    if isinstance(kwargs.get("data"), str | bytes):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = token_call(intuit, headers=headers, **kwargs)

    assert response.status_code == 400
    assert response.json()["error"] == error


def test_refresh_token_of_another_app_is_invalid_grant(intuit: IntuitSimulator, company: Company) -> None:
    intuit.control.register_app("other-app", "other-secret", [])
    theirs = intuit.control.issue_tokens(company.realm_id, company.admin_id, client_id="other-app")

    answer = refresh(intuit, theirs["refresh_token"])

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert intuit.control.is_refresh_token_current(theirs["refresh_token"])


def test_invalid_grant_without_a_description_as_a_style(
    intuit: IntuitSimulator, company: Company, sim_clock: SimulatedClock
) -> None:
    """oauth-jsclient #77: Intuit's invalid_grant sometimes has no error_description."""
    assert set(refresh(intuit, "AB11unknown").json()) == {"error", "error_description"}

    intuit.control.set_oauth_style(invalid_grant_description=False)
    lapsed = intuit.control.issue_tokens(company.realm_id, company.admin_id, refreshed_days_ago=101)
    for value in ("AB11unknown", lapsed["refresh_token"]):
        answer = refresh(intuit, value)
        assert answer.status_code == 400
        assert answer.json() == {"error": "invalid_grant"}
    # Other errors keep their description; the style ends with a reset.
    assert (
        "error_description"
        in token_call(intuit, data={"grant_type": "refresh_token"}, headers={"Authorization": BASIC}).json()
    )
    intuit.control.reset()
    assert "error_description" in refresh(intuit, "AB11unknown").json()


def test_wrong_method_on_token_endpoint(intuit: IntuitSimulator) -> None:
    response = requests.get(f"{intuit.base_url}/oauth2/v1/tokens/bearer", timeout=5)
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"


def revoke_call(intuit: IntuitSimulator, body: bytes, authorization: str | None = BASIC) -> requests.Response:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    return requests.post(f"{intuit.base_url}/v2/oauth2/tokens/revoke", data=body, headers=headers, timeout=5)


@pytest.mark.parametrize("body", [b"", b"{not json", b"[]", b"{}", b'{"token": ""}', b'{"token": 7}'])
def test_revoke_without_a_token_is_invalid_request(intuit: IntuitSimulator, body: bytes) -> None:
    response = revoke_call(intuit, body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_revoke_needs_client_authentication(intuit: IntuitSimulator) -> None:
    response = revoke_call(intuit, b'{"token": "x"}', authorization=None)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_revoke_of_an_unknown_or_revoked_token_is_400_with_an_empty_body(
    intuit: IntuitSimulator, company: Company
) -> None:
    """oauth-jsclient #18 and #71: Intuit answers a bare 400, not RFC 7009's 200."""
    unknown = revoke_call(intuit, b'{"token": "AB11never-issued"}')
    assert (unknown.status_code, unknown.content) == (400, b"")

    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    first = revoke_call(intuit, f'{{"token": "{tokens["refresh_token"]}"}}'.encode())
    assert (first.status_code, first.content) == (200, b"")
    for value in (tokens["refresh_token"], tokens["access_token"]):
        again = revoke_call(intuit, f'{{"token": "{value}"}}'.encode())
        assert (again.status_code, again.content) == (400, b"")
        assert again.headers["intuit_tid"]

    disconnected = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.disconnect_app(company.realm_id)  # revoked inside QuickBooks
    late = revoke_call(intuit, f'{{"token": "{disconnected["refresh_token"]}"}}'.encode())
    assert (late.status_code, late.content) == (400, b"")


def test_revoke_of_another_apps_token_is_refused(intuit: IntuitSimulator, company: Company) -> None:
    intuit.control.register_app("other-app", "other-secret", [])
    theirs = intuit.control.issue_tokens(company.realm_id, company.admin_id, client_id="other-app")

    response = revoke_call(intuit, f'{{"token": "{theirs["refresh_token"]}"}}'.encode())

    assert response.status_code == 400
    assert intuit.control.grant_of(theirs["refresh_token"])["revoked"] is False


def test_unknown_paths(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    nowhere = requests.get(f"{intuit.base_url}/no/such/thing", timeout=5)
    assert nowhere.status_code == 404
    assert nowhere.json()["error"] == "invalid_request"

    entity = requests.get(
        f"{intuit.base_url}/v3/company/{company.realm_id}/invoice/1",
        headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"},
        timeout=5,
    )
    assert entity.status_code == 400
    assert service_error(entity)["Message"] == "Unsupported Operation"

    wrong_id = requests.get(
        f"{intuit.base_url}/v3/company/{company.realm_id}/companyinfo/1",
        headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"},
        timeout=5,
    )
    assert service_error(wrong_id)["code"] == "610"


def test_every_response_carries_intuit_tid_and_no_trace(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    base = intuit.base_url
    answers = [
        requests.get(f"{base}/.well-known/openid_configuration", timeout=5),
        requests.get(authorization_url(intuit), timeout=5),
        requests.get(authorization_url(intuit, client_id="x"), timeout=5),
        requests.get(authorization_url(intuit, scope="<omit>"), allow_redirects=False, timeout=5),
        refresh(intuit, tokens["refresh_token"]),
        refresh(intuit, "nope"),
        token_call(intuit, data={"grant_type": "refresh_token"}),
        revoke_call(intuit, b"{oops"),
        companyinfo(intuit, company.realm_id, tokens["access_token"]),
        companyinfo(intuit, company.realm_id, "bad"),
        requests.get(f"{base}/v1/openid_connect/userinfo", timeout=5),
        requests.get(f"{base}/nope", timeout=5),
        requests.post(f"{base}/_sim/companies", data=b"{not json", timeout=5),
        requests.get(f"{base}/_sim/stats", timeout=5),
    ]
    for answer in answers:
        assert answer.headers.get("intuit_tid", "").startswith("1-"), answer.url
        assert answer.status_code < 500, answer.url
        assert "Traceback" not in answer.text
    assert len({answer.headers["intuit_tid"] for answer in answers}) == len(answers)


# -- metering, control API, reset -------------------------------------------------------------------------


def test_companyinfo_calls_are_metered_per_realm(intuit: IntuitSimulator, company: Company) -> None:
    other = intuit.control.create_company()
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.reset_stats()

    companyinfo(intuit, company.realm_id, tokens["access_token"])
    companyinfo(intuit, company.realm_id, tokens["access_token"])
    companyinfo(intuit, company.realm_id, "bad-token")  # refused, still reached the company's API
    companyinfo(intuit, other, tokens["access_token"])
    refresh(intuit, tokens["refresh_token"])

    stats = intuit.control.stats()
    assert stats["metered"] == {company.realm_id: 3, other: 1}
    assert stats["calls"]["api"] == 4
    assert stats["calls"]["token"] == 1
    assert stats["refresh_grants"] == 1
    intuit.control.reset_stats()
    assert intuit.control.stats()["metered"] == {}


def test_control_errors(intuit: IntuitSimulator, company: Company) -> None:
    with pytest.raises(SimulatorControlError) as unknown_realm:
        intuit.control.add_user("no-such-realm")
    assert unknown_realm.value.status == 404
    with pytest.raises(SimulatorControlError) as duplicate:
        intuit.control.create_company(realm_id=company.realm_id)
    assert duplicate.value.status == 409
    with pytest.raises(SimulatorControlError):
        intuit.control.set_faults(rate=2.0)
    with pytest.raises(SimulatorControlError):
        intuit.control.set_faults(rate=0.1, kinds=["meteor"])
    with pytest.raises(SimulatorControlError):
        intuit.control.set_company_fault_style(company.realm_id, non_admin_code="999")  # type: ignore[arg-type]
    with pytest.raises(SimulatorControlError):
        intuit.control.grant_status("neither-token-nor-realm")


def test_clock_control_moves_the_shared_clock(intuit: IntuitSimulator, sim_clock: SimulatedClock) -> None:
    before = sim_clock.now()
    assert intuit.control.clock() == before
    after = intuit.control.advance_clock(3600)
    assert (after - before).total_seconds() == 3600
    assert sim_clock.now() == after


def test_reset_wipes_everything_but_the_default_app(intuit: IntuitSimulator, company: Company) -> None:
    tokens = intuit.control.issue_tokens(company.realm_id, company.admin_id)
    intuit.control.set_latency(5)

    intuit.control.reset()

    assert intuit.control.companies() == []
    assert intuit.control.stats()["calls"] == {}
    assert refresh(intuit, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert requests.get(authorization_url(intuit), timeout=5).status_code == 200


def test_malformed_request_lines_are_not_echoed_into_logs(
    intuit: IntuitSimulator, company: Company, caplog: pytest.LogCaptureFixture
) -> None:
    token = intuit.control.issue_tokens(company.realm_id, company.admin_id)["refresh_token"]
    host, port = urlsplit(intuit.base_url).hostname, urlsplit(intuit.base_url).port
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.sendall(f"POST /oauth2/v1/tokens/bearer?refresh_token={token} HTTP/1.1 extra\r\n\r\n".encode())
        answer = raw.recv(4096)

    assert b"400" in answer
    assert token.encode() not in answer
    assert token not in caplog.text


def test_oversized_body_is_refused_cleanly(intuit: IntuitSimulator) -> None:
    response = requests.post(
        f"{intuit.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": "x" * (2 * 1024 * 1024)},
        headers={"Authorization": BASIC},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
