"""The metered-call budget on the embedded stack: the scheduler spends the hour's share on the connections
waiting longest for evidence, the month's counter never goes over, and a metering refusal stops probing
for the month while checks keep refreshing tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.domain.probe_budget import hourly_allowance, month_of

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

CONFIRM_DELAY = timedelta(minutes=15)


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


def last_verified(connection_id: str, ago: timedelta, now: datetime) -> None:
    store = wiring.connection_store()
    connection = store.get(connection_id)
    store.save(replace(connection, last_success_at=now - ago), changed_from=connection)


def with_budget(monkeypatch, budget: int) -> None:
    monkeypatch.setenv("METERED_CALL_BUDGET", str(budget))
    wiring.reset()


def leave_this_hour(probes: int, now: datetime) -> None:
    """Spend the month up to ``probes`` below its pace line, so this hour's run may make ``probes``."""
    meter = wiring.meter_store()
    allowance = hourly_allowance(meter.state(now), now, wiring.budget_policy(wiring.check_settings()))
    assert meter.grant(now, allowance - probes)


@pytest.fixture
def fleet(stack):
    """Six healthy connections, last verified 2 to 7 days ago."""
    ids = [f"conn-{days}d" for days in range(2, 8)]
    for connection_id in ids:
        seed_connection(stack, connection_id)
    now = stack.clock.now()
    for days, connection_id in enumerate(ids, start=2):
        last_verified(connection_id, timedelta(days=days), now)
    return ids


def test_a_run_probes_only_its_share_of_the_month_longest_without_evidence_first(stack, lambdas, fleet):
    now = stack.clock.now()
    leave_this_hour(2, now)
    spent_before = wiring.meter_store().state(now).spent
    calls_before = stack.intuit.control.metered_calls()

    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()

    assert stack.intuit.control.metered_calls() - calls_before == 2
    probed = {cid for cid in fleet if stored(cid).last_success_at == now}
    assert probed == {"conn-7d", "conn-6d"}
    # Every connection's token was refreshed all the same (OAuth is not metered).
    assert all(stored(cid).tokens.refreshed_at == now for cid in fleet)
    assert wiring.meter_store().state(now).spent == spent_before + 2
    assert lambdas.counts["MeteredCalls"] == 2
    assert lambdas.counts["ProbesGranted"] == 2 and lambdas.counts["ProbesDeferred"] == 4


def test_the_month_is_never_overspent_even_by_required_probes(stack, lambdas, fleet, monkeypatch):
    now = stack.clock.now()
    suspended = fleet[3:]  # the three waiting longest: this hour's three probes find them
    for connection_id in suspended:
        stack.intuit.control.suspend(seed_realm(connection_id))
    leave_this_hour(3, now)
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    assert all(stored(cid).suspect is not None for cid in suspended)

    # The month's budget is spent: the confirming re-checks need a probe each, and get none.
    with_budget(monkeypatch, wiring.meter_store().state(now).spent)
    calls = stack.intuit.control.metered_calls()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()

    assert stack.intuit.control.metered_calls() == calls
    assert wiring.meter_store().state(now).spent == wiring.check_settings().metered_call_budget
    # Nothing opens on one unconfirmed answer, and nothing was Intuit's refusal.
    assert all(stored(cid).issue is None and stored(cid).suspect is not None for cid in suspended)
    assert lambdas.counts["ProbeWithheldBudget"] == 3
    assert lambdas.metrics["ProbeRefusedMetering"] == 0


def seed_realm(connection_id: str) -> str:
    realm_id = stored(connection_id).realm_id
    assert realm_id is not None
    return realm_id


def test_a_metering_refusal_stops_probing_for_the_month_and_tokens_keep_refreshing(stack, lambdas, fleet):
    control = stack.intuit.control
    control.set_metering(control.metered_calls())  # Intuit: the app's allowance is used up

    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    assert lambdas.metrics["ProbeRefusedMetering"] >= 1
    assert wiring.meter_store().state(stack.clock.now()).refused_at is not None
    refused_calls = control.stats()["calls"].get("companyinfo", 0)

    stack.clock.advance(timedelta(days=1))
    day = stack.clock.now()
    if month_of(day) == month_of(day - timedelta(days=1)):
        lambdas.run_scheduler(all_slots=True)
        lambdas.drain_checks()
        # Not one more CompanyInfo call that month; every token still refreshed.
        assert control.stats()["calls"].get("companyinfo", 0) == refused_calls
        assert all(stored(cid).tokens.refreshed_at == day for cid in fleet)
        assert all(stored(cid).issue is None and stored(cid).suspect is None for cid in fleet)

    # The next month probing resumes.
    current = stack.clock.now()
    next_month = datetime(current.year + current.month // 12, current.month % 12 + 1, 1, 2, tzinfo=UTC)
    stack.clock.advance(next_month - current)
    control.set_metering(None)
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    assert all(stored(cid).last_success_at == next_month for cid in fleet)


def test_ops_budget_shows_month_to_date_projection_and_who_waits_longest(stack, lambdas, fleet):
    from tests.integration.test_ops_cli import ops

    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(timedelta(days=3))
    spent = wiring.meter_store().state(stack.clock.now()).spent
    assert spent == len(fleet)

    run = ops("budget", "--limit", "3")

    assert run.code == 0, run.err
    lines = dict(line.split("  ", 1) for line in run.out.splitlines()[:8])
    assert lines["month to date"].strip() == f"{spent} ({100 * spent / 100_000:.1f}%)"
    assert "projection" in lines
    assert "waiting longest for evidence (6 want a probe, 3 shown)" in run.out
    assert run.out.count("STALE") == 3
