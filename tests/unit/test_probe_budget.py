"""The metered-call budget: pacing, evidence, priorities and metering refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from qbo_health.domain.model import ConnectionState, SubscriptionStatus
from qbo_health.domain.probe_budget import (
    BudgetPolicy,
    BudgetState,
    Evidence,
    Need,
    choose_probes,
    early_burn,
    hourly_allowance,
    hours_left,
    projection,
    rank,
    refused,
    spend,
)

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
POLICY = BudgetPolicy(monthly_budget=10_000)
MARCH = BudgetState("2026-03")


def evidence(connection_id: str = "c", **changes) -> Evidence:
    """A healthy connection created long ago, last verified 10 days ago, nothing else known."""
    base = Evidence(
        connection_id=connection_id,
        state=ConnectionState.HEALTHY,
        created_at=NOW - timedelta(days=400),
        last_success_at=NOW - timedelta(days=10),
    )
    return replace(base, **changes)


def leaving(probes: int) -> BudgetState:
    """March's state when this hour's allowance under POLICY is ``probes``."""
    return BudgetState("2026-03", spent=hourly_allowance(MARCH, NOW, POLICY) - probes)


# ---------------------------------------------------------------------------------------------- pacing


def test_hours_left_counts_this_hour_to_the_end_of_the_month() -> None:
    assert hours_left(datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) == 1
    assert hours_left(datetime(2026, 3, 1, 0, 0, tzinfo=UTC)) == 31 * 24
    assert hours_left(datetime(2026, 2, 1, 0, 0, tzinfo=UTC)) == 28 * 24


def test_allowance_follows_the_months_pace_line() -> None:
    start = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert hourly_allowance(MARCH, start, POLICY) == 10_000 // (31 * 24)
    # Ten days in, with nothing spent yet, the run may catch up to the line.
    ten_days = datetime(2026, 3, 11, 0, 0, tzinfo=UTC)
    assert hourly_allowance(MARCH, ten_days, POLICY) == 10_000 * (10 * 24 + 1) // (31 * 24)
    # Spent ahead of the line (required probes): nothing more this hour.
    assert hourly_allowance(replace(MARCH, spent=5_000), ten_days, POLICY) == 0
    # The last hour may spend whatever is left, and nothing more.
    spent = replace(MARCH, spent=9_000)
    assert hourly_allowance(spent, datetime(2026, 3, 31, 23, 0, tzinfo=UTC), POLICY) == 1_000


def test_a_small_budget_is_spread_over_the_month_not_saved_for_its_end() -> None:
    small = BudgetPolicy(monthly_budget=100)  # less than one probe an hour
    state = MARCH
    first_week = 0
    hour = datetime(2026, 3, 1, tzinfo=UTC)
    while hour < datetime(2026, 3, 8, tzinfo=UTC):
        allowance = hourly_allowance(state, hour, small)
        state = spend(state, allowance, hour, small) or state
        first_week += allowance
        hour += timedelta(hours=1)
    assert first_week == 100 * 7 * 24 // (31 * 24)


def test_paced_spending_over_a_whole_month_never_goes_over_the_budget() -> None:
    state = MARCH
    hour = datetime(2026, 3, 1, tzinfo=UTC)
    while hour.month == 3:
        allowance = hourly_allowance(state, hour, POLICY)
        updated = spend(state, allowance, hour, POLICY)
        assert updated is not None
        state = updated
        hour += timedelta(hours=1)
    assert state.spent <= POLICY.monthly_budget
    assert state.spent >= POLICY.monthly_budget - 31 * 24  # and the month's budget is used, not hoarded


def test_spending_past_the_budget_is_refused() -> None:
    assert spend(replace(MARCH, spent=9_999), 1, NOW, POLICY) == replace(MARCH, spent=10_000)
    assert spend(replace(MARCH, spent=10_000), 1, NOW, POLICY) is None


def test_a_new_month_starts_over() -> None:
    february = BudgetState("2026-02", spent=10_000, refused_at=NOW - timedelta(days=20))
    assert hourly_allowance(february, NOW, POLICY) > 0
    assert spend(february, 5, NOW, POLICY) == BudgetState("2026-03", spent=5)


# ---------------------------------------------------------------------------------------------- refusal


def test_a_metering_refusal_stops_probing_for_the_rest_of_the_month() -> None:
    stopped = refused(MARCH, NOW)
    assert stopped.refused_at == NOW
    assert hourly_allowance(stopped, NOW + timedelta(days=5), POLICY) == 0
    assert spend(stopped, 1, NOW, POLICY) is None
    selection = choose_probes([evidence(has_issue=True), evidence("d")], stopped, NOW, POLICY)
    assert selection.probe == () and selection.granted == 0
    assert set(selection.deferred) == {"c", "d"}
    # April: probing resumes.
    assert hourly_allowance(stopped, datetime(2026, 4, 1, tzinfo=UTC), POLICY) > 0


def test_a_second_refusal_keeps_the_first_time() -> None:
    stopped = refused(MARCH, NOW)
    assert refused(stopped, NOW + timedelta(hours=3)).refused_at == NOW


# ---------------------------------------------------------------------------------------------- evidence


def test_recent_success_evidence_means_no_probe() -> None:
    assert rank(evidence(last_success_at=NOW - timedelta(hours=2)), NOW, POLICY).need is Need.NONE
    # The product's report of a successful call is evidence too.
    reported_ok = evidence(last_success_at=NOW - timedelta(days=20), activity_ok_at=NOW - timedelta(hours=3))
    assert rank(reported_ok, NOW, POLICY).need is Need.NONE
    assert rank(evidence(), NOW, POLICY).need is Need.STALE


def test_evidence_is_the_latest_of_probe_and_product_report() -> None:
    product_newer = evidence(activity_ok_at=NOW - timedelta(days=2))
    assert product_newer.evidence_at == NOW - timedelta(days=2)
    # Older product evidence does not make a connection look staler than our own probe says.
    assert evidence(activity_ok_at=NOW - timedelta(days=30)).evidence_at == NOW - timedelta(days=10)


def test_a_reported_failure_since_our_last_probe_comes_before_stale_connections() -> None:
    failing = evidence("failing", activity_failed_at=NOW - timedelta(hours=1))
    stalest = evidence("stalest", last_success_at=NOW - timedelta(days=60))
    assert rank(failing, NOW, POLICY).need is Need.REPORTED
    assert choose_probes([stalest, failing], MARCH, NOW, POLICY).probe[0] == "failing"
    # Once a probe succeeded after the failure, the report is answered.
    answered = replace(failing, last_success_at=NOW - timedelta(minutes=10))
    assert rank(answered, NOW, POLICY).need is Need.NONE


@pytest.mark.parametrize(
    "changes",
    [{"has_issue": True}, {"has_suspect": True}, {"state": ConnectionState.PENDING, "last_success_at": None}],
)
def test_issues_suspicions_and_unverified_connections_always_need_a_probe(changes: dict) -> None:
    assert rank(evidence(**changes), NOW, POLICY).need is Need.REQUIRED


def test_disconnected_connections_are_never_probed() -> None:
    assert rank(evidence(state=ConnectionState.DISCONNECTED), NOW, POLICY).need is Need.NONE


# ---------------------------------------------------------------------------------------------- priorities


def test_longest_without_evidence_first() -> None:
    candidates = [evidence(f"c{days}", last_success_at=NOW - timedelta(days=days)) for days in (3, 30, 12)]
    selection = choose_probes(candidates, leaving(2), NOW, POLICY)  # two probes this hour
    assert selection.probe == ("c30", "c12")
    assert selection.deferred == ("c3",)


@pytest.mark.parametrize(
    "risky",
    [
        {"settled_at": NOW - timedelta(days=3)},  # restored or verified recently
        {"created_at": NOW - timedelta(days=5), "last_success_at": NOW - timedelta(days=5)},  # new
        {"subscription_status": SubscriptionStatus.TRIAL},
        {"subscription_status": SubscriptionStatus.RESTRICTED},
        {"hard_expires_at": NOW + timedelta(days=20)},  # nearing the 5-year cap
    ],
)
def test_likely_trouble_outranks_a_plain_connection_without_evidence_for_longer(risky: dict) -> None:
    plain = evidence("plain", last_success_at=NOW - timedelta(days=12))
    at_risk = evidence("at-risk", **{"last_success_at": NOW - timedelta(days=5), **risky})
    assert rank(at_risk, NOW, POLICY).score > rank(plain, NOW, POLICY).score


def test_a_paying_company_long_settled_gets_no_extra_weight() -> None:
    paid = evidence(subscription_status=SubscriptionStatus.PAID, settled_at=NOW - timedelta(days=90))
    assert rank(paid, NOW, POLICY).score == pytest.approx(10 * 24)


def test_required_probes_are_granted_beyond_the_hours_pace_but_not_beyond_the_month() -> None:
    required = [evidence(f"issue-{n}", has_issue=True) for n in range(5)]
    stale = [evidence(f"stale-{n}") for n in range(5)]
    tiny = BudgetPolicy(monthly_budget=7)
    selection = choose_probes(required + stale, BudgetState("2026-03", spent=2), NOW, tiny)
    # 5 left in the month: all 5 required, none of the stale ones (the pace line is at 2: allowance 0).
    assert selection.granted == 5
    assert all(cid.startswith("issue-") for cid in selection.probe)
    almost_gone = BudgetState("2026-03", spent=tiny.monthly_budget - 2)
    assert choose_probes(required, almost_gone, NOW, tiny).granted == 2


# ---------------------------------------------------------------------------------------------- visibility


def test_projection_extrapolates_the_pace_and_stops_at_the_budget() -> None:
    halfway = datetime(2026, 4, 16, 0, 0, tzinfo=UTC)  # 15 of 30 days gone
    assert projection(BudgetState("2026-04", spent=3_000), halfway, POLICY) == 6_000
    assert projection(BudgetState("2026-04", spent=8_000), halfway, POLICY) == 10_000


def test_early_burn_is_80_percent_before_day_24() -> None:
    assert early_burn(BudgetState("2026-03", spent=8_000), NOW, POLICY) is True
    assert early_burn(BudgetState("2026-03", spent=7_999), NOW, POLICY) is False
    assert early_burn(BudgetState("2026-03", spent=9_000), datetime(2026, 3, 24, tzinfo=UTC), POLICY) is False
