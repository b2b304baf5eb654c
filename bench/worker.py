"""Benchmark: what one check costs the worker, against a floor that does the same work, cold and warm.

Per check, for the worker (the real handler, fed batches of 10 from the check queue) and for the floor:

- CPU: the CPU time of the threads that run the checks (the worker checks a batch several at a time) (our code, PynamoDB, botocore, requests, cryptography).
  moto and the simulator answer from threads of their own, so their work is not in it. On Lambda at 256 MB
  this CPU takes 6.9 times as long (0.14 of a vCPU; bench/cost.py).
- Wall: with the simulator at Intuit's latency (``--latency-ms``, default 300 ms a call, 2 calls a check).

The floor does the same work in plain code: the conditional lease UpdateItem returning the item, opening the
stored token pair (KMS Decrypt of its data key, cached per data key, then AES-GCM), the refresh, sealing the
new pair under a data key of its own (GenerateDataKey), the token UpdateItem, the CompanyInfo probe and the
outcome UpdateItem. Its tokens were sealed by the real TokenVault, as the worker's were.

Each run is one day: the clock moves a day, so every token needs its refresh and yesterday's data keys are
not cached. Cold is the first batch of a fresh container (new clients, empty key caches); warm is the same
container's later batches. Figures: min / median / max over the runs.

    make bench-worker
    python -m bench.worker --connections 40 --runs 5 --latency-ms 300
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import (
    SeededGrant,
    batch_write,
    connection_for,
    item_of,
    patch_moto_for_load,
    seed_grants,
    write_result,
)
from bench.pipeline import batch_write_to, create_floor_table
from local.runner import LocalLambda, forget_handlers, sqs_event
from local.stack import SIM_CLIENT_ID, SIM_CLIENT_SECRET, EmbeddedStack
from qbo_health import clock, wiring
from qbo_health.adapters.token_vault import KMS_CONTEXT, TokenVault
from qbo_health.domain.activity import ActivityWrite, day_of
from qbo_health.service import check_batch

BATCH = 10  # the template's BatchSize


@dataclass
class Sample:
    """Per-check CPU and wall seconds of one batch."""

    cpu: float
    wall: float


@dataclass
class Side:
    cold: list[Sample] = field(default_factory=list)  # one per run: the container's first batch
    warm: list[Sample] = field(default_factory=list)  # one per run: the later batches, pooled

    def add(self, batches: list[tuple[float, float, int]]) -> None:
        (cpu, wall, n), *rest = batches
        self.cold.append(Sample(cpu / n, wall / n))
        checks = sum(b[2] for b in rest) or 1
        self.warm.append(Sample(sum(b[0] for b in rest) / checks, sum(b[1] for b in rest) / checks))


class PoolCpu:
    """CPU time of the worker's pool threads (it checks a batch ``check_concurrency`` at a time): each check's
    thread CPU, added up. The invoking thread's own CPU is measured apart."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._check = check_batch._check_record

    def install(self) -> None:
        def measured(*args: Any) -> Any:
            started = time.thread_time()
            try:
                return self._check(*args)
            finally:
                with self._lock:
                    self.seconds += time.thread_time() - started

        check_batch._check_record = measured  # type: ignore[assignment]

    def take(self) -> float:
        with self._lock:
            seconds, self.seconds = self.seconds, 0.0
        return seconds


POOL_CPU = PoolCpu()


def _timed(work: Callable[[], int]) -> tuple[float, float, int]:
    POOL_CPU.take()
    cpu, wall = time.thread_time(), time.perf_counter()
    checks = work()
    return time.thread_time() - cpu + POOL_CPU.take(), time.perf_counter() - wall, checks


# ---------------------------------------------------------------- the floor


