"""Benchmark: escalator scaling, items read versus open issues at 1k, 10k and 50k connections.

Connections are written with BatchWriteItem; 1% and then 5% of them carry an open issue (set directly:
``open_issue="OPEN"``, type, episode, opened and deadline, with the day-0 notice already recorded so the run
only reads). The real escalator handler runs once per case; DynamoDB's ``ScannedCount`` of every Query and
Scan it makes is summed through ``after-call`` hooks on PynamoDB's botocore client.

    make bench-escalator
    python -m bench.escalator --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, timedelta
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from bench.common import AwsRequestCounter, quiet_emf, write_result
from local.runner import LocalLambda, forget_handlers
from local.stack import EmbeddedStack
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import ConnectionModel
from qbo_health.domain.schedule import check_slot


def _item(stack: EmbeddedStack, index: int, broken: bool) -> ConnectionModel:
    now = stack.clock.now()
    connection_id = f"esc-{index:06d}"
    attributes: dict[str, Any] = {
        "tenant_id": "tenant-1",
        "realm_id": f"9341{index:012d}",
        "state": "NEEDS_ATTENTION" if broken else "HEALTHY",
        "check_slot": check_slot(connection_id),
        "version": 1,
        "old_contacts": ["owner@example.com"],  # the first stored shape (still read) keeps it one item
        "created_at": now - timedelta(days=30),
        "last_success_at": now - timedelta(days=2 if broken else 0),
        "last_check_at": now,
    }
    if broken:
        opened = now - timedelta(days=1)
        deadline = (opened + timedelta(days=14)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        attributes.update(
            open_issue="OPEN",
            issue_type="ADMIN_ACCESS_LOST",
            issue_episode=f"ep-{index}",
            issue_first_seen_at=opened,
            issue_opened_at=opened,
            issue_deadline=deadline,
            issue_notices=[f"NOTICE@{opened.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"],
        )
    return ConnectionModel(connection_id, **attributes)


def _broken(index: int, percent: int) -> bool:
    return index % 100 < percent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--percents", default="1,5")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    percents = sorted(int(p) for p in args.percents.split(","))

    stack = EmbeddedStack().start()
    rows = []
    try:
        for size in sizes:
            stack.reset()
            forget_handlers()
            wiring.store_settings()  # binds the models to the stack's tables
            started = time.perf_counter()
            with ConnectionModel.batch_write() as batch:
                for index in range(size):
                    batch.save(_item(stack, index, _broken(index, percents[0])))
            seed_seconds = time.perf_counter() - started
            previous = percents[0]
            for percent in percents:
                if percent != previous:  # mark more connections broken (re-put those items)
                    with ConnectionModel.batch_write() as batch:
                        for index in range(size):
                            if _broken(index, percent) and not _broken(index, previous):
                                batch.save(_item(stack, index, True))
                    previous = percent
                lambdas = LocalLambda(stack)
                counter = AwsRequestCounter().attach()
                started = time.perf_counter()
                with quiet_emf():
                    summary = lambdas.invoke("escalator", {"detail": {}})
                seconds = time.perf_counter() - started
                counter.detach()
                scanned = sum(counter.scanned.values())
                row = {
                    "connections": size,
                    "broken_percent": percent,
                    "open_issues": summary["open_issues"],
                    "items_read": scanned,
                    "items_read_by_call": dict(counter.scanned),
                    "requests": dict(counter.calls),
                    "read_per_open_issue": round(scanned / max(summary["open_issues"], 1), 3),
                    "seconds": round(seconds, 2),
                    "seed_seconds": round(seed_seconds, 1),
                }
                rows.append(row)
                print(
                    f"{size:>6} connections, {percent}% broken: {summary['open_issues']:>5} open issues, "
                    f"{scanned:>5} items read ({row['read_per_open_issue']} per open issue), {seconds:.2f} s"
                )
    finally:
        stack.stop()
    flat = all(row["items_read"] == row["open_issues"] for row in rows)
    path = write_result(
        "escalator",
        {
            "cases": rows,
            "items_read_equals_open_issues": flat,
            "note": "ScannedCount of every Query/Scan the escalator made (after-call hooks); reads grow with "
            "open issues, not with connections, when these are equal at every size.",
        },
    )
    print(f"items read == open issues in every case: {flat}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
