"""A month of the metered-call budget at 100,000 connections, played on the pure policy
(``qbo_health.domain.probe_budget``), plus a sample on the embedded stack (``bench.probe_budget_stack``).

    python -m bench.probe_budget [--connections 100000] [--budget 100000] [--shares 0,0.5,0.9]
                                 [--extra-budgets 250000] [--seed 7]

The policy model plays production's schedule hour by hour: each connection has its hour of the day (the
scheduler's slot), the run chooses probes with the real ``choose_probes`` and the month's real pacing, a
probe that finds a problem is confirmed 15 minutes later by a re-check that asks the budget for one call
(``spend``), open issues are probed daily until the customer fixes them, and the daily token refresh finds a
revoked grant without a metered call. A share of connections belongs to tenants whose product reports its
own calls (``POST /connections/activity``) once a day: successes are evidence, a failure queues a check at once.

Problem rates (per connection per month) are our guesses, marked as such; each run prints them:
lost admin 0.5%, SUSPENDED 0.4%, RESTRICTED 0.1%, CANCELED 0.2%, EXPIRED 0.1%, revoked (the user disconnected
the app) 0.3%, and trials: 4% of companies are on a 30-day trial at any time and 30% of ending trials expire.
A read-only company (lapsed or ended) still answers reads; we assume the reporting product also writes daily,
so it sees the failure (6190) the day it happens.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import write_result
from qbo_health.domain.model import ConnectionState, SubscriptionStatus
from qbo_health.domain.probe_budget import (
    BudgetPolicy,
    BudgetState,
    Evidence,
    choose_probes,
    current,
    spend,
)

HOUR = timedelta(hours=1)
CONFIRM = timedelta(minutes=15)
WARMUP_START = datetime(2027, 3, 1, tzinfo=UTC)
MEASURED = datetime(2027, 4, 1, tzinfo=UTC)  # a 30-day month, after a 31-day warm-up month
MEASURED_END = datetime(2027, 5, 1, tzinfo=UTC)
# Problems that start in the measured month are followed into the next one, so a late detection counts
# as late rather than vanishing; only the measured month's calls count against its budget.
FOLLOW_END = datetime(2027, 6, 1, tzinfo=UTC)

# Guessed monthly rates per connection (no public figures exist); see the module doc.
RATES = {
    "ADMIN_ACCESS_LOST": 0.005,
    "SUSPENDED": 0.004,
    "RESTRICTED": 0.001,
    "CANCELED": 0.002,
    "EXPIRED": 0.001,
    "REVOKED": 0.003,
}
TRIAL_SHARE = 0.04
TRIAL_EXPIRES = 0.3
# How long a customer takes to fix a confirmed problem (a guess: within the 14-day grace period).
FIX_DAYS = (1, 14)

# What each problem shows as (the issue the service confirms).
ISSUE_OF = {
    "ADMIN_ACCESS_LOST": "ADMIN_ACCESS_LOST",
    "SUSPENDED": "SUBSCRIPTION_LAPSED",
    "RESTRICTED": "SUBSCRIPTION_LAPSED",
    "CANCELED": "SUBSCRIPTION_ENDED",
    "EXPIRED": "SUBSCRIPTION_ENDED",
    "TRIAL_EXPIRED": "SUBSCRIPTION_ENDED",
    "REVOKED": "AUTHORIZATION_EXPIRED",
}
READ_ONLY = {"SUSPENDED", "RESTRICTED", "CANCELED", "EXPIRED", "TRIAL_EXPIRED"}


@dataclass
class Problem:
    kind: str
    start: datetime
    suspected_at: datetime | None = None
    confirmed_at: datetime | None = None
    fixed_at: datetime | None = None


@dataclass
class Fleet:
    evidence: list[Evidence]
    reports: list[bool]
    report_hour: list[int]
    trial_end: dict[int, datetime]
    problems: dict[int, Problem] = field(default_factory=dict)
    # (time, connection index, kind) of every problem, sorted by time
    schedule: list[tuple[datetime, int, str]] = field(default_factory=list)


@dataclass
class MonthFigures:
    granted: int = 0
    made: int = 0
    refreshed_days: int = 0
    connection_days: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    undetected: Counter[str] = field(default_factory=Counter)
    probes_by_reason: Counter[str] = field(default_factory=Counter)


def build_fleet(n: int, share: float, rng: random.Random) -> Fleet:
    evidence: list[Evidence] = []
    trial_end: dict[int, datetime] = {}
    for i in range(n):
        status = SubscriptionStatus.TRIAL if rng.random() < TRIAL_SHARE else SubscriptionStatus.PAID
        if status is SubscriptionStatus.TRIAL:
            trial_end[i] = WARMUP_START + timedelta(days=rng.uniform(0, 30))
        created = WARMUP_START - timedelta(days=rng.uniform(30, 5 * 365))
        evidence.append(
            Evidence(
                connection_id=f"c{i:06d}",
                state=ConnectionState.HEALTHY,
                created_at=created,
                last_success_at=WARMUP_START - timedelta(days=rng.uniform(0, 30)),
                subscription_status=status,
                hard_expires_at=created + timedelta(days=5 * 365),
            )
        )
    reports = [rng.random() < share for _ in range(n)]
    return Fleet(evidence, reports, [rng.randrange(24) for _ in range(n)], trial_end)


def inject(fleet: Fleet, rng: random.Random, start: datetime, end: datetime) -> None:
    months = (end - start) / timedelta(days=30)
    n = len(fleet.evidence)
    for kind, rate in RATES.items():
        for _ in range(round(n * rate * months)):
            at = start + (end - start) * rng.random()
            fleet.schedule.append((at, rng.randrange(n), kind))
    # Trials end 30 days after they started; a share of them expire instead of converting, and a new
    # trial company replaces each ending one (the fleet's trial share stays put).
    for i, ends in list(fleet.trial_end.items()):
        while ends < end:
            if rng.random() < TRIAL_EXPIRES:
                fleet.schedule.append((ends, i, "TRIAL_EXPIRED"))
            ends += timedelta(days=30)
    fleet.schedule.sort(key=lambda entry: entry[0])


def simulate(
    n: int, share: float, budget: int, seed: int, *, warmup: bool = True
) -> tuple[MonthFigures, dict[str, Any]]:
    rng = random.Random(seed)
    fleet = build_fleet(n, share, rng)
    start = WARMUP_START if warmup else MEASURED
    inject(fleet, rng, start, FOLLOW_END)
    policy = BudgetPolicy(monthly_budget=budget)
    slots: list[list[int]] = [[] for _ in range(24)]
    for i in range(n):
        slots[i % 24].append(i)  # the scheduler's hash spreads connections evenly over the hours
    report_by_hour: list[list[int]] = [[] for _ in range(24)]
    for i in range(n):
        if fleet.reports[i]:
            report_by_hour[fleet.report_hour[i]].append(i)
    state = BudgetState(start.strftime("%Y-%m"))
    figures = MonthFigures()
    months: dict[str, int] = Counter()
    next_problem = 0
    now = start
    while now < FOLLOW_END:
        measuring = MEASURED <= now < MEASURED_END
        state = current(state, now)
        while next_problem < len(fleet.schedule) and fleet.schedule[next_problem][0] <= now:
            _, i, kind = fleet.schedule[next_problem]
            next_problem += 1
            if i not in fleet.problems:
                fleet.problems[i] = Problem(kind, fleet.schedule[next_problem - 1][0])
        # The product's daily report, for the tenants that send one.
        for i in report_by_hour[now.hour]:
            state = _product_report(fleet, i, now, state, policy, figures, measuring, months)
        members = slots[now.hour]
        # Every member's token is refreshed (unmetered): a revoked grant shows here, and its confirming
        # re-check (another refresh) needs no metered call.
        for i in members:
            _refresh(fleet, i, now, figures, measuring)
        candidates = [fleet.evidence[i] for i in members if not _revoked_known(fleet, i)]
        selection = choose_probes(candidates, state, now, policy)
        granted = spend(state, selection.granted, now, policy)
        if granted is not None:
            state = granted
            months[state.month] += selection.granted
            if measuring:
                figures.granted += selection.granted
            for connection_id in selection.probe:
                state = _probe(fleet, int(connection_id[1:]), now, state, policy, figures, measuring, months)
        _fixes(fleet, now)
        now += HOUR
    for problem in fleet.problems.values():
        if MEASURED <= problem.start < MEASURED_END and problem.confirmed_at is None:
            figures.undetected[ISSUE_OF[problem.kind]] += 1
    return figures, dict(months)


def _product_report(
    fleet: Fleet,
    i: int,
    now: datetime,
    state: BudgetState,
    policy: BudgetPolicy,
    figures: MonthFigures,
    measuring: bool,
    months: dict[str, int],
) -> BudgetState:
    problem = fleet.problems.get(i)
    active = problem is not None and problem.fixed_at is None
    ok = not active or (problem is not None and problem.kind in READ_ONLY)  # reads still work
    failed = active
    ev = fleet.evidence[i]
    fleet.evidence[i] = _with(
        ev,
        activity_ok_at=now if ok else ev.activity_ok_at,
        activity_failed_at=now if failed else ev.activity_failed_at,
    )
    if failed and problem is not None and problem.kind == "REVOKED":
        _detect_revoked(fleet, i, now, figures, measuring)  # the queued check's refresh finds it
        return state
    if failed and not ev.has_issue:
        # A newly reported failure queues a check at once: after its refresh it asks the budget for a call.
        granted = spend(state, 1, now, policy)
        if granted is not None:
            months[granted.month] += 1
            if measuring:
                figures.granted += 1
                figures.probes_by_reason["reported failure"] += 1
            return _probe(fleet, i, now, granted, policy, figures, measuring, months)
    return state


def _refresh(fleet: Fleet, i: int, now: datetime, figures: MonthFigures, measuring: bool) -> None:
    if measuring:
        figures.refreshed_days += 1
        figures.connection_days += 1
    _detect_revoked(fleet, i, now, figures, measuring)


def _detect_revoked(fleet: Fleet, i: int, now: datetime, figures: MonthFigures, measuring: bool) -> None:
    """A refresh answered invalid_grant; the confirming re-check's refresh agrees (no metered call)."""
    problem = fleet.problems.get(i)
    if problem is None or problem.kind != "REVOKED" or problem.confirmed_at is not None:
        return
    problem.suspected_at = now
    problem.confirmed_at = now + CONFIRM
    _record(figures, problem, measuring)
    fleet.evidence[i] = _with(fleet.evidence[i], has_issue=True)