class Floor:
    """A check's work in plain boto3, requests and AES-GCM: one instance is one container."""

    def __init__(self, stack: EmbeddedStack, table: str) -> None:
        self.stack = stack
        self.table = table
        self.dynamodb = stack.client("dynamodb")
        self.kms = stack.client("kms")
        self.key_id = stack.resources["TokenKey"].ref
        self.session = requests.Session()
        self.session.trust_env = False
        self.base = stack.intuit.base_url
        self.opened: dict[bytes, bytes] = {}  # data keys decrypted, by their encrypted form
        self.own_key: tuple[bytes, bytes] | None = None

    def _data_key(self, encrypted: bytes) -> bytes:
        if encrypted not in self.opened:
            answer = self.kms.decrypt(
                CiphertextBlob=encrypted, EncryptionContext=KMS_CONTEXT, KeyId=self.key_id
            )
            self.opened[encrypted] = answer["Plaintext"]
        return self.opened[encrypted]

    def _sealing_key(self) -> tuple[bytes, bytes]:
        if self.own_key is None:
            answer = self.kms.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=KMS_CONTEXT
            )
            self.own_key = (answer["Plaintext"], answer["CiphertextBlob"])
        return self.own_key

    def check(self, connection_id: str, now: int, *, probe: bool = True) -> None:
        key = {"connection_id": {"S": connection_id}}
        owner = {"S": f"floor:{connection_id}"}
        item = self.dynamodb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET lease_owner = :owner, lease_expires_at = :until",
            ConditionExpression="attribute_exists(connection_id) AND "
            "(attribute_not_exists(lease_owner) OR lease_expires_at < :now OR lease_owner = :owner)",
            ExpressionAttributeValues={
                ":owner": owner,
                ":until": {"N": str(now + 120)},
                ":now": {"N": str(now)},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        realm = item["realm_id"]["S"]
        binding = json.dumps({"connection_id": connection_id, "realm_id": realm}, sort_keys=True).encode()
        sealed = item["tc"]["B"]
        data_key = self._data_key(item["tk"]["B"])
        pair = json.loads(AESGCM(data_key).decrypt(sealed[:12], sealed[12:], binding))
        answer = self.session.post(
            f"{self.base}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": pair["r"]},
            auth=(SIM_CLIENT_ID, SIM_CLIENT_SECRET),
            headers={"Accept": "application/json"},
            timeout=10,
        )
        answer.raise_for_status()
        tokens = answer.json()
        plaintext, wrapped = self._sealing_key()
        nonce = os.urandom(12)
        clear = json.dumps({"v": 2, "r": tokens["refresh_token"], "ae": now + 3600, "re": now + 8_640_000})
        blob = nonce + AESGCM(plaintext).encrypt(nonce, clear.encode(), binding)
        # Without a probe the new pair goes with the outcome and the lease's release, as the worker writes it.
        tokens_set = "SET tc = :blob, tk = :key, rf = :at"
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression=tokens_set
            if probe
            else f"{tokens_set}, lc = :at REMOVE lease_owner, lease_expires_at",
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeValues={
                ":blob": {"B": blob},
                ":key": {"B": wrapped},
                ":at": {"N": str(now)},
                ":owner": owner,
            },
        )
        if not probe:
            return
        info = self.session.get(
            f"{self.base}/v3/company/{realm}/companyinfo/{realm}",
            params={"minorversion": "75"},
            headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"},
            timeout=10,
        )
        info.raise_for_status()
        self.dynamodb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET lc = :at, ls = :at REMOVE lease_owner, lease_expires_at",
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeValues={":at": {"N": str(now)}, ":owner": owner},
        )


def _floor_day(
    stack: EmbeddedStack, table: str, ids: list[str], *, probe: bool
) -> list[tuple[float, float, int]]:
    floor = Floor(stack, table)  # a fresh container
    now = int(stack.clock.now().timestamp())

    def batch(chunk: list[str]) -> Callable[[], int]:
        def run() -> int:
            for connection_id in chunk:
                floor.check(connection_id, now, probe=probe)
            return len(chunk)

        return run

    return [_timed(batch(ids[i : i + BATCH])) for i in range(0, len(ids), BATCH)]


# ---------------------------------------------------------------- the worker


def _worker_day(
    stack: EmbeddedStack, lambdas: LocalLambda, ids: list[str], *, evidence: bool
) -> list[tuple[float, float, int]]:
    wiring.reset()  # a fresh container: new clients, an empty key cache
    forget_handlers()
    if evidence:  # the product reported a successful call an hour ago: no probe is needed
        at = stack.clock.now() - timedelta(hours=1)
        wiring.connection_store().record_activity([ActivityWrite(i, at, None, day_of(at)) for i in ids])
    lambdas.run_scheduler(all_slots=True)
    sqs = stack.client("sqs")
    queue = stack.resources["CheckQueue"].ref
    batches = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=BATCH, VisibilityTimeout=300).get(
            "Messages", []
        )
        if not messages:
            return batches
        event = sqs_event(messages, queue)
        batches.append(_timed(functools.partial(_invoke, lambdas, event, len(messages))))
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
        )


def _invoke(lambdas: LocalLambda, event: dict[str, Any], checks: int) -> int:
    response = lambdas.invoke("check_worker", event)
    if response.get("batchItemFailures"):
        raise RuntimeError(f"the worker failed checks: {response}")
    return checks


