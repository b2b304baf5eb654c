"""Benchmark: the daily check on the embedded stack.

Prints checks per second for N connections (scheduler -> queue -> worker, as Lambda runs them), AWS
requests per healthy check by service and operation (counted with botocore event hooks), KMS calls per
check, and metered Intuit calls per connection per day over two simulated days of hourly runs.

    make bench-checks            # 2,000 connections
    python -m bench.check_pipeline --connections 500
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from bench.common import AwsRequestCounter, write_result  # the log level must be set first
from local.production import ProductionSchedule
from local.runner import LocalLambda
from local.seed import seed_connection
from local.stack import EmbeddedStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--days", type=int, default=2, help="simulated days of hourly runs for metering")
    args = parser.parse_args()

    stack = EmbeddedStack().start()
    try:
        for index in range(args.connections):
            seed_connection(stack, f"bench-{index:06d}", refreshed_days_ago=1)
        lambdas = LocalLambda(stack)
        counter = AwsRequestCounter().attach()
        stack.intuit.control.reset_stats()

        started = time.perf_counter()
        lambdas.run_scheduler(all_slots=True)
        drained = lambdas.drain_checks(concurrency=args.concurrency)
        seconds = time.perf_counter() - started
        per_check = {call: count / args.connections for call, count in sorted(counter.calls.items())}
        by_service = {service: count / args.connections for service, count in counter.by_service().items()}
        sweep_stats = stack.intuit.control.stats()

        # Metering in steady state, on production's cadence: each connection due once a day in its slot.
        stack.intuit.control.reset_stats()
        ProductionSchedule(lambdas).run_for(timedelta(days=args.days))  # production's schedules
        metered = stack.intuit.control.stats()["metered"]
        max_per_day = max(metered.values(), default=0) / args.days
        mean_per_day = sum(metered.values()) / max(len(metered), 1) / args.days
    finally:
        stack.stop()

    result = {
        "connections": args.connections,
        "concurrency": args.concurrency,
        "processed": drained.processed,
        "seconds": round(seconds, 2),
        "checks_per_second": round(args.connections / seconds, 1),
        "aws_requests_per_check_by_service": {k: round(v, 3) for k, v in by_service.items()},
        "aws_requests_per_check_by_call": {k: round(v, 3) for k, v in per_check.items()},
        "intuit_calls_in_sweep": sweep_stats["calls"],
        "metered_calls_per_connection_per_day": {"max": max_per_day, "mean": round(mean_per_day, 3)},
    }
    path = write_result("check_pipeline", result)
    print(
        f"checks: {args.connections} in {seconds:.1f} s = {result['checks_per_second']} checks/s "
        f"(concurrency {args.concurrency})"
    )
    print("AWS requests per healthy check, by service:")
    for service, value in result["aws_requests_per_check_by_service"].items():
        print(f"  {service:<10} {value}")
    print("  by call: " + ", ".join(f"{k}={v}" for k, v in result["aws_requests_per_check_by_call"].items()))
    print(
        f"metered Intuit calls per connection per day over {args.days} days: max {max_per_day}, "
        f"mean {result['metered_calls_per_connection_per_day']['mean']}"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
