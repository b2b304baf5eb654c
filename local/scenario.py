"""What a scenario needs besides time (`local.production`) and seeding (`local.seed`): a connection broken
at a stage of its escalation, and what the customer and the product received.

    seeded = seed_connection(stack, connection_id_in_slot("acme", 9), company_name="Acme")
    open_issue_at(stack, seeded, IssueType.ADMIN_ACCESS_LOST, opened_at=now - timedelta(days=3))
    ProductionSchedule(lambdas).run_for(timedelta(days=1))
    notices_sent(seeded.connection_id)   # [(when, "REMINDER_1"), ...]
    emails_sent()                        # what SES accepted: to, subject, text, html
    events = ProductEvents(stack); ...; events.read()   # what the product's bus subscription received
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from moto.ses.models import ses_backends

from local.seed import SeededConnection
from local.stack import ACCOUNT_ID, REGION, EmbeddedStack
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import HistoryModel
from qbo_health.domain.model import ConnectionState, IssueType, OpenIssue


def break_at_intuit(stack: EmbeddedStack, seeded: SeededConnection, issue: IssueType) -> None:
    """Make Intuit answer the way that issue shows itself (the help article's three causes, and an ended
    subscription)."""
    control = stack.intuit.control
    if issue is IssueType.ADMIN_ACCESS_LOST:
        control.set_admin(seeded.realm_id, seeded.user_id, False)
    elif issue is IssueType.AUTHORIZATION_EXPIRED:
        control.disconnect_app(seeded.realm_id)
    elif issue is IssueType.SUBSCRIPTION_ENDED:
        control.set_subscription_status(seeded.realm_id, "CANCELED")
    else:
        control.suspend(seeded.realm_id)


def open_issue_at(
    stack: EmbeddedStack, seeded: SeededConnection, issue: IssueType, *, opened_at: datetime
) -> OpenIssue:
    """A connection whose ``issue`` was confirmed at ``opened_at``, broken at Intuit, with every stage due
    before now recorded as sent, as the escalator would have left it. Lets a scenario start at any stage."""
    break_at_intuit(stack, seeded, issue)
    schedule = wiring.escalation_deps().policy.schedule_for(issue)
    now = stack.clock.now()
    sent = tuple(
        (stage.value, opened_at + timedelta(days=day))
        for stage, day in schedule.stage_days
        if opened_at + timedelta(days=day) <= now
    )
    opened = OpenIssue(
        type=issue,
        episode_id=f"episode-{seeded.connection_id}",
        first_seen_at=opened_at - timedelta(minutes=15),
        opened_at=opened_at,
        deadline=opened_at + timedelta(days=schedule.disconnect_day),
        notices=sent,
    )
    store = wiring.connection_store()
    connection = store.get(seeded.connection_id)
    broken = replace(connection, issue=opened, state=ConnectionState.NEEDS_ATTENTION, last_check_at=opened_at)
    store.save(broken, changed_from=connection)
    return opened


def notices_sent(connection_id: str) -> list[tuple[datetime, str]]:
    """(when, kind) of every notice sent for a connection, from its history (oldest first)."""
    sent: list[tuple[datetime, str]] = []
    for item in HistoryModel.query(connection_id):
        if item.kind == "NOTICE_CLAIM" and item.status == "SENT" and item.entry.endswith("#EVENT"):
            sent.append((item.at, json.loads(item.detail)["kind"]))
    return sorted(sent)


@dataclass(frozen=True)
class SentEmail:
    to: tuple[str, ...]
    subject: str
    body: str  # the HTML part when there is one (what moto keeps of an SES v2 simple message)


def emails_sent() -> list[SentEmail]:
    """Every e-mail SES accepted, oldest first."""
    return [
        SentEmail(
            to=tuple(message.destinations.get("ToAddresses", ())),
            subject=str(message.subject),
            body=str(message.body),
        )
        for message in ses_backends[ACCOUNT_ID][REGION].sent_messages
        if hasattr(message, "subject")
    ]


class ProductEvents:
    """The product's subscription to the bus: a rule delivering every event of ours to a queue."""

    def __init__(self, stack: EmbeddedStack, name: str = "product-events") -> None:
        events, self._sqs = stack.client("events"), stack.client("sqs")
        bus = stack.resources["EventBus"].ref
        self._url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        pattern = json.dumps({"source": ["qbo-connection-health"]})
        events.put_rule(Name=name, EventBusName=bus, EventPattern=pattern)
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": name, "Arn": arn}])

    def read(self) -> list[dict[str, Any]]:
        """The events delivered since the last read (EventBridge envelopes, ``detail`` inside)."""
        received: list[dict[str, Any]] = []
        while True:
            batch = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
