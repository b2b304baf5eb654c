"""Invokes the real handlers with real event shapes, the way Lambda would.

The scheduler gets an EventBridge Scheduler event; the worker gets SQS batches of up to ten records read
from the embedded queue, and its partial-batch failures go back to the queue (moto's redrive policy then
moves a poisoned message to the dead-letter queue after ``maxReceiveCount`` receives). A delayed message
becomes due by the simulated clock (its ``not_before``), not by wall time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

from local.stack import ACCOUNT_ID, REGION, STACK_NAME, EmbeddedStack
from local.template import function_timeouts, queue_event_sources, resources_of_type
from qbo_health.observability import counts, metrics

# Metrics are collected from the Metrics object here, not flushed as EMF, so an empty flush is expected.
warnings.filterwarnings("ignore", message="No application metrics to publish")

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"


def wall_seconds() -> float:
    return time.monotonic()


@dataclass
class LambdaInvocationContext:
    """The context object Lambda passes to a handler (the attributes Powertools reads). The remaining time
    runs from the invocation's start on ``seconds``: the wall clock by default, as on Lambda (Intuit's latency
    and timeouts are real time here too), or the simulated clock when a test plays Intuit's latency on it."""

    function_name: str
    timeout_seconds: float = 60.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    seconds: Callable[[], float] = wall_seconds
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.seconds()

    def elapsed(self) -> float:
        return self.seconds() - self.started

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.timeout_seconds - self.elapsed()) * 1000), 0)


@dataclass
class DrainStats:
    batches: int = 0
    processed: int = 0
    failed: int = 0
    deferred: int = 0
    # The earliest ``not_before`` among the messages not yet due: when the next drain has work.
    next_due: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Set by the first drain thread that finds nothing due: the others stop instead of polling once more each.
    drained: threading.Event = field(default_factory=threading.Event, repr=False)


_modules: dict[str, ModuleType] = {}
_modules_lock = threading.Lock()


