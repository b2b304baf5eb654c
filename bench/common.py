"""Shared bench plumbing: AWS request counting through botocore's event hooks, bulk seeding, result files."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.intuit_sim import SimulatorControl
from local.intuit_sim.control import DEFAULT_CLIENT_ID
from local.seed import connection_of_grant
from local.stack import EmbeddedStack
from qbo_health import wiring
from qbo_health.adapters.connection_store import _attributes
from qbo_health.adapters.dynamo_models import ConnectionModel, ControlModel, HistoryModel
from qbo_health.domain.model import Authorizer, Connection

RESULTS = Path(__file__).resolve().parent / "results"


def dynamo_clients() -> list[Any]:
    """The botocore clients PynamoDB uses for our tables (deduplicated)."""
    clients = [
        model._get_connection().connection.client for model in (ConnectionModel, HistoryModel, ControlModel)
    ]
    return list({id(client): client for client in clients}.values())


class AwsRequestCounter:
    """Counts every AWS API call our code makes, by service and operation (``before-call`` events), and the
    items DynamoDB read (``ScannedCount`` of Query and Scan, ``after-call`` events)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.scanned: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._attached: list[Any] = []

    def attach(self, services: Sequence[str] = ("kms", "sqs", "sesv2", "events")) -> AwsRequestCounter:
        clients = [wiring.aws_client(service) for service in services] + dynamo_clients()
        for client in {id(client): client for client in clients}.values():
            client.meta.events.register("before-call.*.*", self._count)
            client.meta.events.register("after-call.dynamodb.*", self._scanned)
            self._attached.append(client)
        return self

    def detach(self) -> None:
        for client in self._attached:
            client.meta.events.unregister("before-call.*.*", self._count)
            client.meta.events.unregister("after-call.dynamodb.*", self._scanned)
        self._attached.clear()

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _scanned(self, model: Any, parsed: Any = None, **_: Any) -> None:
        if isinstance(parsed, dict) and "ScannedCount" in parsed:
            with self._lock:
                self.scanned[model.name] += int(parsed["ScannedCount"])

    def by_service(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for key, count in self.calls.items():
            totals[key.split(".", 1)[0]] += count
        return dict(totals)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.scanned.clear()


# --------------------------------------------------------------------------------------- bulk seeding


@dataclass(frozen=True)
class SeededGrant:
    connection_id: str
    realm_id: str
    user_id: str
    granted: dict[str, Any]


def _grant_over_http(
    base_url: str, connection_id: str, refreshed_days_ago: float, local: threading.local
) -> SeededGrant:
    control = getattr(local, "control", None)
    if control is None:  # one HTTP session per thread
        control = local.control = SimulatorControl(base_url)
    realm_id = control.create_company(name=f"Company of {connection_id}")
    email = f"admin.{connection_id}@example.com"
    user_id = control.add_user(realm_id, email=email, admin=True)
    granted = control.issue_tokens(realm_id, user_id, refreshed_days_ago=refreshed_days_ago)
    return SeededGrant(connection_id, realm_id, user_id, granted)


def _grant_in_process(stack: EmbeddedStack, connection_id: str, refreshed_days_ago: float) -> SeededGrant:
    # The same SimState methods the /_sim/ control routes call, without the HTTP round trips.
    state = stack.intuit.state
    realm_id = state.create_company(None, f"Company of {connection_id}", "active")
    email = f"admin.{connection_id}@example.com"
    user_id = state.add_user(realm_id, None, email, True)
    granted = state.issue_tokens(realm_id, user_id, DEFAULT_CLIENT_ID, refreshed_days_ago, None, None)
    return SeededGrant(connection_id, realm_id, user_id, granted)


def seed_grants(
    stack: EmbeddedStack,
    ids: Sequence[str],
    *,
    refreshed_days_ago: float = 1.0,
    workers: int = 8,
    over_http: bool = False,
) -> list[SeededGrant]:
    """A company, an admin and a grant per id at the simulator.

    By default through the simulator's state in this process (the embedded stack runs it here): ~10x faster
    than its control API, which ``over_http`` uses instead (in a thread pool; ~9 s per 1,000 on 2 cores).
    """
    if not over_http:
        return [_grant_in_process(stack, cid, refreshed_days_ago) for cid in ids]
    local = threading.local()
    base_url = stack.intuit.base_url
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(
            pool.map(
                lambda cid: _grant_over_http(base_url, cid, refreshed_days_ago, local), ids, chunksize=64
            )
        )


def connection_for(
    stack: EmbeddedStack,
    grant: SeededGrant,
    *,
    refreshed_days_ago: float = 1.0,
    tenant_id: str = "tenant-1",
    contacts: tuple[str, ...] = ("owner@example.com",),
) -> Connection:
    """The stored connection of a seeded grant (tokens sealed by the real vault), as ``local.seed`` makes it."""
    return connection_of_grant(
        stack,
        grant.connection_id,
        realm_id=grant.realm_id,
        tenant_id=tenant_id,
        granted=grant.granted,
        authorizer=Authorizer(grant.user_id, f"admin.{grant.connection_id}@example.com"),
        refreshed_days_ago=refreshed_days_ago,
        contacts=contacts,
    )


def item_of(connection: Connection, **overrides: Any) -> ConnectionModel:
    """The stored item of a connection (the store's own mapping); ``overrides`` set raw attributes."""
    attributes = {**_attributes(connection), **overrides}
    return ConnectionModel(connection.connection_id, **{k: v for k, v in attributes.items() if v is not None})


def batch_write(items: Iterable[ConnectionModel]) -> int:
    """BatchWriteItem, 25 items a request (PynamoDB retries unprocessed items)."""
    wiring.store_settings()  # binds the models to the stack's tables
    written = 0
    with ConnectionModel.batch_write() as batch:
        for item in items:
            batch.save(item)
            written += 1
    return written


def bulk_seed(
    stack: EmbeddedStack, ids: Sequence[str], *, refreshed_days_ago: float = 1.0, workers: int = 8
) -> list[SeededGrant]:
    """Healthy connections with live grants, fast: grants in a thread pool, items in batch writes."""
    grants = seed_grants(stack, ids, refreshed_days_ago=refreshed_days_ago, workers=workers)
    batch_write(item_of(connection_for(stack, g, refreshed_days_ago=refreshed_days_ago)) for g in grants)
    return grants


# --------------------------------------------------------------------------------------- results


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "commit": _git_commit(),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2, default=str))
    return path


