"""Intuit's own client (intuit-oauth / intuitlib) against the simulator.

If intuitlib can run the whole OAuth life cycle against the simulator (authorize, exchange, refresh with
rotation, hard expiry, revoke) the simulator speaks Intuit's protocol, not just our reading of it.

How intuitlib is pointed at the simulator: ``AuthClient(..., environment=...)`` treats any value other than
``sandbox``/``production`` as the URL of a discovery document and reads every endpoint (authorize, token,
revoke, userinfo, issuer, jwks) from it. The simulator serves that document with absolute URLs on its own
base URL, so passing ``intuit.discovery_url`` is all it takes: no attribute patching.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from local.intuit_sim import IntuitSimulator
from qbo_health.clock import SimulatedClock

REDIRECT_URI = "http://127.0.0.1:8999/qbo/callback"
SCOPES = [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL, Scopes.PROFILE]
HUNDRED_DAYS = 100 * 86400
FIVE_YEARS = 5 * 365 * 86400
V3 = "{http://schema.intuit.com/finance/v3}"


@pytest.fixture
def company(intuit: IntuitSimulator) -> tuple[str, str]:
    realm_id = intuit.control.create_company(name="Contract Co")
    user_id = intuit.control.add_user(realm_id, email="owner@contract.example", admin=True)
    return realm_id, user_id


def make_client(simulator: IntuitSimulator, secret: str = "sim-client-secret") -> AuthClient:
    return AuthClient("sim-client-id", secret, REDIRECT_URI, simulator.discovery_url)


def authorize(simulator: IntuitSimulator, client: AuthClient, realm_id: str, user_id: str) -> tuple[str, str]:
    """Plays the browser: opens intuitlib's authorization URL, consents, reads the callback query."""
    url = client.get_authorization_url(SCOPES, state_token="contract-state")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    assert 'id="connect"' in page.text
    callback = simulator.control.consent(url, realm_id=realm_id, user_id=user_id)
    assert callback.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == ["contract-state"]
    assert query["realmId"] == [realm_id]
    return query["code"][0], query["realmId"][0]


def companyinfo_status(simulator: IntuitSimulator, realm_id: str, access_token: str) -> int:
    response = requests.get(
        f"{simulator.base_url}/v3/company/{realm_id}/companyinfo/{realm_id}?minorversion=75",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=5,
    )
    return response.status_code


def connected_client(
    simulator: IntuitSimulator, company: tuple[str, str], hard: bool = False
) -> tuple[AuthClient, str]:
    client = make_client(simulator)
    client.include_refresh_token_hard_expires_in = hard
    code, realm_id = authorize(simulator, client, *company)
    client.get_bearer_token(code, realm_id=realm_id)
    return client, code


def test_discovery_points_intuitlib_at_the_simulator(intuit: IntuitSimulator) -> None:
    client = make_client(intuit)

    for endpoint in (
        client.auth_endpoint,
        client.token_endpoint,
        client.revoke_endpoint,
        client.user_info_url,
    ):
        assert endpoint.startswith(intuit.base_url + "/")
    assert client.token_endpoint == f"{intuit.base_url}/oauth2/v1/tokens/bearer"
    assert client.revoke_endpoint == f"{intuit.base_url}/v2/oauth2/tokens/revoke"


