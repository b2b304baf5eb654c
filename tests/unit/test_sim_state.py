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


def test_rate_limiter_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(sim_state.time, "monotonic", lambda: now[0])
    limiter = RateLimiter()
    key = ("app", "realm")

    assert all(limiter.allow(key) for _ in range(10))
    assert not limiter.allow(key)
    assert limiter.allow(("app", "other-realm"))

    # 500 a minute: 10 a second for 49 more seconds fills it.
    for _ in range(49):
        now[0] += 1.0
        assert all(limiter.allow(key) for _ in range(10))
    now[0] += 1.0
    assert not limiter.allow(key)
    now[0] += 10.0  # the oldest second slides out of the minute
    assert limiter.allow(key)


def test_reset_keeps_only_the_default_app(sim: SimState, grant: dict) -> None:
    sim.register_app("x", "y", [])
    sim.reset()
    assert sim.app("x") is None
    assert sim.app("sim-client-id") is not None
    assert sim.companies == {} and sim.grants == {} and sim.access_index == {}