def load_handler(function: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import ``functions/<function>/app.py`` as Lambda does (its own module, loaded once per process)."""
    with _modules_lock:
        module = _modules.get(function)
        if module is None:
            path = FUNCTIONS_DIR / function / "app.py"
            spec = importlib.util.spec_from_file_location(f"lambda_{function}_app", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _modules[function] = module
    handler: Callable[[dict[str, Any], Any], Any] = module.handler
    return handler


def forget_handlers() -> None:
    """Drop loaded handler modules (their cold-start state is tied to a stack's resources)."""
    with _modules_lock:
        _modules.clear()


class LocalLambda:
    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack
        # Metrics the handlers emitted (EMF is off locally; the totals are kept here instead).
        self.metrics: Counter[str] = Counter()
        # What the handlers counted in their ``counts`` log lines (docs/ops.md sums them with Logs Insights).
        self.counts: Counter[str] = Counter()
        self._metrics_lock = threading.Lock()
        counts.subscribe(self._add_counts)
        self._sqs = stack.client("sqs")  # botocore clients are thread-safe: one for every drain thread
        # Drain threads live on between drains, as warm Lambda containers do (each keeps its own clients).
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        # Each function's timeout from the template; a test may shorten one to prove a time budget.
        self.timeouts: dict[str, float] = function_timeouts(stack.template)
        self.longest_invocation: dict[str, float] = {}  # seconds on the invocation clock, by function
        # What an invocation's time budget runs on: the wall clock, or (``use_simulated_invocation_time``)
        # the simulated clock, which the simulator's simulated latency moves.
        self.invocation_seconds: Callable[[], float] = wall_seconds
        # Webhook messages a failed attempt hid (ChangeMessageVisibility): message id -> (visible again at on
        # the simulated clock, receipt handle). See drain_webhooks.
        self._webhooks_hidden: dict[str, tuple[datetime, str]] = {}

    def use_simulated_invocation_time(self) -> None:
        """Invocations measure their time left on the simulated clock (see the simulator's simulated latency):
        a time-budget test then gives the same answer on any machine."""
        clock = self.stack.clock
        self.invocation_seconds = lambda: clock.now().timestamp()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _drain_pool(self, concurrency: int) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_size != concurrency:
            self.close()
            self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="worker-container")
            self._pool_size = concurrency
        return self._pool

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self._call(load_handler(function), function, event)

    def _call(
        self, handler: Callable[[dict[str, Any], Any], Any], function: str, event: dict[str, Any]
    ) -> Any:
        context = LambdaInvocationContext(
            function_name=function, timeout_seconds=self.timeouts[function], seconds=self.invocation_seconds
        )
        try:
            return handler(event, context)
        finally:
            elapsed = context.elapsed()
            with self._metrics_lock:
                self.longest_invocation[function] = max(self.longest_invocation.get(function, 0.0), elapsed)
            self._collect_metrics()

    def _add_counts(self, counted: dict[str, int]) -> None:
        with self._metrics_lock:
            self.counts.update(counted)

    def _collect_metrics(self) -> None:
        with self._metrics_lock:
            for name, metric in metrics.metric_set.items():
                self.metrics[name] += int(sum(metric.get("Value", [])))
            metrics.clear_metrics()

    def run_scheduler(self, *, all_slots: bool = False) -> dict[str, Any]:
        event = schedule_event(self.stack.clock.now(), {"all_slots": all_slots})
        result: dict[str, Any] = self.invoke("check_scheduler", event)
        return result

    def drain_checks(
        self, *, concurrency: int = 1, on_batch: Callable[[DrainStats], None] | None = None
    ) -> DrainStats:
        """Deliver every due check message to the worker until none is left; returns what happened."""
        stats = DrainStats()
        deferred: list[str] = []
        queue_url = self.stack.resources["CheckQueue"].ref
        if concurrency <= 1:
            self._drain_loop(queue_url, stats, deferred, on_batch)
        else:
            pool = self._drain_pool(concurrency)
            for future in [
                pool.submit(self._drain_loop, queue_url, stats, deferred, on_batch)
                for _ in range(concurrency)
            ]:
                future.result()
        for receipt in deferred:
            self._sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        stats.deferred = len(deferred)
        return stats

    def _drain_loop(
        self,
        queue_url: str,
        stats: DrainStats,
        deferred: list[str],
        on_batch: Callable[[DrainStats], None] | None,
    ) -> None:
        sqs = self._sqs
        handler = load_handler("check_worker")
        while not stats.drained.is_set():
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300, AttributeNames=["All"]
            ).get("Messages", [])
            now = self.stack.clock.now()
            due = [message for message in messages if _is_due(message, now)]
            later = [message for message in messages if not _is_due(message, now)]
            with stats.lock:
                deferred.extend(message["ReceiptHandle"] for message in later)
                for message in later:
                    not_before = _not_before(message)
                    if not_before is not None and (stats.next_due is None or not_before < stats.next_due):
                        stats.next_due = not_before
            if not due:
                stats.drained.set()
                break
            event = sqs_event(due, queue_url)
            try:
                response = self._call(handler, "check_worker", event)
                failed_ids = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
            except Exception:  # a failed invocation returns the whole batch to the queue, as Lambda does
                failed_ids = {message["MessageId"] for message in due}
            self._settle(sqs, queue_url, due, failed_ids)
            with stats.lock:
                stats.batches += 1
                stats.processed += len(due) - len(failed_ids)
                stats.failed += len(failed_ids)
            if on_batch:
                on_batch(stats)

    def deliver_ses_feedback(self, *records: dict[str, Any]) -> Any:
        """SES's event records (bounces, complaints) as the configuration set's SNS topic delivers them to the
        notice-feedback function; SES's publishing itself is not emulated (moto has none)."""
        topic = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{STACK_NAME}-notice-feedback"
        return self.invoke("notice_feedback", sns_event([json.dumps(record) for record in records], topic))

    def drain_webhooks(self) -> WebhookDrain:
        """As Lambda's SQS poller for webhook-delivery: batches of the event source's size go to the handler,
        delivered messages are deleted, failed ones stay hidden for as long as the function asked.

        SQS counts visibility in wall time, moto included; here it runs on the simulated clock instead: after
        each batch the time each failed message was hidden for (the function's ChangeMessageVisibility, or the
        receive's visibility timeout) is read from moto and the message is made visible again once that much
        simulated time has passed. Receive counts, and the redrive to the dead-letter queue, stay moto's.
        """
        stats = WebhookDrain()
        queue_id, source = queue_event_sources(self.stack.template)["webhook_delivery"]
        queue = self.stack.resources.get(queue_id)
        if queue is None:  # webhooks off: the template deploys no queue and no function
            return stats
        visibility = int(
            resources_of_type(self.stack.template, "AWS::SQS::Queue")[queue_id]["VisibilityTimeout"]
        )
        handler = load_handler("webhook_delivery")
        while True:
            self._reveal_due_webhooks(queue.ref)
            messages = self._sqs.receive_message(
                QueueUrl=queue.ref,
                MaxNumberOfMessages=int(source.get("BatchSize", 10)),
                VisibilityTimeout=visibility,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            try:
                response = self._call(handler, "webhook_delivery", sqs_event(messages, queue.ref))
                failed = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
            except Exception:  # the whole batch failed: every message returns after its visibility timeout
                failed = {message["MessageId"] for message in messages}
            now = self.stack.clock.now()
            for message in messages:
                if message["MessageId"] in failed:
                    hidden_for = _hidden_for(queue.attributes["QueueName"], message["MessageId"])
                    self._webhooks_hidden[message["MessageId"]] = (now + hidden_for, message["ReceiptHandle"])
                    stats.failed += 1
                else:
                    self._sqs.delete_message(QueueUrl=queue.ref, ReceiptHandle=message["ReceiptHandle"])
                    stats.delivered += 1
        stats.next_due = min((due for due, _ in self._webhooks_hidden.values()), default=None)
        return stats

    def _reveal_due_webhooks(self, queue_url: str) -> None:
        now = self.stack.clock.now()
        for message_id, (due, receipt) in list(self._webhooks_hidden.items()):
            if due <= now:
                del self._webhooks_hidden[message_id]
                with contextlib.suppress(ClientError):  # gone meanwhile (a replay): nothing to reveal
                    self._sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                    )

    @staticmethod
    def _settle(sqs: Any, queue_url: str, due: list[dict[str, Any]], failed_ids: set[str]) -> None:
        """As Lambda's poller: failed messages become visible again, the rest go in one DeleteMessageBatch."""
        done = [
            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
            for n, message in enumerate(due)
            if message["MessageId"] not in failed_ids
        ]
        try:
            for message in due:
                if message["MessageId"] in failed_ids:
                    sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
            if done:
                # Entries moto refuses (see below) come back as Failed, not as an error.
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
        except ClientError:
            # moto's queue is not thread-safe: a concurrent receive may have handed a message out again. Like a
            # late delete on AWS, it is then processed once more (checks are idempotent).
            pass