class _EmfSink:
    """Keeps Powertools' EMF lines (JSON with "_aws") off the console and counts their bytes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lines = 0
        self.bytes = 0
        self._swallow_newline = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if text.startswith('{"_aws"'):
            with self._lock:
                self.lines += 1
                self.bytes += len(text.encode()) + 1
                self._swallow_newline = True
            return len(text)
        if text == "\n" and self._swallow_newline:
            self._swallow_newline = False
            return 1
        return int(self.stream.write(text))

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def quiet_emf() -> Iterator[_EmfSink]:
    """Powertools flushes metrics as EMF on stdout (also every 100 values, even with metrics disabled)."""
    sink = _EmfSink(sys.stdout)
    previous, sys.stdout = sys.stdout, sink
    try:
        yield sink
    finally:
        sys.stdout = previous


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


# --------------------------------------------------------------------------------------- moto workarounds

_moto_sqs_lock = threading.RLock()


def serialize_moto_sqs() -> None:
    """Serialize moto's SQS receive and delete in this process (moto runs in-process on the embedded stack).

    moto's ``receive_message`` picks visible messages from a snapshot while ``delete_message`` rebuilds
    ``Queue._messages`` without a lock, so under the runner's concurrent drain threads a message deleted
    during a receive is handed out again with a new receipt handle that no longer matches any message, and
    its delete fails with ReceiptHandleIsInvalid (seen 2 runs in 3 at 300 connections, concurrency 16).
    """
    from moto.sqs.models import SQSBackend

    for name in ("receive_message", "delete_message", "delete_message_batch", "change_message_visibility"):
        original = getattr(SQSBackend, name)
        if getattr(original, "_bench_locked", False):
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _moto_sqs_lock:
                return _original(self, *args, **kwargs)

        locked._bench_locked = True  # type: ignore[attr-defined]
        setattr(SQSBackend, name, locked)


def fast_moto_sqs_retention() -> None:
    """moto checks each received message's retention by computing *all* the queue's attributes, three of
    which count every message in the queue: a receive costs O(messages^2) (24 of 144 CPU-seconds of a
    300-connection run; hours at 10,000 queued). Read the one attribute directly instead (same result)."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.is_message_valid_based_on_retention_period, "_bench_fast", False):
        return

    def is_valid(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    is_valid._bench_fast = True  # type: ignore[attr-defined]
    SQSBackend.is_message_valid_based_on_retention_period = is_valid  # type: ignore[method-assign]


_SENDING_TO_A_STANDARD_QUEUE: contextvars.ContextVar[bool] = contextvars.ContextVar("sending", default=False)


def fast_moto_sqs_send() -> None:
    """moto's SendMessage reads one attribute (ContentBasedDeduplication, absent on a standard queue) through
    the property that computes *all* of them, three of which count every message in the queue: the scheduler's
    sends cost O(queued) each (88 of 546 s of a 10,000-connection run). While a standard queue's send runs,
    the three counts (which it never uses) are skipped: same messages, same answer."""
    from moto.sqs.models import Queue, SQSBackend

    if getattr(SQSBackend.send_message, "_bench_fast", False):
        return
    original_send = SQSBackend.send_message

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        if self.get_queue(queue_name).fifo_queue:
            return original_send(self, queue_name, *args, **kwargs)
        token = _SENDING_TO_A_STANDARD_QUEUE.set(True)
        try:
            return original_send(self, queue_name, *args, **kwargs)
        finally:
            _SENDING_TO_A_STANDARD_QUEUE.reset(token)

    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        count = getattr(Queue, name)
        setattr(
            Queue,
            name,
            property(
                lambda queue, count=count: 0 if _SENDING_TO_A_STANDARD_QUEUE.get() else count.fget(queue)
            ),
        )
    send_message._bench_fast = True  # type: ignore[attr-defined]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]


class MotoProcess:
    """moto's server in its own process (same interface as ``ThreadedMotoServer``), with the workarounds
    above applied there: moto's request handling then no longer shares our process's GIL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = (
            "import logging, sys; from bench.common import patch_moto_for_load; patch_moto_for_load(); "
            "logging.getLogger('werkzeug').setLevel(logging.WARNING); "
            "from moto.server import main; main(['-H', '127.0.0.1', '-p', sys.argv[1]])"
        )
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "shared"), str(root)])}
        self._process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", code, str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                import requests

                requests.get(f"http://127.0.0.1:{self.port}/moto-api/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("moto server process did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


def stack_with_moto_process() -> EmbeddedStack:
    """An embedded stack (not started) whose moto runs in a child process instead of a thread."""
    stack = EmbeddedStack()
    stack._moto = MotoProcess(stack._moto_port)  # type: ignore[assignment]
    return stack


def patch_moto_for_load() -> list[str]:
    """The moto workarounds above; returns what was changed (benchmarks record it in their result)."""
    serialize_moto_sqs()
    fast_moto_sqs_retention()
    fast_moto_sqs_send()
    return [
        "moto SQS receive/delete/change-visibility serialized (moto's Queue is not thread-safe)",
        "moto SQS retention check reads MessageRetentionPeriod directly (was O(n^2) per receive)",
        "moto SQS send skips the queue's three message counts it never uses (was O(queued) per send)",
    ]
