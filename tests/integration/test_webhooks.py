"""Signed webhooks on the embedded stack: the template's rule, queue and delivery function, played on
production's schedule (`ProductionSchedule`) with the simulated clock; a local HTTP receiver verifies every
signature with the official Standard Webhooks library."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import standardwebhooks.webhooks
from standardwebhooks import Webhook

from local.production import ProductionSchedule
from local.scenario import ProductEvents, open_issue_at
from local.seed import connection_id_in_slot, seed_connection
from local.stack import EmbeddedStack, free_port
from qbo_health.adapters.webhook_endpoint import WebhookEndpoint
from qbo_health.config import WebhookSettings
from qbo_health.domain.model import IssueType
from qbo_health.domain.webhooks import MAX_ATTEMPTS, retry_delay, retry_schedule
from qbo_health.errors import WebhookRefused
from qbo_health.ops.dead_letters import redrive

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


@dataclass
class Delivery:
    at: datetime
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """The product's webhook endpoint on 127.0.0.1: verifies each request with the official library, on the
    stack's simulated clock (the receiver lives in the same simulated world as the sender)."""

    stack: EmbeddedStack
    port: int = field(default_factory=free_port)
    answer: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    verified: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/qbo"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.receive(headers, body)
                self.send_response(receiver.answer)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: the port refuses connections until ``start`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def receive(self, headers: dict[str, str], body: bytes) -> None:
        self.deliveries.append(Delivery(self.stack.clock.now(), headers, body, self.answer))
        if "WebhookSigningSecret" not in self.stack.resources:
            self.refused.append("webhooks are off: no signing secret to verify with")
            return
        secret = self.stack.client("secretsmanager").get_secret_value(
            SecretId=self.stack.resources["WebhookSigningSecret"].ref
        )["SecretString"]
        try:
            payload = simulated_now(self.stack, lambda: Webhook(secret).verify(body, headers))
        except standardwebhooks.webhooks.WebhookVerificationError as error:
            self.refused.append(str(error))
            return
        if self.answer == 200:
            self.verified.append(payload)

    def accepted_ids(self) -> list[str]:
        return [payload["id"] for payload in self.verified]


_clock_lock = threading.Lock()


def simulated_now(stack: EmbeddedStack, verify: Any) -> Any:
    """Run the library's verification with its ``datetime.now`` read from the simulated clock."""

    class SimulatedDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> SimulatedDatetime:  # type: ignore[override]
            return stack.clock.now().astimezone(tz or UTC)  # type: ignore[return-value]

    with _clock_lock:
        real = standardwebhooks.webhooks.datetime
        standardwebhooks.webhooks.datetime = SimulatedDatetime  # type: ignore[misc]
        try:
            return verify()
        finally:
            standardwebhooks.webhooks.datetime = real  # type: ignore[misc]


@pytest.fixture
def receiver(_embedded_stack: EmbeddedStack) -> Iterator[Receiver]:
    endpoint = Receiver(_embedded_stack)
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def hooked(stack: EmbeddedStack, receiver: Receiver) -> Iterator[EmbeddedStack]:
    """The stack deployed with ``WebhookUrl`` set to the receiver (loopback: the local-only setting)."""
    stack.reset(parameters={"WebhookUrl": receiver.url})
    yield stack
    stack.reset()  # back to the template's default: webhooks off


def reminders_due(stack: EmbeddedStack, count: int, *, first_in: timedelta) -> list[str]:
    """``count`` connections whose day-3 reminder falls due ``first_in`` from now, then one per hour."""
    now = stack.clock.now()
    ids = []
    for n in range(count):
        seeded = seed_connection(stack, connection_id_in_slot(f"hook{n}", 23), company_name=f"Company {n}")
        due = now + first_in + timedelta(hours=n)
        open_issue_at(stack, seeded, IssueType.ADMIN_ACCESS_LOST, opened_at=due - timedelta(days=3))
        ids.append(seeded.connection_id)
    return ids


def dead_letters(stack: EmbeddedStack) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources["WebhookDeadLetterQueue"].ref, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_every_bus_event_arrives_signed_with_the_bus_schema(hooked, lambdas, receiver):
    bus = ProductEvents(hooked)
    reminders_due(hooked, 3, first_in=timedelta(minutes=10))

    ProductionSchedule(lambdas).run_for(timedelta(hours=4))

    events = bus.read()
    assert len(events) == 3
    assert receiver.refused == []
    assert len(receiver.deliveries) == 3
    assert sorted(receiver.accepted_ids()) == sorted(event["detail"]["event_id"] for event in events)
    for payload in receiver.verified:
        event = next(event for event in events if event["detail"]["event_id"] == payload["id"])
        assert payload["type"] == event["detail-type"] == "ConnectionReminder"
        assert payload["data"] == event["detail"]
        jsonschema.validate(payload["data"], json.loads((SCHEMAS / f"{payload['type']}.json").read_text()))
    for delivery in receiver.deliveries:
        assert delivery.headers["webhook-id"] == f"msg_{json.loads(delivery.body)['id']}"
        assert int(delivery.headers["webhook-timestamp"]) == int(delivery.at.timestamp())
        assert delivery.headers["webhook-signature"].startswith("v1,")


def test_a_receiver_answering_500_gets_the_same_delivery_again_after_the_backoff(hooked, lambdas, receiver):
    receiver.answer = 500
    reminders_due(hooked, 1, first_in=timedelta(minutes=10))
    schedule = ProductionSchedule(lambdas)
    schedule.run_for(timedelta(hours=1))
    refused = len(receiver.deliveries)
    assert refused >= 2 and receiver.verified == []

    receiver.answer = 200
    schedule.run_for(timedelta(hours=1))

    attempts = receiver.deliveries
    assert len(attempts) == refused + 1 and len(receiver.verified) == 1
    assert len({attempt.headers["webhook-id"] for attempt in attempts}) == 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert gaps == [retry_delay(attempt) for attempt in range(1, refused + 1)]  # 1, 2, 4, ... minutes
    # A fresh timestamp (and signature) per attempt: the receiver's replay window never rejects a retry.
    assert len({attempt.headers["webhook-timestamp"] for attempt in attempts}) == len(attempts)
    assert dead_letters(hooked) == 0


def test_an_endpoint_down_for_a_day_loses_nothing(hooked, lambdas, receiver):
    bus = ProductEvents(hooked)
    receiver.stop()
    reminders_due(hooked, 5, first_in=timedelta(minutes=10))  # one event an hour while the endpoint is down
    schedule = ProductionSchedule(lambdas)
    schedule.run_for(timedelta(hours=26))
    assert len(bus.read()) == 5
    assert receiver.deliveries == [] and dead_letters(hooked) == 0

    receiver.start()
    # Until the last event's last attempt: published up to 5 hours in, it has 32.5 hours of attempts.
    schedule.run_for(timedelta(hours=5) + retry_schedule()[-1] - timedelta(hours=26))

    assert receiver.refused == []
    assert len(receiver.verified) == 5
    assert len(set(receiver.accepted_ids())) == 5  # each event once (no attempt after the accepted one)
    assert len(receiver.deliveries) == 5
    assert dead_letters(hooked) == 0


def test_an_endpoint_down_past_the_last_attempt_dead_letters_the_event_and_a_replay_delivers_it(
    hooked, lambdas, receiver
):
    receiver.answer = 503
    reminders_due(hooked, 1, first_in=timedelta(minutes=10))
    schedule = ProductionSchedule(lambdas)
    schedule.run_for(retry_schedule()[-1] + timedelta(hours=2))

    assert len(receiver.deliveries) == MAX_ATTEMPTS
    assert retry_schedule()[-1] >= timedelta(hours=24)
    assert receiver.deliveries[-1].at - receiver.deliveries[0].at == retry_schedule()[-1]
    assert dead_letters(hooked) == 1

    # The endpoint is fixed; replay the DLQ into the webhook queue. On AWS: StartMessageMoveTask
    # (docs/webhooks.md), which moto does not implement; the ops tool's SQS re-drive moves messages the same way.
    receiver.answer = 200
    sqs = hooked.client("sqs")
    moved = redrive(sqs, hooked.resources["WebhookDeadLetterQueue"].ref, hooked.resources["WebhookQueue"].ref)
    assert moved.moved == 1
    schedule.run_for(timedelta(hours=1))

    assert len(receiver.verified) == 1 and dead_letters(hooked) == 0
    assert receiver.deliveries[-1].headers["webhook-id"] == receiver.deliveries[0].headers["webhook-id"]


def test_the_production_setting_refuses_the_loopback_receiver_before_connecting(receiver):
    body, headers = b'{"type":"ConnectionReminder"}', {"content-type": "application/json"}
    production = WebhookEndpoint(receiver.url, allow_loopback=WebhookSettings().webhook_allow_loopback)

    with pytest.raises(WebhookRefused, match="non-public address"):
        production.post(body, headers)
    assert receiver.deliveries == []  # no request reached it

    local_only = WebhookEndpoint(receiver.url, allow_loopback=True)  # the embedded stack's setting
    assert local_only.post(body, headers) == 200
    assert len(receiver.deliveries) == 1


def test_with_the_url_empty_nothing_is_deployed_and_nothing_delivered(stack, lambdas, receiver):
    bus = ProductEvents(stack)
    reminders_due(stack, 2, first_in=timedelta(minutes=10))

    ProductionSchedule(lambdas).run_for(timedelta(hours=3))

    assert len(bus.read()) == 2  # the bus works as before
    assert not any(logical_id.startswith("Webhook") for logical_id in stack.resources)
    rules = stack.client("events").list_rules(EventBusName=stack.resources["EventBus"].ref)["Rules"]
    assert [rule["Name"] for rule in rules] == ["product-events"]
    assert "WEBHOOK_URL" not in stack.environment
    assert lambdas.drain_webhooks().delivered == 0
    assert receiver.deliveries == []