@dataclass
class WebhookDrain:
    delivered: int = 0
    failed: int = 0  # failed attempts (each retried later, or dead-lettered after the last)
    next_due: datetime | None = None  # when the earliest hidden message is visible again


def _hidden_for(queue_name: str, message_id: str) -> timedelta:
    """How long moto hides a message from now (what the last receive or ChangeMessageVisibility set)."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT_ID][REGION].get_queue(queue_name)
    for message in list(queue._messages):  # moto's own record of the message's visibility
        if message.id == message_id:
            return timedelta(seconds=round(max(message.visible_at - unix_time_millis(), 0) / 1000))
    return timedelta(0)


def _not_before(message: dict[str, Any]) -> datetime | None:
    try:
        not_before = json.loads(message["Body"]).get("not_before")
        return datetime.fromisoformat(not_before) if not_before else None
    except (ValueError, AttributeError, TypeError):
        return None  # malformed: the worker decides what to do with it


def _is_due(message: dict[str, Any], now: datetime) -> bool:
    not_before = _not_before(message)
    return not_before is None or not_before <= now


def sns_event(messages: list[str], topic_arn: str) -> dict[str, Any]:
    """The event Lambda gets from an SNS subscription: one record per message, its text in ``Sns.Message``."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:{uuid.uuid4()}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": topic_arn,
                    "Subject": None,
                    "Message": message,
                    "Timestamp": "1970-01-01T00:00:00.000Z",
                    "SignatureVersion": "1",
                    "MessageAttributes": {},
                },
            }
            for message in messages
        ]
    }


def schedule_event(now: datetime, detail: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge Scheduler invocation, in the shape Lambda receives."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/check-hourly"],
        "detail": detail,
    }


def sqs_event(messages: list[dict[str, Any]], queue_url: str) -> dict[str, Any]:
    queue_name = queue_url.rsplit("/", 1)[-1]
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}",
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }
