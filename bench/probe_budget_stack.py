"""The probe budget on the embedded stack: a sample of the month that ``bench.probe_budget`` plays on the pure
policy, through the real scheduler, queue, worker, escalator, activity route and the Intuit simulator, on
production's schedules (``ProductionSchedule``).

    python -m bench.probe_budget_stack [--connections 240] [--days 10] [--share 0.5] [--seed 7]

The budget is scaled to the sample: one metered call per connection per month, as 100,000 is for 100,000
connections. Problems are injected at an elevated rate (8% of connections over the first half of the run,
mixed like the policy benchmark's) so a short sample has some; half the connections belong to tenants whose
product reports its calls once a day, at its own hour, through the Python client.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from bench.common import write_result  # the log level must be set first
from local.http_front import HttpFront
from local.production import ProductionSchedule
from local.runner import LocalLambda
from local.seed import SeededConnection, seed_connection
from local.stack import EmbeddedStack
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import HistoryModel

KINDS = ["ADMIN_ACCESS_LOST", "SUSPENDED", "CANCELED", "REVOKED", "TRIAL_EXPIRED"]
WEIGHTS = [5, 4, 2, 3, 3]  # roughly the policy benchmark's mix
FAILS_READS = {"ADMIN_ACCESS_LOST", "REVOKED"}


def run_stack_sample(
    connections: int, *, days: int = 10, share: float = 0.5, seed: int = 7
) -> dict[str, Any]:
    rng = random.Random(seed)
    stack = EmbeddedStack().start()
    front: HttpFront | None = None
    try:
        os.environ["METERED_CALL_BUDGET"] = str(connections)
        wiring.reset()
        seeded = [seed_connection(stack, f"sample-{n:04d}", refreshed_days_ago=1) for n in range(connections)]
        front = HttpFront(stack)
        front.start()
        client = _client(front)
        lambdas = LocalLambda(stack)
        schedule = ProductionSchedule(lambdas)
        start = stack.clock.now()
        reporting = {s.connection_id for s in seeded if rng.random() < share}
        report_hour = {s.connection_id: rng.randrange(24) for s in seeded}
        problems = _plan_problems(seeded, rng, start, days)
        broken: dict[str, tuple[str, datetime]] = {}
        metered_start = stack.intuit.control.metered_calls()
        refreshed_ok = refreshed_all = 0
        hour = start
        while hour < start + timedelta(days=days):
            for connection, kind, at in [p for p in problems if p[2] == hour]:
                _break(stack, connection, kind)
                broken[connection.connection_id] = (kind, at)
            _report(client, hour, seeded, reporting, report_hour, broken)
            schedule.run_until(hour + timedelta(hours=1))
            hour += timedelta(hours=1)
            if (hour - start) % timedelta(days=1) == timedelta(0):
                ok, total = _refreshed_during(seeded, broken, hour - timedelta(days=1))
                refreshed_ok, refreshed_all = refreshed_ok + ok, refreshed_all + total
        end = stack.clock.now()
        metered = stack.intuit.control.metered_calls() - metered_start
        state = wiring.meter_store().state(end)
        latency = _latency(broken, reporting)
    finally:
        if front is not None:
            front.stop()
        stack.stop()
    result = {
        "connections": connections,
        "days": days,
        "reporting_share": share,
        "monthly_budget": connections,
        "metered_calls": metered,
        "month_to_date_granted": state.spent,
        "over_budget": state.spent > connections,
        "tokens_refreshed_daily_share": round(refreshed_ok / max(1, refreshed_all), 4),
        "latency_days": latency,
        "problems": len(broken),
    }
    _print(result)
    return result


def _client(front: HttpFront) -> Any:
    from botocore.credentials import Credentials

    from qbo_health.client import QboHealthClient

    return QboHealthClient(front.base_url, "us-east-1", Credentials("testing", "testing", "testing"))


def _plan_problems(
    seeded: list[SeededConnection], rng: random.Random, start: datetime, days: int
) -> list[tuple[SeededConnection, str, datetime]]:
    chosen = rng.sample(seeded, max(1, round(0.08 * len(seeded))))
    return [
        (connection, rng.choices(KINDS, WEIGHTS)[0], start + timedelta(hours=rng.randrange(days * 12)))
        for connection in chosen
    ]


def _break(stack: EmbeddedStack, connection: SeededConnection, kind: str) -> None:
    control = stack.intuit.control
    if kind == "ADMIN_ACCESS_LOST":
        control.set_admin(connection.realm_id, connection.user_id, False)
    elif kind == "SUSPENDED":
        control.suspend(connection.realm_id)
    elif kind == "CANCELED":
        control.set_subscription_status(connection.realm_id, "CANCELED")
    elif kind == "TRIAL_EXPIRED":
        control.set_subscription_status(connection.realm_id, "EXPIRED")
    else:
        control.disconnect_app(connection.realm_id)


def _report(
    client: Any,
    hour: datetime,
    seeded: list[SeededConnection],
    reporting: set[str],
    report_hour: dict[str, int],
    broken: dict[str, tuple[str, datetime]],
) -> None:
    """The products that report send their last day's calls: reads fail on a lost admin or revoked grant,
    writes fail on a read-only company (we assume these products write daily)."""
    calls = []
    for connection in seeded:
        cid = connection.connection_id
        if cid not in reporting or report_hour[cid] != hour.hour:
            continue
        kind = broken.get(cid, (None, None))[0]
        if kind is None or kind not in FAILS_READS:
            calls.append((cid, hour - timedelta(minutes=10), True))
        if kind is not None:
            calls.append((cid, hour - timedelta(minutes=5), False))
    if calls:
        client.report_activity(calls)


def _refreshed_during(
    seeded: list[SeededConnection], broken: dict[str, tuple[str, datetime]], day_start: datetime
) -> tuple[int, int]:
    """Connections whose token was refreshed in the day that just ended (a revoked grant cannot be)."""
    store = wiring.connection_store()
    ok = total = 0
    for connection in seeded:
        if broken.get(connection.connection_id, (None,))[0] == "REVOKED":
            continue
        refreshed = store.get(connection.connection_id).tokens.refreshed_at
        total += 1
        ok += refreshed is not None and refreshed >= day_start
    return ok, total


def _latency(broken: dict[str, tuple[str, datetime]], reporting: set[str]) -> dict[str, Any]:
    by_group: dict[str, list[float]] = defaultdict(list)
    missed: dict[str, int] = defaultdict(int)
    for cid, (kind, at) in broken.items():
        opened = [item.at for item in HistoryModel.query(cid) if item.kind == "ISSUE_OPENED"]
        group = f"{kind} ({'reporting' if cid in reporting else 'silent'})"
        if opened:
            by_group[group].append((min(opened) - at).total_seconds() / 86400)
        else:
            missed[group] += 1
    return {
        group: {
            "confirmed": len(values),
            "missed": missed.get(group, 0),
            "median": round(statistics.median(values), 2) if values else None,
            "max": round(max(values), 2) if values else None,
        }
        for group, values in sorted({**{g: [] for g in missed}, **by_group}.items())
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"embedded stack: {result['connections']} connections, {result['days']} days, "
        f"{result['reporting_share']:.0%} reporting, budget {result['monthly_budget']} a month: "
        f"{result['metered_calls']} metered calls made, {result['month_to_date_granted']} granted this month "
        f"(over budget: {result['over_budget']}); tokens refreshed every day: "
        f"{result['tokens_refreshed_daily_share']:.2%}"
    )
    for group, row in result["latency_days"].items():
        print(
            f"  {group:36} confirmed {row['confirmed']:>3}  missed {row['missed']:>3}  "
            f"median {row['median']} d  max {row['max']} d"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=240)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    result = run_stack_sample(args.connections, days=args.days, share=args.share, seed=args.seed)
    print(f"wrote {write_result('probe_budget_stack', result)}")


if __name__ == "__main__":
    main()
