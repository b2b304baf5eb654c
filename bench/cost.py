"""Benchmark: AWS requests per healthy check and the cost per 100k connections per month at list prices.

Runs healthy daily checks through the real scheduler and worker on the embedded stack and counts every AWS
call with botocore ``before-call`` hooks (by service and operation), KMS calls per check for a warm and a
cold container, DynamoDB write/read units from the stored item's real size (DynamoDB's item size rules),
Lambda duration per check, and the bytes of log lines (JSON logs + EMF metrics + Lambda's platform lines).

    make bench-cost
    python -m bench.cost --connections 300 --latency-ms 100
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")  # the template's level (Powertools' default)

from bench.common import (
    AwsRequestCounter,
    batch_write,
    connection_for,
    item_of,
    patch_moto_for_load,
    quiet_emf,
    seed_grants,
    write_result,
)
from local.runner import LocalLambda, load_handler
from local.stack import EmbeddedStack
from qbo_health import clock, wiring
from qbo_health.adapters.token_vault import TokenVault
from qbo_health.messages import CheckRequest
from qbo_health.observability import logger
from qbo_health.service.health_check import check_connection

# us-east-1 list prices, as published on 2025-01 (DynamoDB on-demand after the 2024-11-01 price cut).
PRICES: dict[str, Any] = {
    "region": "us-east-1",
    "as_of": "2025-01 (AWS pricing pages)",
    "lambda_arm64_gb_second": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    "dynamodb_storage_gb_month": 0.25,
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk
    "kms_request": 0.03 / 1e4,
    "cloudwatch_logs_ingest_gb": 0.50,
    "scheduler_invocation": 0.0,  # EventBridge Scheduler: 14M invocations/month free
}
MEMORY_GB = 256 / 1024  # template Globals MemorySize
DAYS_PER_MONTH = 30
CONNECTIONS = 100_000
LAMBDA_PLATFORM_LOG_BYTES = 350  # START, END and REPORT lines per invocation (measured on AWS, approx.)
ESM_POLLERS = 5  # Lambda's SQS event source polls with at least 5 long-pollers (20 s) when idle


# ------------------------------------------------------------------ DynamoDB item size rules


def attribute_value_size(value: dict[str, Any]) -> int:
    """Bytes of one AttributeValue per DynamoDB's documented item size rules."""
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_value_size({kind[0]: v}) for v in raw)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_value_size(v) for k, v in raw.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, *, consistent: bool = False) -> float:
    units = max(1, math.ceil(size / 4096))
    return units if consistent else units / 2


# ------------------------------------------------------------------ log capture


class _Bytes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.bytes = 0
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        self.bytes += len(self.format(record).encode()) + 1