def _revoked_known(fleet: Fleet, i: int) -> bool:
    problem = fleet.problems.get(i)
    return problem is not None and problem.kind == "REVOKED" and problem.confirmed_at is not None


def _probe(
    fleet: Fleet,
    i: int,
    now: datetime,
    state: BudgetState,
    policy: BudgetPolicy,
    figures: MonthFigures,
    measuring: bool,
    months: dict[str, int],
) -> BudgetState:
    """A probe the run paid for: it finds the problem (then a confirming re-check asks for one more call),
    or success (which closes an issue the customer fixed)."""
    if measuring:
        figures.made += 1
    ev = fleet.evidence[i]
    problem = fleet.problems.get(i)
    if problem is not None and problem.fixed_at is None and problem.kind != "REVOKED":
        if problem.confirmed_at is not None:
            return state  # an open issue, still broken: stays open
        confirm = spend(state, 1, now + CONFIRM, policy)
        if confirm is None:
            fleet.evidence[i] = _with(ev, has_suspect=True)  # confirmed by a later day's required probe
            return state
        months[confirm.month] += 1
        if measuring:
            figures.granted += 1
            figures.made += 1
        problem.confirmed_at = now + CONFIRM
        _record(figures, problem, measuring)
        fleet.evidence[i] = _with(ev, has_issue=True, has_suspect=False)
        return confirm
    closed = ev.has_issue or ev.has_suspect
    status = ev.subscription_status
    if problem is not None and problem.fixed_at is not None:
        del fleet.problems[i]
        status = SubscriptionStatus.PAID
    fleet.evidence[i] = _with(
        ev,
        last_success_at=now,
        state=ConnectionState.HEALTHY,
        has_issue=False,
        has_suspect=False,
        settled_at=now if closed else ev.settled_at,
        subscription_status=status,
    )
    return state


