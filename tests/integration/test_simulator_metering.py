"""Metering: Intuit counts an app's data reads ("CorePlus" calls; CompanyInfo is one) per calendar month.

On the free Builder tier an app may make 500,000 a month; past it, its calls are blocked until the next month.
Writes and OAuth endpoints are not metered. The month follows the simulated clock (UTC). The refusal's wire
shape is the simulator's choice (Intuit documents none): HTTP 403, Fault type SERVICE, code 6900,
"MeteredLimitExceeded".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
import requests

from local.intuit_sim import IntuitSimulator, SimulatorControlError
from local.intuit_sim.state import BUILDER_TIER_ALLOWANCE
from qbo_health.clock import SimulatedClock

V3 = "{http://schema.intuit.com/finance/v3}"


@pytest.fixture
def tokens(intuit: IntuitSimulator) -> dict[str, str]:
    realm_id = intuit.control.create_company()
    user_id = intuit.control.add_user(realm_id)
    return {"realm_id": realm_id, **intuit.control.issue_tokens(realm_id, user_id)}


def companyinfo(
    intuit: IntuitSimulator, tokens: dict[str, str], accept: str = "application/json"
) -> requests.Response:
    realm_id = tokens["realm_id"]
    return requests.get(
        f"{intuit.base_url}/v3/company/{realm_id}/companyinfo/{realm_id}?minorversion=75",
        headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": accept},
        timeout=5,
    )


def create_customer(intuit: IntuitSimulator, tokens: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{intuit.base_url}/v3/company/{tokens['realm_id']}/customer",
        json={"DisplayName": "Metered Co"},
        headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"},
        timeout=5,
    )


def refresh(intuit: IntuitSimulator, refresh_token: str) -> requests.Response:
    return requests.post(
        f"{intuit.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=("sim-client-id", "sim-client-secret"),
        headers={"Accept": "application/json"},
        timeout=5,
    )


def month_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def assert_metered_refusal(response: requests.Response) -> None:
    assert response.status_code == 403
    body = response.json()
    assert body["Fault"]["type"] == "SERVICE"
    error = body["Fault"]["Error"][0]
    assert (error["code"], error["Message"]) == ("6900", "MeteredLimitExceeded")
    assert body["time"].endswith("-08:00")
    assert response.headers["intuit_tid"]


def test_unlimited_by_default_and_counted(
    intuit: IntuitSimulator, tokens: dict[str, str], sim_clock: SimulatedClock
) -> None:
    assert intuit.control.metering() == {
        "client_id": "sim-client-id",
        "month": month_of(sim_clock.now()),
        "calls": 0,
        "allowance": None,
    }
    assert {companyinfo(intuit, tokens).status_code for _ in range(5)} == {200}
    assert intuit.control.metered_calls() == 5
    assert intuit.control.metered_calls(month_of(sim_clock.now())) == 5


def test_only_data_reads_are_metered(intuit: IntuitSimulator, tokens: dict[str, str]) -> None:
    companyinfo(intuit, tokens)
    create_customer(intuit, tokens)  # a write
    refresh(intuit, tokens["refresh_token"])  # OAuth
    requests.get(
        f"{intuit.base_url}/v1/openid_connect/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    )
    requests.post(
        f"{intuit.base_url}/v2/oauth2/tokens/revoke",
        json={"token": "AB11never-issued"},
        auth=("sim-client-id", "sim-client-secret"),
        timeout=5,
    )
    companyinfo(intuit, {**tokens, "access_token": "eyJunknown"})  # no app known: nothing to meter

    assert intuit.control.metered_calls() == 1


def test_past_the_allowance_metered_calls_are_refused_until_next_month(
    intuit: IntuitSimulator, tokens: dict[str, str], sim_clock: SimulatedClock
) -> None:
    intuit.control.set_metering(3)
    assert [companyinfo(intuit, tokens).status_code for _ in range(3)] == [200] * 3

    assert_metered_refusal(companyinfo(intuit, tokens))
    xml = companyinfo(intuit, tokens, accept="application/xml")
    assert xml.status_code == 403
    fault = ET.fromstring(xml.content).find(f"{V3}Fault")
    assert fault is not None and fault.get("type") == "SERVICE"
    error = fault.find(f"{V3}Error")
    assert error is not None and error.get("code") == "6900"
    assert intuit.control.metered_calls() == 3  # refusals are not counted
    # Not metered, not blocked: writes and OAuth.
    assert create_customer(intuit, tokens).status_code == 200
    assert refresh(intuit, tokens["refresh_token"]).status_code == 200

    # The first instant of the next calendar month (UTC) opens a new allowance.
    now = sim_clock.now()
    first_of_next = (
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)
    ).replace(day=1)
    sim_clock.advance(first_of_next - now - timedelta(seconds=1))
    live = {**tokens, **refresh(intuit, tokens["refresh_token"]).json()}
    assert_metered_refusal(companyinfo(intuit, live))  # one second before: still blocked
    sim_clock.advance(1)
    assert companyinfo(intuit, live).status_code == 200
    assert intuit.control.metered_calls() == 1
    assert intuit.control.metered_calls(month_of(now)) == 3


def test_the_allowance_is_per_app_across_its_companies(
    intuit: IntuitSimulator, tokens: dict[str, str]
) -> None:
    other_realm = intuit.control.create_company()
    other_user = intuit.control.add_user(other_realm)
    ours_elsewhere = {"realm_id": other_realm, **intuit.control.issue_tokens(other_realm, other_user)}
    intuit.control.register_app("other-app", "other-secret", [])
    theirs = {
        "realm_id": tokens["realm_id"],
        **intuit.control.issue_tokens(
            tokens["realm_id"], intuit.control.add_user(tokens["realm_id"]), "other-app"
        ),
    }
    intuit.control.set_metering(2)

    assert companyinfo(intuit, tokens).status_code == 200
    assert companyinfo(intuit, ours_elsewhere).status_code == 200
    assert_metered_refusal(companyinfo(intuit, tokens))  # the app's allowance, whichever company
    assert_metered_refusal(companyinfo(intuit, ours_elsewhere))
    assert companyinfo(intuit, theirs).status_code == 200  # another app has its own
    assert intuit.control.metered_calls(client_id="other-app") == 1

    intuit.control.set_metering(None)
    assert companyinfo(intuit, tokens).status_code == 200


def test_refused_company_reads_still_count(intuit: IntuitSimulator, tokens: dict[str, str]) -> None:
    """Assumption, on the strict side: a read that reached the company's service counts even when the
    service refused it (non-admin, lapsed company in the refuse style). Throttled calls do not."""
    user_id = intuit.control.grant_of(tokens["refresh_token"])["user_id"]
    intuit.control.set_admin(tokens["realm_id"], user_id, False)

    assert companyinfo(intuit, tokens).status_code == 403
    assert intuit.control.metered_calls() == 1


def test_builder_tier_is_500000_a_month() -> None:
    assert BUILDER_TIER_ALLOWANCE == 500_000


def test_bad_metering_controls_are_refused(intuit: IntuitSimulator) -> None:
    with pytest.raises(SimulatorControlError):
        intuit.control.set_metering(-5)
    with pytest.raises(SimulatorControlError):
        intuit.control.set_metering(1.5)  # type: ignore[arg-type]
    with pytest.raises(SimulatorControlError):
        intuit.control.metered_calls("December")
    intuit.control.set_metering(BUILDER_TIER_ALLOWANCE)
    assert intuit.control.metering()["allowance"] == BUILDER_TIER_ALLOWANCE


def test_reset_clears_metering(intuit: IntuitSimulator, tokens: dict[str, str]) -> None:
    intuit.control.set_metering(1)
    companyinfo(intuit, tokens)
    intuit.control.reset()
    assert intuit.control.metering()["calls"] == 0
    assert intuit.control.metering()["allowance"] is None