def _measure_logs() -> _Bytes:
    counter = _Bytes()
    handlers = logger.handlers if hasattr(logger, "handlers") else []
    formatter = handlers[0].formatter if handlers else None
    if formatter is not None:
        counter.setFormatter(formatter)
    logging.getLogger(logger.service).addHandler(counter)
    return counter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulator delay per Intuit call")
    args = parser.parse_args()
    n = args.connections

    patch_moto_for_load()
    stack = EmbeddedStack().start()
    try:
        stack.intuit.control.set_rate_limit(False)
        grants = seed_grants(stack, [f"cost-{i:06d}" for i in range(n)])
        # Sealed by "another container" (its own vault), as the API or yesterday's worker would have.
        other_vault = TokenVault(wiring.aws_client("kms"), wiring.token_vault()._key_id, clock.current())
        original = wiring.token_vault
        wiring.token_vault = lambda: other_vault  # type: ignore[assignment]
        try:
            batch_write(item_of(connection_for(stack, g)) for g in grants)
        finally:
            wiring.token_vault = original
        table = stack.resources["ConnectionsTable"].ref
        dynamodb = stack.client("dynamodb")
        key = {"connection_id": {"S": grants[0].connection_id}}
        size_before = item_size(dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])

        stack.intuit.control.set_latency(args.latency_ms)
        lambdas = LocalLambda(stack)
        load_handler("check_worker")
        load_handler("check_scheduler")
        load_handler("escalator")
        logs = _measure_logs()
        counter = AwsRequestCounter().attach()

        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"  # emit EMF as on AWS, to measure its bytes
        with quiet_emf() as emf:
            started = time.perf_counter()
            lambdas.run_scheduler(all_slots=True)
            scheduler_seconds = time.perf_counter() - started
            scheduler_calls = dict(counter.calls)
            counter.reset()
            started = time.perf_counter()
            drained = lambdas.drain_checks(concurrency=1)  # one container, batches of 10, in sequence
            drain_seconds = time.perf_counter() - started
            worker_calls = dict(counter.calls)
            counter.reset()
            started = time.perf_counter()
            escalation = lambdas.invoke("escalator", {"detail": {}})
            escalator_seconds = time.perf_counter() - started
            escalator_calls = dict(counter.calls)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        log_bytes, emf_bytes = logs.bytes, emf.bytes
        size_after = item_size(dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])
        history_items = stack.client("dynamodb").scan(TableName=stack.resources["HistoryTable"].ref)["Items"]
        history_bytes = sum(item_size(item) for item in history_items)

        # KMS: a cold container (a fresh vault) checking one connection sealed elsewhere.
        counter.reset()
        stack.clock.advance(timedelta(days=1))
        cold = replace(
            wiring.check_deps(),
            vault=TokenVault(wiring.aws_client("kms"), wiring.token_vault()._key_id, clock.current()),
        )
        check_connection(CheckRequest(connection_id=grants[0].connection_id), cold, stack.clock.now())
        cold_kms = {k: v for k, v in counter.calls.items() if k.startswith("kms.")}
        counter.detach()
    finally:
        stack.stop()

    per_check = {k: v / n for k, v in sorted(worker_calls.items())}
    kms_warm = sum(v for k, v in per_check.items() if k.startswith("kms."))
    ddb_updates = per_check.get("dynamodb.UpdateItem", 0.0)
    ddb_puts = per_check.get("dynamodb.PutItem", 0.0)
    item = max(size_before, size_after)
    wru_per_check = (ddb_updates + ddb_puts) * write_units(item)
    duration_per_check = drain_seconds / n
    invocations_per_check = drained.batches / n

    # ----------------------------------------------------------- monthly model for 100k connections
    checks = CONNECTIONS * DAYS_PER_MONTH
    runs = 24 * DAYS_PER_MONTH
    # Scheduler: one Query page per slot over the keys+state index (~60 B an entry) and SendMessageBatch/10.
    slot_entries = CONNECTIONS / 24
    query_rru_per_run = read_units(int(slot_entries * 60))
    model: dict[str, dict[str, float]] = {}
    # The scheduler's time grows with the connections due in its hour (measured here for all n at once).
    scheduler_seconds_per_run = scheduler_seconds / n * CONNECTIONS / 24
    lambda_gbs = (
        checks * duration_per_check + runs * (scheduler_seconds_per_run + escalator_seconds)
    ) * MEMORY_GB
    lambda_requests = checks * invocations_per_check + 2 * runs
    model["lambda"] = {
        "gb_seconds": lambda_gbs,
        "requests": lambda_requests,
        "usd": lambda_gbs * PRICES["lambda_arm64_gb_second"] + lambda_requests * PRICES["lambda_request"],
    }
    wru = checks * wru_per_check + runs * 2  # + run heartbeat / tally writes
    rru = runs * query_rru_per_run + runs * 1  # + the escalator's open-issues query (empty when healthy)
    storage_gb = (
        CONNECTIONS * item / 1e9
        + checks * (len(history_items) / n) * (history_bytes / max(1, len(history_items))) / 1e9
    )
    model["dynamodb"] = {
        "wru": wru,
        "rru": rru,
        "storage_gb": storage_gb,
        "usd": wru * PRICES["dynamodb_wru"]
        + rru * PRICES["dynamodb_rru"]
        + storage_gb * PRICES["dynamodb_storage_gb_month"],
    }
    # SQS: send (batches of 10, our code), receive + delete by Lambda's poller (batches of 10), idle polls.
    sqs_requests = checks * (per_check.get("sqs.SendMessageBatch", 0.1) + 0.1 + 0.1)
    sqs_requests += ESM_POLLERS * 3 * 60 * 24 * DAYS_PER_MONTH
    model["sqs"] = {"requests": sqs_requests, "usd": sqs_requests * PRICES["sqs_request"]}
    # KMS: per container, one GenerateDataKey per 5 minutes and one Decrypt per distinct data key it meets;
    # the warm figure measured here is one container's run; assume 20 warm containers, 2 keys/hour each.
    kms_requests = max(runs * 20 * 2, checks * kms_warm)
    model["kms"] = {"requests": kms_requests, "usd": kms_requests * PRICES["kms_request"]}
    log_per_check = (log_bytes + emf_bytes) / n + LAMBDA_PLATFORM_LOG_BYTES * invocations_per_check
    log_gb = (checks * log_per_check + runs * 2 * (LAMBDA_PLATFORM_LOG_BYTES + 1000)) / 1e9
    model["cloudwatch_logs"] = {"gb": log_gb, "usd": log_gb * PRICES["cloudwatch_logs_ingest_gb"]}
    model["scheduler"] = {"invocations": 2 * runs, "usd": 0.0}
    total = sum(part["usd"] for part in model.values())

    result = {
        "connections_measured": n,
        "intuit_latency_ms": args.latency_ms,
        "processed": drained.processed,
        "aws_requests_per_check_by_call": {k: round(v, 4) for k, v in per_check.items()},
        "scheduler_run_calls": scheduler_calls,
        "escalator_run_calls": escalator_calls,
        "escalator_summary": escalation,
        "kms_calls_per_check": {"warm_container": round(kms_warm, 4), "cold_container_first_check": cold_kms},
        "connection_item_bytes": {"seeded": size_before, "after_check": size_after},
        "write_units_per_write": write_units(item),
        "wru_per_check": round(wru_per_check, 3),
        "rru_per_check": 0,
        "history_items_per_check": round(len(history_items) / n, 4),
        "lambda_seconds_per_check": round(duration_per_check, 4),
        "lambda_invocations_per_check": round(invocations_per_check, 4),
        "scheduler_seconds_local": round(scheduler_seconds, 3),
        "scheduler_seconds_per_hourly_run_at_100k": round(scheduler_seconds_per_run, 2),
        "escalator_seconds_per_run_local": round(escalator_seconds, 3),
        "log_bytes_per_check": {
            "json_logs": round(log_bytes / n, 1),
            "emf": round(emf_bytes / n, 1),
            "lambda_platform_estimate": round(LAMBDA_PLATFORM_LOG_BYTES * invocations_per_check, 1),
        },
        "prices": PRICES,
        "monthly_model": {
            "connections": CONNECTIONS,
            "checks": checks,
            "parts": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in model.items()},
        },
        "usd_per_100k_connections_per_month": round(total, 2),
        "target_usd": 10.0,
        "meets_target": total < 10.0,
        "notes": [
            "Lambda duration is measured locally with the simulator adding "
            f"{args.latency_ms:.0f} ms per Intuit call (2 calls per check); on AWS, Intuit's real latency and "
            "the Lambda CPU share at 256 MB differ, so GB-s scale with the real per-call latency.",
            "Scheduled checks: scheduler and escalator each run 24 times a day (their Lambda time is included).",
            "KMS: data keys are cached 5 min / 10,000 uses, so KMS calls are per container, not per check.",
        ],
    }
    path = write_result("cost", result)
    print(
        f"AWS requests per healthy check ({n} checks): "
        + ", ".join(f"{k}={v:.3f}" for k, v in per_check.items())
    )
    print(f"KMS per check: warm {kms_warm:.4f}; cold container, first check: {cold_kms}")
    print(
        f"connection item: {size_before} B seeded, {size_after} B after a check -> {write_units(item)} WRU a write, "
        f"{wru_per_check:.2f} WRU per check, 0 RRU per check"
    )
    print(
        f"Lambda: {duration_per_check * 1000:.0f} ms per check locally, {invocations_per_check:.2f} invocations per "
        f"check; logs {log_per_check:.0f} B per check (JSON {log_bytes / n:.0f}, EMF {emf_bytes / n:.0f})"
    )
    print(f"cost per {CONNECTIONS:,} connections per month ({PRICES['region']}, prices {PRICES['as_of']}):")
    for part, values in model.items():
        print(f"  {part:<16} ${values['usd']:.2f}")
    print(f"  {'total':<16} ${total:.2f}  (target < $10)")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