def _fixes(fleet: Fleet, now: datetime) -> None:
    """Customers fix confirmed problems some days later (a guess: uniformly within the grace period)."""
    for problem in fleet.problems.values():
        if problem.confirmed_at is None or problem.fixed_at is not None:
            continue
        days = FIX_DAYS[0] + (hash((problem.start, problem.kind)) % (FIX_DAYS[1] - FIX_DAYS[0] + 1))
        if now >= problem.confirmed_at + timedelta(days=days):
            problem.fixed_at = now
    for i, problem in list(fleet.problems.items()):
        if problem.kind == "REVOKED" and problem.fixed_at is not None:
            # Reauthorized: a new grant, verified by its first check.
            del fleet.problems[i]
            fleet.evidence[i] = _with(fleet.evidence[i], has_issue=False, state=ConnectionState.PENDING)


def _record(figures: MonthFigures, problem: Problem, measuring: bool) -> None:
    if not MEASURED <= problem.start < MEASURED_END or problem.confirmed_at is None:
        return
    days = (problem.confirmed_at - problem.start).total_seconds() / 86400
    figures.latencies[ISSUE_OF[problem.kind]].append(days)


def _with(evidence: Evidence, **changes: Any) -> Evidence:
    """``dataclasses.replace``, without its per-field introspection (a third of the run's time)."""
    return Evidence(**{**vars(evidence), **changes})


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarize(figures: MonthFigures, budget: int, granted_by_month: dict[str, int]) -> dict[str, Any]:
    latency = {}
    for issue, days in sorted(figures.latencies.items()):
        missed = figures.undetected.get(issue, 0)
        # A problem still undetected when the follow-up month ends counts as slower than any detected one.
        all_days = days + [float("inf")] * missed
        latency[issue] = {
            "problems": len(all_days),
            "confirmed": len(days),
            "undetected_after_follow_up": missed,
            "median_days": round(statistics.median(all_days), 2),
            "p95_days": round(percentile(all_days, 0.95), 2),
            "max_days": round(max(all_days), 2),
        }
    return {
        "metered_calls_granted": figures.granted,
        "metered_calls_made": figures.made,
        "budget": budget,
        "months_over_budget": sum(1 for calls in granted_by_month.values() if calls > budget),
        "tokens_refreshed_daily_share": round(figures.refreshed_days / max(1, figures.connection_days), 4),
        "latency": latency,
    }


