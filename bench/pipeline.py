"""Benchmark: pipeline throughput against a floor measured in the same run.

N healthy connections (last refreshed a day ago, so each check refreshes and probes) go through the real
scheduler -> SQS -> worker on the embedded stack, with the simulator adding 100 ms to every Intuit call. The
floor is what no implementation can beat on this stack: a plain loop of threads doing, per connection, the
same two Intuit calls (refresh, CompanyInfo) and the minimum DynamoDB operations of a check (a conditional
UpdateItem taking the lease that returns ALL_NEW, an UpdateItem persisting the new tokens, an UpdateItem
recording the outcome and releasing the lease), at the same concurrency. Throughput ratio: pipeline / floor.

    make bench-pipeline                               # 10,000 connections, concurrency 16
    python -m bench.pipeline --connections 2000 --concurrency 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import (
    AwsRequestCounter,
    SeededGrant,
    batch_write,
    connection_for,
    item_of,
    patch_moto_for_load,
    quiet_emf,
    seed_grants,
    stack_with_moto_process,
    write_result,
)
from local.runner import LocalLambda, load_handler
from local.stack import SIM_CLIENT_ID, SIM_CLIENT_SECRET, EmbeddedStack
from local.template import resources_of_type
from qbo_health.adapters.dynamo_models import ConnectionModel
from qbo_health.domain.schedule import SLOTS_PER_DAY

LATENCY_MS = 100


def create_floor_table(stack: EmbeddedStack) -> str:
    """A table defined as the connections table (keys and indexes), for the floor's items."""
    definition = resources_of_type(stack.template, "AWS::DynamoDB::Table")["ConnectionsTable"]
    name = "qbo-health-floor"
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    stack.client("dynamodb").create_table(
        TableName=name, **{k: definition[k] for k in keys if k in definition}
    )
    return name


def batch_write_to(stack: EmbeddedStack, table: str, items: Iterable[ConnectionModel]) -> None:
    dynamodb = stack.client("dynamodb")
    chunk: list[dict[str, Any]] = []
    for item in [*items, None]:
        if item is not None:
            chunk.append({"PutRequest": {"Item": item.serialize()}})
        if len(chunk) == 25 or (item is None and chunk):
            dynamodb.batch_write_item(RequestItems={table: chunk})
            chunk = []


class Floor:
    """The minimum work of a check, in a plain loop: 3 DynamoDB writes and the 2 Intuit calls."""

    def __init__(self, stack: EmbeddedStack, table: str) -> None:
        self.stack = stack
        self.table = table
        self.dynamodb = stack.client("dynamodb")  # botocore's default pool (10), as our own clients use
        base = stack.intuit.base_url
        self.token_url = f"{base}/oauth2/v1/tokens/bearer"
        self.api_base = base
        self.key = AESGCM(AESGCM.generate_key(bit_length=256))
        self.local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.trust_env = False  # no per-request read of the environment, as the Intuit client
        return session

    def check(self, grant: SeededGrant, now_epoch: int) -> None:
        key = {"connection_id": {"S": grant.connection_id}}
        owner = f"floor:{grant.connection_id}"
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET lease_owner = :owner, lease_expires_at = :until",
            ConditionExpression="attribute_exists(connection_id) AND "
            "(attribute_not_exists(lease_owner) OR lease_expires_at < :now OR lease_owner = :owner)",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":until": {"N": str(now_epoch + 120)},
                ":now": {"N": str(now_epoch)},
            },
            ReturnValues="ALL_NEW",
        )
        session = self._session()
        answer = session.post(
            self.token_url,
            data={"grant_type": "refresh_token", "refresh_token": grant.granted["refresh_token"]},
            auth=(SIM_CLIENT_ID, SIM_CLIENT_SECRET),
            headers={"Accept": "application/json"},
            timeout=10,
        )
        answer.raise_for_status()
        tokens = answer.json()
        nonce = os.urandom(12)
        sealed = nonce + self.key.encrypt(nonce, json.dumps(tokens).encode(), grant.connection_id.encode())
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET token_ciphertext = :blob, refreshed_at = :at, rotated_at = :at, "
            "access_expires_at = :at, refresh_expires_at = :at, version = version + :one",
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeValues={
                ":blob": {"B": sealed},
                ":at": {"S": "2026-01-05T06:00:00.000000+0000"},
                ":one": {"N": "1"},
                ":owner": {"S": owner},
            },
        )
        realm = grant.realm_id
        info = session.get(
            f"{self.api_base}/v3/company/{realm}/companyinfo/{realm}",
            params={"minorversion": "75"},
            headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"},
            timeout=10,
        )
        info.raise_for_status()
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET last_check_at = :at, last_success_at = :at, transient_failures = :zero, "
            "version = version + :one REMOVE lease_owner, lease_expires_at",
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeValues={
                ":at": {"S": "2026-01-05T06:00:00.000000+0000"},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":owner": {"S": owner},
            },
        )

    def run(self, grants: list[SeededGrant], concurrency: int) -> float:
        now_epoch = int(self.stack.clock.now().timestamp())
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(self.check, grant, now_epoch) for grant in grants]:
                future.result()
        return time.perf_counter() - started


