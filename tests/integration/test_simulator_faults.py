"""Throttling, injected faults and latency: what the service's retry and classification code must survive."""

from __future__ import annotations

import contextlib
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests

from local.intuit_sim import IntuitSimulator, SimulatorControlError
from qbo_health.clock import SimulatedClock

V3 = "{http://schema.intuit.com/finance/v3}"


@pytest.fixture
def grant(intuit: IntuitSimulator) -> dict[str, str]:
    realm_id = intuit.control.create_company()
    user_id = intuit.control.add_user(realm_id)
    return {"realm_id": realm_id, **intuit.control.issue_tokens(realm_id, user_id, refreshed_days_ago=2)}


def companyinfo(intuit: IntuitSimulator, grant: dict[str, str], timeout: float = 5) -> requests.Response:
    realm_id = grant["realm_id"]
    return requests.get(
        f"{intuit.base_url}/v3/company/{realm_id}/companyinfo/{realm_id}?minorversion=75",
        headers={"Authorization": f"Bearer {grant['access_token']}", "Accept": "application/json"},
        timeout=timeout,
    )


def fresh_access(intuit: IntuitSimulator, grant: dict[str, str]) -> dict[str, str]:
    """The fixture's grant was refreshed two days ago, so its access token is dead: get a live one."""
    user_id = intuit.control.grant_of(grant["refresh_token"])["user_id"]
    return {"realm_id": grant["realm_id"], **intuit.control.issue_tokens(grant["realm_id"], user_id)}


def refresh(intuit: IntuitSimulator, refresh_token: str, timeout: float = 5) -> requests.Response:
    return requests.post(
        f"{intuit.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=("sim-client-id", "sim-client-secret"),
        headers={"Accept": "application/json"},
        timeout=timeout,
    )


def assert_throttle_xml(response: requests.Response) -> None:
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    fault = root.find(f"{V3}Fault")
    error = root.find(f"{V3}Fault/{V3}Error")
    assert fault is not None and error is not None
    assert fault.get("type") == "SERVICE"
    assert error.get("code") == "3001"
    assert error.findtext(f"{V3}Message") == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    assert response.headers["intuit_tid"]


# -- throttling -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def held_calls(intuit: IntuitSimulator, grant: dict[str, str], n: int) -> Iterator[list[Future[int]]]:
    """``n`` CompanyInfo calls to one realm, all held in flight at the simulator until the block ends."""
    intuit.control.hold_api_calls()
    with ThreadPoolExecutor(max_workers=n) as pool:
        try:
            futures = [
                pool.submit(lambda: companyinfo(intuit, grant, timeout=30).status_code) for _ in range(n)
            ]
            deadline = time.monotonic() + 20  # only a bound on waiting: the outcome never depends on it
            while intuit.control.api_calls_in_flight(grant["realm_id"]) < n:
                assert time.monotonic() < deadline, "the held calls never arrived"
                time.sleep(0.01)
            yield futures
        finally:
            intuit.control.release_api_calls()


def test_eleventh_call_in_flight_is_throttled_in_xml(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    """Intuit blog 2016-08-08: more than 10 concurrent requests to one realm from one app get 429."""
    live = fresh_access(intuit, grant)
    other_realm = intuit.control.create_company()
    other = {
        "realm_id": other_realm,
        **intuit.control.issue_tokens(other_realm, intuit.control.add_user(other_realm)),
    }

    with held_calls(intuit, live, 10) as slow:
        assert intuit.control.api_calls_in_flight(live["realm_id"]) == 10
        throttled = companyinfo(intuit, live)  # answered at once: a refused call is never held
        assert_throttle_xml(throttled)  # XML although JSON was asked for
        assert intuit.control.stats()["throttled"] == 1
        assert intuit.control.api_calls_in_flight(live["realm_id"]) == 10
        # Limits are per (app, realm): another realm is not affected (its call is held too, so ask it in a
        # thread and let the release answer it).
        with ThreadPoolExecutor(max_workers=1) as pool:
            elsewhere = pool.submit(lambda: companyinfo(intuit, other, timeout=30).status_code)
            deadline = time.monotonic() + 20
            while intuit.control.api_calls_in_flight(other_realm) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            intuit.control.release_api_calls()
            assert elsewhere.result() == 200

    assert [future.result() for future in slow] == [200] * 10
    assert intuit.control.api_calls_in_flight() == 0
    # Sequential calls are never too many at once: no per-second rule (the blog's limit is concurrency).
    assert {companyinfo(intuit, live).status_code for _ in range(15)} == {200}


def test_500_calls_a_minute_on_the_simulated_clock(
    intuit: IntuitSimulator, grant: dict[str, str], sim_clock: SimulatedClock
) -> None:
    live = fresh_access(intuit, grant)
    with requests.Session() as session:

        def call() -> int:
            realm_id = live["realm_id"]
            return session.get(
                f"{intuit.base_url}/v3/company/{realm_id}/companyinfo/{realm_id}",
                headers={"Authorization": f"Bearer {live['access_token']}", "Accept": "application/json"},
                timeout=5,
            ).status_code

        first_half = [call() for _ in range(250)]
        sim_clock.advance(30)
        second_half = [call() for _ in range(250)]
        assert set(first_half) == set(second_half) == {200}
        assert_throttle_xml(companyinfo(intuit, live))

        sim_clock.advance(30)  # the first 250 slide out of the minute
        assert [call() for _ in range(250)] == [200] * 250
        assert call() == 429


def test_rate_limit_can_be_switched_off(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    live = fresh_access(intuit, grant)
    intuit.control.set_rate_limit(False)

    with held_calls(intuit, live, 12) as held:
        assert intuit.control.api_calls_in_flight(live["realm_id"]) == 12
    assert [future.result() for future in held] == [200] * 12

    intuit.control.set_rate_limit(True)
    with held_calls(intuit, live, 10):
        assert companyinfo(intuit, live).status_code == 429


# -- injected faults ----------------------------------------------------------------------------------------


def test_fault_shares_roughly_match_the_rate_and_are_reproducible(
    intuit: IntuitSimulator, grant: dict[str, str]
) -> None:
    live = fresh_access(intuit, grant)
    intuit.control.set_rate_limit(False)

    def run() -> list[int]:
        intuit.control.set_faults(rate=0.4, kinds=["500", "503", "429"], endpoints=["api"], seed=1234)
        return [companyinfo(intuit, live).status_code for _ in range(300)]

    first = run()
    shares = Counter(first)
    faulted = 300 - shares[200]
    assert 90 <= faulted <= 150  # 40 % of 300 is 120
    for status in (500, 503, 429):
        assert 20 <= shares[status] <= 60, shares  # a third of the faults each
    assert intuit.control.stats()["faults"] == {"500": shares[500], "503": shares[503], "429": shares[429]}
    assert run() == first  # the same seed gives the same run


def test_injected_fault_shapes(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    live = fresh_access(intuit, grant)
    intuit.control.set_faults(rate=1.0, kinds=["500"], endpoints=["api"])
    system = companyinfo(intuit, live)
    assert system.status_code == 500
    assert system.json()["Fault"]["Error"][0]["code"] == "10000"

    intuit.control.set_faults(rate=1.0, kinds=["500"], endpoints=["token"])
    plain = refresh(intuit, grant["refresh_token"])
    assert plain.status_code == 500
    assert plain.headers["Content-Type"].startswith("text/html")

    intuit.control.set_faults(rate=1.0, kinds=["503"], endpoints=["token"])
    assert refresh(intuit, grant["refresh_token"]).status_code == 503

    intuit.control.set_faults(rate=1.0, kinds=["429"], endpoints=["token"])
    assert_throttle_xml(refresh(intuit, grant["refresh_token"]))


def test_timeout_hangs_then_answers_504(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    intuit.control.set_faults(rate=1.0, kinds=["timeout"], endpoints=["token"], hang_seconds=0.3)

    with pytest.raises(requests.exceptions.ReadTimeout):
        refresh(intuit, grant["refresh_token"], timeout=0.15)

    started = time.monotonic()
    late = refresh(intuit, grant["refresh_token"], timeout=2)
    assert late.status_code == 504
    assert time.monotonic() - started >= 0.3
    assert intuit.control.is_refresh_token_current(grant["refresh_token"])


def test_reset_drops_the_connection(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    intuit.control.set_faults(rate=1.0, kinds=["reset"], endpoints=["api"])

    with pytest.raises(requests.exceptions.ConnectionError):
        companyinfo(intuit, fresh_access(intuit, grant))

    intuit.control.clear_faults()
    assert companyinfo(intuit, fresh_access(intuit, grant)).status_code == 200  # the server lives on


def test_faulted_refresh_does_not_rotate(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    old = grant["refresh_token"]  # last issued two days ago: the next good refresh rotates it
    intuit.control.set_faults(rate=1.0, kinds=["500", "503", "429", "reset"], endpoints=["token"], seed=3)
    intuit.control.reset_stats()

    for _ in range(8):
        with contextlib.suppress(requests.exceptions.ConnectionError):
            assert refresh(intuit, old).status_code >= 429

    assert intuit.control.is_refresh_token_current(old)
    assert intuit.control.stats()["refresh_attempts"] == 0
    intuit.control.clear_faults()
    rotated = refresh(intuit, old).json()["refresh_token"]
    assert rotated != old
    assert not intuit.control.is_refresh_token_current(old)


def test_a_lost_answer_rotates_the_token_unseen(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    old = grant["refresh_token"]  # last issued two days ago: a served refresh rotates it
    intuit.control.set_faults(rate=1.0, kinds=["lost"], endpoints=["token"])

    with pytest.raises(requests.exceptions.ConnectionError):
        refresh(intuit, old)

    intuit.control.clear_faults()
    assert not intuit.control.is_refresh_token_current(old)  # Intuit rotated; the caller never saw the value
    assert refresh(intuit, old).json()["error"] == "invalid_grant"


def test_faulted_revoke_revokes_nothing(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    intuit.control.set_faults(rate=1.0, kinds=["503"], endpoints=["revoke"])

    response = requests.post(
        f"{intuit.base_url}/v2/oauth2/tokens/revoke",
        json={"token": grant["refresh_token"]},
        auth=("sim-client-id", "sim-client-secret"),
        timeout=5,
    )

    assert response.status_code == 503
    assert intuit.control.grant_of(grant["refresh_token"])["revoked"] is False


def test_faults_hit_only_the_chosen_endpoints(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    live = fresh_access(intuit, grant)
    intuit.control.set_faults(rate=1.0, kinds=["503"], endpoints=["token"])

    assert companyinfo(intuit, live).status_code == 200
    assert refresh(intuit, grant["refresh_token"]).status_code == 503
    assert requests.get(f"{intuit.base_url}/.well-known/openid_configuration", timeout=5).status_code == 200


def test_faulted_api_calls_are_still_metered(intuit: IntuitSimulator, grant: dict[str, str]) -> None:
    intuit.control.reset_stats()
    intuit.control.set_faults(rate=1.0, kinds=["503"], endpoints=["api"])

    companyinfo(intuit, grant)
    companyinfo(intuit, grant)

    assert intuit.control.stats()["metered"] == {grant["realm_id"]: 2}


def test_bad_fault_settings_are_refused(intuit: IntuitSimulator) -> None:
    with pytest.raises(SimulatorControlError):
        intuit.control.set_faults(rate=0.5, endpoints=["authorize"])
    with pytest.raises(SimulatorControlError):
        intuit.control.set_faults(rate=0.5, kinds=[])
    with pytest.raises(SimulatorControlError):
        intuit.control.set_faults(rate=0.5, hang_seconds=-1)


# -- latency ------------------------------------------------------------------------------------------------


def test_latency_is_added_to_intuit_endpoints_but_not_to_control(
    intuit: IntuitSimulator, grant: dict[str, str]
) -> None:
    intuit.control.set_latency(150)

    started = time.monotonic()
    assert refresh(intuit, grant["refresh_token"]).status_code == 200
    assert time.monotonic() - started >= 0.15

    started = time.monotonic()
    intuit.control.stats()
    assert time.monotonic() - started < 0.15

    intuit.control.set_latency(0)
    started = time.monotonic()
    refresh(intuit, grant["refresh_token"])
    assert time.monotonic() - started < 0.15