def print_scenario(share: float, budget: int, result: dict[str, Any], seconds: float) -> None:
    print(
        f"\n{int(share * 100)}% reporting, budget {budget:,}: metered calls {result['metered_calls_granted']:,} "
        f"granted / {result['metered_calls_made']:,} made in the measured month; months over budget "
        f"{result['months_over_budget']} of {len(result['granted_by_month'])}; "
        f"tokens refreshed daily: {result['tokens_refreshed_daily_share']:.2%}  [{seconds:.0f} s]"
    )
    print(f"  {'issue':24} {'problems':>8} {'missed':>6} {'median d':>9} {'p95 d':>7} {'max d':>7}")
    for issue, row in result["latency"].items():
        print(
            f"  {issue:24} {row['problems']:>8} {row['undetected_after_follow_up']:>6} "
            f"{row['median_days']:>9.2f} {row['p95_days']:>7.2f} {row['max_days']:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--shares", default="0,0.5,0.9")
    parser.add_argument("--extra-budgets", default="250000", help="budgets also played at 50%% reporting")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="probe_budget", help="result file: bench/results/NAME.json")
    parser.add_argument(
        "--stack-sample", type=int, default=0, help="connections on the embedded stack (0: none)"
    )
    args = parser.parse_args()
    print(
        f"{args.connections:,} connections; a 31-day warm-up month, the measured 30-day month, and a 31-day "
        f"follow-up for its problems; rates per month (guesses): {RATES}, trials {TRIAL_SHARE:.0%} "
        f"({TRIAL_EXPIRES:.0%} expire). Latency: problem start to issue confirmed, a problem still "
        "undetected after the follow-up counted as infinite ('missed')."
    )
    scenarios = [(float(share), args.budget) for share in args.shares.split(",") if share]
    scenarios += [(0.5, int(extra)) for extra in args.extra_budgets.split(",") if extra]
    results = []
    for share, budget in scenarios:
        started = time.perf_counter()
        figures, by_month = simulate(args.connections, share, budget, args.seed)
        result = {
            "reporting_share": share,
            **summarize(figures, budget, by_month),
            "granted_by_month": by_month,
        }
        print_scenario(share, budget, result, time.perf_counter() - started)
        results.append(result)
    output: dict[str, Any] = {
        "connections": args.connections,
        "rates_per_month": RATES,
        "trial_share": TRIAL_SHARE,
        "trial_expires": TRIAL_EXPIRES,
        "policy": results,
    }
    print(f"\nwrote {write_result(args.name, output)}")


if __name__ == "__main__":
    main()
