"""The simulator's state machine without HTTP: exact boundaries of rotation, lapse, codes and throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from local.intuit_sim import state as sim_state
from local.intuit_sim.state import ApiRefusal, RateLimiter, SimError, SimState
from qbo_health.clock import SimulatedClock


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def sim(clock: SimulatedClock) -> SimState:
    return SimState(clock)


@pytest.fixture
def grant(sim: SimState) -> dict:
    realm_id = sim.create_company("1234", None, "active")
    user_id = sim.add_user(realm_id, "u-1", "a@example.com", admin=True)
    return sim.issue_tokens(realm_id, user_id, "sim-client-id", 0, None, None)


def app(sim: SimState):
    found = sim.app("sim-client-id")
    assert found is not None
    return found


def test_rotation_happens_only_after_24_hours(sim: SimState, clock: SimulatedClock, grant: dict) -> None:
    clock.advance(timedelta(hours=24))
    same = sim.refresh(app(sim), grant["refresh_token"], include_hard=False)
    assert same["refresh_token"] == grant["refresh_token"]

    clock.advance(1)
    rotated = sim.refresh(app(sim), grant["refresh_token"], include_hard=False)
    assert rotated["refresh_token"] != grant["refresh_token"]

    with pytest.raises(SimError) as dead:
        sim.refresh(app(sim), grant["refresh_token"], include_hard=False)
    assert (dead.value.status, dead.value.code) == (400, "invalid_grant")


def test_each_refresh_renews_the_window_without_rotating(
    sim: SimState, clock: SimulatedClock, grant: dict
) -> None:
    clock.advance(timedelta(hours=20))
    body = sim.refresh(app(sim), grant["refresh_token"], include_hard=True)
    assert body["x_refresh_token_expires_in"] == 100 * 86400
    assert body["x_refresh_token_hard_expires_in"] == 5 * 365 * 86400 - 20 * 3600


def test_window_ends_exactly_100_days_after_the_last_use(
    sim: SimState, clock: SimulatedClock, grant: dict
) -> None:
    clock.advance(timedelta(days=100))
    assert not sim.is_refresh_token_current(grant["refresh_token"])
    with pytest.raises(SimError):
        sim.refresh(app(sim), grant["refresh_token"], include_hard=False)


def test_codes_are_single_use_and_a_replay_revokes(sim: SimState) -> None:
    realm_id = sim.create_company(None, "Co", "active")
    user_id = sim.add_user(realm_id, None, None, admin=True)
    code = sim.create_code(
        "sim-client-id", "http://127.0.0.1:1/cb", frozenset({sim_state.SCOPE_ACCOUNTING}), realm_id, user_id
    )
    first = sim.exchange_code(app(sim), code, "http://127.0.0.1:1/cb", include_hard=False)
    assert "id_token" not in first  # no openid scope

    with pytest.raises(SimError):
        sim.exchange_code(app(sim), code, "http://127.0.0.1:1/cb", include_hard=False)
    assert not sim.is_refresh_token_current(first["refresh_token"])
    with pytest.raises(ApiRefusal) as refused:
        sim.company_access(first["access_token"], realm_id)
    assert refused.value.kind == "3200"


def test_id_token_claims(sim: SimState, grant: dict) -> None:
    import jwt

    claims = jwt.decode(grant["id_token"], options={"verify_signature": False})
    assert claims["sub"] == "u-1"
    assert claims["realmid"] == "1234"
    assert claims["aud"] == ["sim-client-id"]
    assert claims["email"] == "a@example.com"


def test_fault_draws_are_reproducible(sim: SimState) -> None:
    def draws() -> list:
        sim.set_faults(0.5, ["500", "429"], ["api"], 0.1, seed=42)
        return [sim.decide_fault("api") for _ in range(50)]

    first = draws()
    assert first == draws()
    assert any(first) and not all(first)
    assert sim.decide_fault("token") is None  # not a chosen endpoint


def test_rate_limiter_counts_requests_in_flight_and_a_minute(clock: SimulatedClock) -> None:
    limiter = RateLimiter()
    key = ("app", "realm")
    now = clock.now()

    assert all(limiter.enter(key, now) for _ in range(10))
    assert not limiter.enter(key, now)  # the 11th at once
    assert limiter.enter(("app", "other-realm"), now)
    assert limiter.enter(("other-app", "realm"), now)
    limiter.leave(key)
    assert limiter.enter(key, now)  # one ended, one more may start
    for _ in range(10):
        limiter.leave(key)
    assert limiter.in_flight[key] == 0

    # 500 a minute: 11 so far; one at a time up to 500 within the same minute.
    for second in range(489):
        moment = now + timedelta(seconds=second * 0.1)
        assert limiter.enter(key, moment)
        limiter.leave(key)
    later = now + timedelta(seconds=59)
    assert not limiter.enter(key, later)
    assert limiter.enter(key, now + timedelta(seconds=60))  # the first 11 slid out of the minute


def test_api_call_order_and_in_flight_accounting(sim: SimState, grant: dict) -> None:
    call = sim.begin_api_call(grant["access_token"], "1234")
    assert call.refusal is None and sim.in_flight("1234") == 1
    sim.end_api_call(call)
    sim.end_api_call(call)  # ending twice is harmless
    assert sim.in_flight() == 0

    # Past the gateway, the service's refusal is carried, and the call still occupies its slot.
    sim.set_subscription_status("1234", "canceled")
    write = sim.begin_api_call(grant["access_token"], "1234", write=True)
    assert write.refusal is not None and write.refusal.kind == "6190"
    assert sim.in_flight("1234") == 1
    sim.end_api_call(write)
    assert sim.company_access(grant["access_token"], "1234").subscription_status == "CANCELED"


def test_subscription_statuses_and_aliases(sim: SimState) -> None:
    assert sim.companies[sim.create_company(None, None, "active")].subscription_status == "SUBSCRIBED"
    assert sim.companies[sim.create_company(None, None, "suspended")].subscription_status == "SUSPENDED"
    for status in sim_state.SUBSCRIPTION_STATUSES:
        realm_id = sim.create_company(None, None, status.lower())
        assert sim.companies[realm_id].read_only is (status in sim_state.READ_ONLY_STATUSES)
    with pytest.raises(SimError):
        sim.create_company(None, None, "LAPSED")
    with pytest.raises(SimError):
        sim.set_fault_style(realm_id, lapsed_reads="maybe")


def test_metering_counts_reads_per_app_and_month(sim: SimState, clock: SimulatedClock, grant: dict) -> None:
    sim.set_metering(2)
    month = clock.now().strftime("%Y-%m")
    sim.company_access(grant["access_token"], "1234")
    sim.company_access(grant["access_token"], "1234", write=True)  # writes are not metered
    sim.company_access(grant["access_token"], "1234")
    with pytest.raises(ApiRefusal) as refused:
        sim.company_access(grant["access_token"], "1234")
    assert (refused.value.kind, refused.value.status) == ("metered", 403)
    sim.company_access(grant["access_token"], "1234", write=True)  # still allowed
    assert sim.metering_view(None, "sim-client-id") == {
        "client_id": "sim-client-id",
        "month": month,
        "calls": 2,
        "allowance": 2,
    }
    with pytest.raises(SimError):
        sim.metering_view("2026-13", "sim-client-id")
    with pytest.raises(SimError):
        sim.set_metering(-1)


def test_reset_keeps_only_the_default_app(sim: SimState, grant: dict) -> None:
    sim.register_app("x", "y", [])
    sim.reset()
    assert sim.app("x") is None
    assert sim.app("sim-client-id") is not None
    assert sim.companies == {} and sim.grants == {} and sim.access_index == {}
