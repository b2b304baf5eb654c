"""Benchmark: AWS requests, bytes and worker time per healthy check, the inputs of the cost model (bench.cost).

Runs healthy daily checks through the real scheduler and worker on the embedded stack and counts every AWS
call with botocore ``before-call`` hooks (by service and operation), KMS calls per check for a warm and a
cold container, DynamoDB write/read units from the stored item's real size (DynamoDB's item size rules),
Lambda duration per check, and the bytes of log lines (JSON logs + EMF metrics + Lambda's platform lines).

    make bench-cost    (this, then bench.cost)
    python -m bench.cost_measure --connections 300 --latency-ms 100
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
from qbo_health.domain.activity import ActivityWrite, day_of
from qbo_health.messages import CheckRequest
from qbo_health.observability import logger
from qbo_health.service.health_check import check_connection

LAMBDA_PLATFORM_LOG_BYTES = 450  # START, END and REPORT (with X-Ray's trace id) lines an invocation (approx.)


# ------------------------------------------------------------------ DynamoDB item size rules


# DynamoDB's documented item size rules ("Item sizes and formats", Amazon DynamoDB Developer Guide,
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html): an item is
# the sum of its attribute names' UTF-8 lengths and its values' sizes. A string is its UTF-8 length; a binary
# its byte count; a number about 1 byte per two significant digits (leading and trailing zeroes trimmed) plus
# 1; null and Boolean 1 byte; a list or map 3 bytes plus 1 byte per element plus its elements (a map's
# element includes its key's name); a set the sum of its elements.


def attribute_value_size(value: dict[str, Any]) -> int:
    """Bytes of one AttributeValue per DynamoDB's documented item size rules (above)."""
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").strip("0") or "0"
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
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="the product reported a successful call for every connection an hour before the run: no probe"
        " (most checks under the metered-call budget); by default every check probes",
    )
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

        if args.evidence:
            at = stack.clock.now() - timedelta(hours=1)
            wiring.connection_store().record_activity(
                [ActivityWrite(g.connection_id, at, None, day_of(at)) for g in grants]
            )
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
            started, cpu_started = time.perf_counter(), time.thread_time()
            # One container, batches of 10 in sequence, in this thread: its CPU time is the worker's alone
            # (moto and the simulator serve from threads of their own).
            drained = lambdas.drain_checks(concurrency=1)
            drain_seconds, drain_cpu = time.perf_counter() - started, time.thread_time() - cpu_started
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
    item = max(size_before, size_after)
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
        "history_items_per_check": round(len(history_items) / n, 4),
        "history_bytes": history_bytes,
        "worker_wall_ms_per_check": round(drain_seconds / n * 1000, 1),
        "worker_cpu_ms_per_check": round(drain_cpu / n * 1000, 2),
        "lambda_invocations_per_check": round(drained.batches / n, 4),
        "scheduler_seconds_local": round(scheduler_seconds, 3),
        "escalator_seconds_local": round(escalator_seconds, 3),
        "log_bytes_per_check": {"json_logs": round(log_bytes / n, 1), "emf": round(emf_bytes / n, 1)},
        "note": "bench.cost's Workload takes these figures; python -m bench.cost prints what they cost.",
    }
    path = write_result("cost_measure-evidence" if args.evidence else "cost_measure", result)
    print(
        f"AWS requests per healthy check ({n} checks): "
        + ", ".join(f"{k}={v:.3f}" for k, v in per_check.items())
    )
    print(f"KMS per check: warm {kms_warm:.4f}; cold container, first check: {cold_kms}")
    print(
        f"connection item: {size_before} B seeded, {size_after} B after a check -> {write_units(item)} WRU a write"
    )
    print(
        f"worker: {drain_seconds / n * 1000:.0f} ms wall and {drain_cpu / n * 1000:.1f} ms CPU (its thread) a check,"
        f" {drained.batches / n:.2f} invocations a check; logs {(log_bytes + emf_bytes) / n:.0f} B a check"
        f" (JSON {log_bytes / n:.0f}, EMF {emf_bytes / n:.0f}); history items a check {len(history_items) / n:.3f}"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