def test_code_exchange_gives_working_tokens(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client, _ = connected_client(intuit, company)

    assert client.realm_id == company[0]
    assert client.expires_in == 3600
    assert client.x_refresh_token_expires_in == HUNDRED_DAYS
    assert client.x_refresh_token_hard_expires_in is None  # not asked for
    assert client.access_token and client.refresh_token
    assert companyinfo_status(intuit, company[0], client.access_token) == 200
    assert intuit.control.is_refresh_token_current(client.refresh_token)
    stats = intuit.control.stats()
    assert stats["code_grants"] == 1
    assert "token" in stats["calls"]


def test_id_token_is_signed_rs256_with_the_published_key(
    intuit: IntuitSimulator, company: tuple[str, str]
) -> None:
    client = make_client(intuit)
    raw: list[dict] = []
    client.hooks["response"].append(
        lambda response, *args, **kwargs: (
            raw.append(response.json()) if "tokens/bearer" in response.url else None
        )
    )
    code, realm_id = authorize(intuit, client, *company)
    client.get_bearer_token(code, realm_id=realm_id)

    id_token = raw[0]["id_token"]
    header = jwt.get_unverified_header(id_token)
    jwks = requests.get(client.jwks_uri, timeout=5).json()
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]].key
    # Expiry is on the simulated clock, so verify it against that clock, not the wall clock.
    claims = jwt.decode(
        id_token,
        key,
        algorithms=["RS256"],
        audience="sim-client-id",
        issuer=client.issuer_uri,
        options={"verify_exp": False, "verify_iat": False},
    )
    now = intuit.clock.now().timestamp()
    assert claims["sub"] == company[1]
    assert claims["realmid"] == realm_id
    assert claims["email"] == "owner@contract.example"
    assert claims["aud"] == ["sim-client-id"]
    assert claims["iat"] <= now < claims["exp"]


def test_intuitlib_accepts_the_id_token_when_the_clock_is_wall_time() -> None:
    # intuitlib checks id_token expiry against the wall clock, so only a simulator whose clock reads wall time
    # gets its id_token accepted; under the shared simulated clock intuitlib silently drops it (no error).
    with IntuitSimulator(SimulatedClock(datetime.now(UTC))) as simulator:
        realm_id = simulator.control.create_company()
        user_id = simulator.control.add_user(realm_id)
        client = make_client(simulator)
        code, realm = authorize(simulator, client, realm_id, user_id)

        client.get_bearer_token(code, realm_id=realm)

        assert client.id_token is not None


def test_refresh_keeps_the_value_within_24h_and_rotates_after(
    intuit: IntuitSimulator, company: tuple[str, str], sim_clock: SimulatedClock
) -> None:
    client, _ = connected_client(intuit, company)
    first_refresh, first_access = client.refresh_token, client.access_token

    sim_clock.advance(3600 * 2)
    client.refresh()
    assert client.refresh_token == first_refresh  # inside 24 h: same value
    assert client.access_token != first_access  # always a new access token
    assert client.expires_in == 3600

    sim_clock.advance(3600 * 25)
    client.refresh()
    rotated = client.refresh_token
    assert rotated != first_refresh
    assert client.x_refresh_token_expires_in == HUNDRED_DAYS
    assert not intuit.control.is_refresh_token_current(first_refresh)

    with pytest.raises(AuthClientError) as failure:
        client.refresh(refresh_token=first_refresh)
    assert failure.value.status_code == 400
    assert failure.value.response.json()["error"] == "invalid_grant"
    assert failure.value.intuit_tid
    # The failed attempt with the dead value does not hurt the live one.
    client.refresh(refresh_token=rotated)
    assert companyinfo_status(intuit, company[0], client.access_token) == 200


def test_hard_expiry_field_when_asked_for(
    intuit: IntuitSimulator, company: tuple[str, str], sim_clock: SimulatedClock
) -> None:
    client, _ = connected_client(intuit, company, hard=True)
    assert client.x_refresh_token_hard_expires_in == FIVE_YEARS

    sim_clock.advance(86400 * 30)
    client.refresh()
    assert client.x_refresh_token_hard_expires_in == FIVE_YEARS - 86400 * 30
    assert client.x_refresh_token_expires_in == HUNDRED_DAYS

    plain = make_client(intuit)
    plain.refresh(refresh_token=client.refresh_token)
    assert plain.x_refresh_token_hard_expires_in is None