# ---------------------------------------------------------------- seeding and the report


def _seed(stack: EmbeddedStack, prefix: str, n: int) -> list[SeededGrant]:
    return seed_grants(stack, [f"{prefix}-{i:05d}" for i in range(n)])


def _items(stack: EmbeddedStack, grants: Iterable[SeededGrant]) -> list[Any]:
    # Sealed by "another container" (a vault of its own), as yesterday's worker or the API would have.
    other = TokenVault(wiring.aws_client("kms"), wiring.token_vault()._key_id, clock.current())
    original = wiring.token_vault
    wiring.token_vault = lambda: other  # type: ignore[assignment]
    try:
        return [item_of(connection_for(stack, grant)) for grant in grants]
    finally:
        wiring.token_vault = original


def _spread(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {
        "min": round(min(values) * scale, 2),
        "median": round(statistics.median(values) * scale, 2),
        "max": round(max(values) * scale, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=40, help="checked by each side every run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="every connection has recent success evidence (the product's report): no probe, two writes a"
        " check, as most checks under the metered-call budget; by default every check probes (three writes)",
    )
    args = parser.parse_args()

    patch_moto_for_load()
    POOL_CPU.install()
    stack = EmbeddedStack().start()
    worker, floor = Side(), Side()
    try:
        stack.intuit.control.set_rate_limit(False)
        worker_grants = _seed(stack, "worker", args.connections)
        batch_write(_items(stack, worker_grants))
        table = create_floor_table(stack)
        floor_grants = _seed(stack, "floor", args.connections)
        batch_write_to(stack, table, _items(stack, floor_grants))
        stack.intuit.control.set_latency(args.latency_ms)
        lambdas = LocalLambda(stack)
        in_flight = wiring.check_settings().check_concurrency
        worker_ids = [g.connection_id for g in worker_grants]
        floor_ids = [g.connection_id for g in floor_grants]
        for run in range(args.runs):
            stack.clock.advance(timedelta(days=1))
            # Alternate which side goes first: this shared VM's speed drifts within a run.
            sides = [
                (
                    "worker",
                    lambda: worker.add(_worker_day(stack, lambdas, worker_ids, evidence=args.evidence)),
                ),
                (
                    "floor",
                    lambda: floor.add(_floor_day(stack, table, floor_ids, probe=not args.evidence)),
                ),
            ]
            for _, measure in sides if run % 2 == 0 else reversed(sides):
                measure()
        lambdas.close()
    finally:
        stack.stop()

    result: dict[str, Any] = {
        "probe": not args.evidence,
        "connections": args.connections,
        "runs": args.runs,
        "latency_ms": args.latency_ms,
    }
    for name, side in (("worker", worker), ("floor", floor)):
        result[name] = {
            phase: {
                "cpu_ms_per_check": _spread([s.cpu for s in samples]),
                "wall_ms_per_check": _spread([s.wall for s in samples]),
            }
            for phase, samples in (("cold", side.cold), ("warm", side.warm))
        }
    result["ratio_worker_over_floor"] = {
        phase: {
            "cpu": round(
                statistics.median(s.cpu for s in getattr(worker, phase))
                / statistics.median(s.cpu for s in getattr(floor, phase)),
                2,
            ),
            "wall": round(
                statistics.median(s.wall for s in getattr(worker, phase))
                / statistics.median(s.wall for s in getattr(floor, phase)),
                2,
            ),
        }
        for phase in ("cold", "warm")
    }
    path = write_result("worker-evidence" if args.evidence else "worker", result)
    result["worker_checks_at_once"] = in_flight
    print(
        f"{args.connections} checks a side, {args.runs} runs, Intuit at {args.latency_ms:.0f} ms a call;"
        f" the worker checks {in_flight} at a time, the floor one"
    )
    print(f"{'':<8}{'phase':<6}{'CPU ms/check min/med/max':>28}{'wall ms/check min/med/max':>30}")
    for name in ("worker", "floor"):
        for phase in ("cold", "warm"):
            cpu, wall = result[name][phase]["cpu_ms_per_check"], result[name][phase]["wall_ms_per_check"]
            print(
                f"{name:<8}{phase:<6}{cpu['min']:>10.1f}{cpu['median']:>9.1f}{cpu['max']:>9.1f}"
                f"{wall['min']:>12.0f}{wall['median']:>9.0f}{wall['max']:>9.0f}"
            )
    print(f"worker / floor (medians): {result['ratio_worker_over_floor']}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