def _cpu_share(cpu: float, wall: float) -> float:
    return round(cpu / wall, 2) if wall else 0.0


_WAITING = {
    "sleep",
    "select",
    "poll",
    "recv",
    "recv_into",
    "accept",
    "wait",
    "acquire",
    "readinto",
    "_wait_for_tstate_lock",
}


class Sampler:
    """A sampling profiler over every thread: where the process spends time, by package of the running frame.

    cProfile sees only its own thread; here the workers, moto's server threads and the simulator's share one
    interpreter, so every 5 ms each thread's innermost frame is attributed to a package, or to "waiting"
    when it is blocked (sleep, socket, lock), which is time spent off the GIL.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: Counter[str] = Counter()
        self.functions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                name = frame.f_code.co_name
                if name in _WAITING:
                    self.samples["waiting (I/O, sleep, locks)"] += 1
                    continue
                self.samples[_package(frame)] += 1
                self.functions[f"{_package(frame)}:{name}"] += 1

    def report(self, limit: int = 12) -> dict[str, Any]:
        running = sum(n for key, n in self.samples.items() if not key.startswith("waiting"))
        return {
            "running_samples_by_package": {
                key: round(n / running, 3)
                for key, n in self.samples.most_common()
                if not key.startswith("waiting")
            },
            "top_functions": {key: round(n / running, 3) for key, n in self.functions.most_common(limit)},
        }


def _package(frame: Any) -> str:
    """The package owning the innermost frame that is not the standard library (the caller of a builtin)."""
    while frame is not None:
        path = frame.f_code.co_filename
        for marker in ("site-packages/", "/shared/", "/local/", "/bench/"):
            if marker in path:
                rest = path.split(marker, 1)[1]
                return (
                    rest.split("/", 1)[0].removesuffix(".py")
                    if marker == "site-packages/"
                    else marker.strip("/")
                )
        frame = frame.f_back
    return "stdlib"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--profile", action="store_true", help="sample every thread during the pipeline run")
    parser.add_argument(
        "--all-at-once",
        action="store_true",
        help="one scheduler run with all_slots (every connection queued at once) instead of 24 hourly runs; "
        "moto's SQS is O(queued messages) per receive and delete, so this is slow at 10,000",
    )
    parser.add_argument("--no-moto-patches", action="store_true", help="run moto's SQS as installed")
    parser.add_argument(
        "--moto-process",
        action="store_true",
        help="run moto in a child process instead of the embedded stack's thread (off our GIL)",
    )
    args = parser.parse_args()

    moto_changes = [] if args.no_moto_patches else patch_moto_for_load()
    if args.moto_process:
        moto_changes.append("moto in a child process (not the embedded stack's in-process thread)")
    stack = (stack_with_moto_process() if args.moto_process else EmbeddedStack()).start()
    try:
        stack.intuit.control.set_rate_limit(False)  # one connection per realm: limits never bind anyway
        seeding = time.perf_counter()
        pipeline_ids = [f"pipe-{index:06d}" for index in range(args.connections)]
        floor_ids = [f"floor-{index:06d}" for index in range(args.connections)]
        pipeline_grants = seed_grants(stack, pipeline_ids)
        floor_grants = seed_grants(stack, floor_ids)
        # The floor's items are the pipeline's, in a table of the same definition: moto answers a query of the
        # slot index by scanning the whole table (DynamoDB reads only the slot), so sharing one table would
        # charge the scheduler for the floor's items.
        batch_write(item_of(connection_for(stack, grant)) for grant in pipeline_grants)
        floor_table = create_floor_table(stack)
        batch_write_to(stack, floor_table, (item_of(connection_for(stack, grant)) for grant in floor_grants))
        seed_seconds = time.perf_counter() - seeding
        print(f"seeded 2 x {args.connections} connections in {seed_seconds:.1f} s")

        stack.intuit.control.set_latency(args.latency_ms)
        stack.intuit.control.reset_stats()

        # Floor.
        floor = Floor(stack, floor_table)
        floor_sampler = Sampler().start() if args.profile else None
        cpu0 = time.process_time()
        floor_seconds = floor.run(floor_grants, args.concurrency)
        floor_cpu = time.process_time() - cpu0
        if floor_sampler:
            floor_sampler.stop()
        floor_stats = stack.intuit.control.stats()["calls"]
        stack.intuit.control.reset_stats()
        print(f"floor:    {args.connections / floor_seconds:.1f} checks/s ({floor_seconds:.1f} s)")

        # Pipeline: scheduler -> queue -> worker.
        lambdas = LocalLambda(stack)
        load_handler(
            "check_worker"
        )  # the worker's cold start (module import, wiring) outside the measurement
        counter = AwsRequestCounter().attach()
        sampler = Sampler().start() if args.profile else None
        scheduled, processed, failed, batches = 0, 0, 0, 0
        scheduler_seconds = pipeline_seconds = pipeline_cpu = 0.0
        # Production runs the scheduler hourly; each run queues the connections whose slot is due.
        runs = 1 if args.all_at_once else SLOTS_PER_DAY
        for _ in range(runs):
            cpu0 = time.process_time()
            started = time.perf_counter()
            with quiet_emf():
                summary = lambdas.run_scheduler(all_slots=args.all_at_once)
                scheduler_seconds += time.perf_counter() - started
                drained = lambdas.drain_checks(concurrency=args.concurrency)
            pipeline_seconds += time.perf_counter() - started
            pipeline_cpu += time.process_time() - cpu0
            scheduled += summary["scheduled"]
            processed, failed, batches = (
                processed + drained.processed,
                failed + drained.failed,
                batches + drained.batches,
            )
            stack.clock.advance(timedelta(hours=1))
        if sampler:
            sampler.stop()
        lambdas.close()
        counter.detach()
        pipeline_stats = stack.intuit.control.stats()["calls"]
        print(
            f"pipeline: {args.connections / pipeline_seconds:.1f} checks/s ({pipeline_seconds:.1f} s, "
            f"scheduler {scheduler_seconds:.1f} s)"
        )
    finally:
        stack.stop()

    floor_rate = args.connections / floor_seconds
    pipeline_rate = args.connections / pipeline_seconds
    ratio = pipeline_rate / floor_rate
    result: dict[str, Any] = {
        "connections": args.connections,
        "concurrency": args.concurrency,
        "intuit_latency_ms": args.latency_ms,
        "seed_seconds": round(seed_seconds, 1),
        "floor": {
            "seconds": round(floor_seconds, 2),
            "checks_per_second": round(floor_rate, 1),
            "cpu_seconds": round(floor_cpu, 1),
            "cpu_cores_busy": _cpu_share(floor_cpu, floor_seconds),
            "intuit_calls": floor_stats,
            "dynamodb_writes_per_check": 3,
        },
        "pipeline": {
            "seconds": round(pipeline_seconds, 2),
            "scheduler_seconds": round(scheduler_seconds, 2),
            "checks_per_second": round(pipeline_rate, 1),
            "cpu_seconds": round(pipeline_cpu, 1),
            "cpu_cores_busy": _cpu_share(pipeline_cpu, pipeline_seconds),
            "scheduler_runs": runs,
            "scheduled": scheduled,
            "processed": processed,
            "failed": failed,
            "batches": batches,
            "intuit_calls": pipeline_stats,
            "aws_requests_per_check": {
                key: round(value / args.connections, 3) for key, value in sorted(counter.calls.items())
            },
        },
        "ratio": round(ratio, 3),
        "target_ratio": 0.8,
        "meets_target": ratio >= 0.8,
        "moto_in_child_process": args.moto_process,
        "moto_workarounds": moto_changes,
        "timings_note": "wall-clock on the embedded stack: moto, the simulator and every worker thread share "
        "one Python process (one GIL); cpu_cores_busy is process CPU time / wall time.",
    }
    if sampler and floor_sampler:
        result["floor"]["profile"] = floor_sampler.report()
        print(
            "where the floor's running threads were (sampled): "
            + json.dumps(result["floor"]["profile"], indent=1)
        )
        result["profile"] = sampler.report()
        print(
            "where the pipeline's running threads were (sampled): " + json.dumps(result["profile"], indent=1)
        )
    path = write_result("pipeline", result)
    print(
        f"ratio pipeline/floor = {ratio:.2f} (target >= 0.8) at concurrency {args.concurrency}, "
        f"{args.latency_ms:.0f} ms per Intuit call; CPU busy: floor {result['floor']['cpu_cores_busy']}, "
        f"pipeline {result['pipeline']['cpu_cores_busy']} cores"
    )
    print(
        "AWS requests per check in the pipeline: " + json.dumps(result["pipeline"]["aws_requests_per_check"])
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