def test_revoke_kills_the_grant(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client, _ = connected_client(intuit, company)
    access = client.access_token

    assert client.revoke() is True

    with pytest.raises(AuthClientError) as failure:
        client.refresh()
    assert failure.value.response.json()["error"] == "invalid_grant"
    assert companyinfo_status(intuit, company[0], access) == 401
    assert intuit.control.grant_of(access)["revoked"] is True


def test_revoke_by_access_token(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client, _ = connected_client(intuit, company)

    client.revoke(token=client.access_token)

    with pytest.raises(AuthClientError):
        client.refresh()


def test_second_exchange_of_a_code_fails_and_revokes_the_first_tokens(
    intuit: IntuitSimulator, company: tuple[str, str]
) -> None:
    client, code = connected_client(intuit, company)
    assert companyinfo_status(intuit, company[0], client.access_token) == 200

    replay = make_client(intuit)
    with pytest.raises(AuthClientError) as failure:
        replay.get_bearer_token(code, realm_id=company[0])
    assert failure.value.status_code == 400
    assert failure.value.response.json()["error"] == "invalid_grant"

    assert companyinfo_status(intuit, company[0], client.access_token) == 401
    with pytest.raises(AuthClientError):
        client.refresh()
    assert intuit.control.grant_of(client.access_token)["revoked_reason"] == "authorization_code_reused"


def test_code_expires_after_ten_minutes(
    intuit: IntuitSimulator, company: tuple[str, str], sim_clock: SimulatedClock
) -> None:
    client = make_client(intuit)
    code, realm_id = authorize(intuit, client, *company)
    sim_clock.advance(601)

    with pytest.raises(AuthClientError) as failure:
        client.get_bearer_token(code, realm_id=realm_id)
    assert failure.value.response.json()["error"] == "invalid_grant"


def test_exchange_needs_the_same_redirect_uri(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client = make_client(intuit)
    code, realm_id = authorize(intuit, client, *company)
    other = AuthClient(
        "sim-client-id", "sim-client-secret", "http://127.0.0.1:8999/other", intuit.discovery_url
    )

    with pytest.raises(AuthClientError) as failure:
        other.get_bearer_token(code, realm_id=realm_id)
    assert failure.value.response.json()["error"] == "invalid_grant"
    # A mismatch does not consume the code: the right client can still use it.
    client.get_bearer_token(code, realm_id=realm_id)
    assert client.access_token


def test_wrong_client_secret_is_invalid_client(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client, _ = connected_client(intuit, company)
    impostor = make_client(intuit, secret="not-the-secret")

    with pytest.raises(AuthClientError) as failure:
        impostor.refresh(refresh_token=client.refresh_token)
    assert failure.value.status_code == 401
    assert failure.value.response.json()["error"] == "invalid_client"


def test_user_info(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client, _ = connected_client(intuit, company)

    info = client.get_user_info().json()

    assert info["sub"] == company[1]
    assert info["email"] == "owner@contract.example"
    assert info["emailVerified"] is True
    assert {"givenName", "familyName"} <= set(info)


# -- Intuit's reported fault shapes, met by a client holding intuitlib's tokens ---------------------------------


def api_get(simulator: IntuitSimulator, realm_id: str, access_token: str | None) -> requests.Response:
    return requests.get(
        f"{simulator.base_url}/v3/company/{realm_id}/companyinfo/{realm_id}?minorversion=75",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=30,
    )


def test_revoking_twice_is_a_bare_400(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    """oauth-jsclient #18 and #71: an already revoked (or unknown) token gets 400 with an empty body."""
    client, _ = connected_client(intuit, company)
    refresh_token = client.refresh_token
    assert client.revoke() is True

    for token in (refresh_token, "AB11never-issued"):
        with pytest.raises(AuthClientError) as failure:
            client.revoke(token=token)
        assert failure.value.status_code == 400
        assert failure.value.content == b""
        assert failure.value.intuit_tid


def test_invalid_grant_without_a_description(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    """oauth-jsclient #77: a client must not depend on error_description."""
    client, _ = connected_client(intuit, company)
    client.revoke()
    intuit.control.set_oauth_style(invalid_grant_description=False)

    with pytest.raises(AuthClientError) as failure:
        client.refresh()
    assert failure.value.status_code == 400
    assert failure.value.response.json() == {"error": "invalid_grant"}


def test_an_expired_access_token_is_xml_code_100_and_a_refresh_cures_it(
    intuit: IntuitSimulator, company: tuple[str, str], sim_clock: SimulatedClock
) -> None:
    client, _ = connected_client(intuit, company)
    sim_clock.advance(3600)

    expired = api_get(intuit, company[0], client.access_token)

    assert expired.status_code == 401
    assert expired.headers["Content-Type"].startswith("application/xml")  # although JSON was asked for
    root = ET.fromstring(expired.content)
    fault = root.find(f"{V3}Fault")
    assert fault is not None and fault.get("type") == "AuthenticationFault"
    error = fault.find(f"{V3}Error")
    assert error is not None and error.get("code") == "100"
    client.refresh()
    assert api_get(intuit, company[0], client.access_token).status_code == 200


def test_a_revoked_access_token_is_3200_with_a_bearer_challenge(
    intuit: IntuitSimulator, company: tuple[str, str]
) -> None:
    client, _ = connected_client(intuit, company)
    access = client.access_token
    client.revoke()

    refused = api_get(intuit, company[0], access)

    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="Intuit", error="invalid_token"'
    fault = refused.json()["fault"]
    assert fault["type"] == "AUTHENTICATION"
    assert fault["error"][0]["code"] == "3200"


def test_a_suspended_company_is_read_only(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    client, _ = connected_client(intuit, company)
    intuit.control.suspend(company[0])

    read = api_get(intuit, company[0], client.access_token)
    write = requests.post(
        f"{intuit.base_url}/v3/company/{company[0]}/customer",
        json={"DisplayName": "Contract Customer"},
        headers={"Authorization": f"Bearer {client.access_token}", "Accept": "application/json"},
        timeout=5,
    )

    assert read.status_code == 200
    status = {item["Name"]: item["Value"] for item in read.json()["CompanyInfo"]["NameValue"]}
    assert status["SubscriptionStatus"] == "SUSPENDED"
    assert write.status_code == 400
    assert write.json()["Fault"]["Error"][0]["code"] == "6190"


def test_oauth_calls_are_never_metered(intuit: IntuitSimulator, company: tuple[str, str]) -> None:
    intuit.control.set_metering(0)  # no data read allowed at all

    client, _ = connected_client(intuit, company)
    client.refresh()
    assert client.get_user_info().status_code == 200

    refused = api_get(intuit, company[0], client.access_token)
    assert refused.status_code == 403
    assert refused.json()["Fault"]["Error"][0]["code"] == "6900"
    assert client.revoke() is True
    assert intuit.control.metered_calls() == 0


def test_the_eleventh_call_in_flight_to_one_company_is_throttled(
    intuit: IntuitSimulator, company: tuple[str, str]
) -> None:
    """Intuit blog 2016-08-08: at most 10 concurrent requests per app and company, the 11th gets 429."""
    client, _ = connected_client(intuit, company)
    intuit.control.hold_api_calls()
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            slow = [pool.submit(api_get, intuit, company[0], client.access_token) for _ in range(10)]
            deadline = time.monotonic() + 20  # a bound on waiting only; the outcome never depends on it
            while intuit.control.api_calls_in_flight(company[0]) < 10:
                assert time.monotonic() < deadline, "the held calls never arrived"
                time.sleep(0.01)

            eleventh = api_get(intuit, company[0], client.access_token)

            intuit.control.release_api_calls()
            assert [future.result().status_code for future in slow] == [200] * 10
    finally:
        intuit.control.release_api_calls()
    assert eleventh.status_code == 429
    error = ET.fromstring(eleventh.content).find(f"{V3}Fault/{V3}Error")
    assert error is not None and error.get("code") == "3001"
