"""Re-drive the check queue's dead-letter queue: an SQS adapter (receive, send, delete), ops-only.

The DLQ is found from the check queue's ``RedrivePolicy``, so no extra setting is needed. A message leaves
the DLQ only after the check queue accepted its copy: a failure halfway leaves it where it was (it may then
be sent twice, which checks tolerate: a check is idempotent under its lease).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from qbo_health.errors import QboHealthError

SQS_BATCH = 10


class NoDeadLetterQueue(QboHealthError):
    """The check queue has no redrive policy, so there is no DLQ to re-drive."""


class SqsClient(Protocol):
    def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]: ...

    def get_queue_url(self, **kwargs: Any) -> dict[str, Any]: ...

    def receive_message(self, **kwargs: Any) -> dict[str, Any]: ...

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]: ...

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RedriveResult:
    moved: int
    failed: int


def dead_letter_queue_url(sqs: SqsClient, queue_url: str) -> str:
    """The DLQ of ``queue_url``: its RedrivePolicy's ``deadLetterTargetArn``, looked up by name."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise NoDeadLetterQueue("the check queue has no RedrivePolicy, so no dead-letter queue")
    arn = str(json.loads(policy)["deadLetterTargetArn"])
    # arn:aws:sqs:<region>:<account>:<name>
    _, _, _, _, account, name = arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def redrive(
    sqs: SqsClient,
    source_url: str,
    target_url: str,
    *,
    max_messages: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RedriveResult:
    """Move up to ``max_messages`` (all when None) from ``source_url`` to ``target_url``."""
    moved = failed = 0
    while max_messages is None or moved + failed < max_messages:
        wanted = SQS_BATCH if max_messages is None else min(SQS_BATCH, max_messages - moved - failed)
        messages = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=wanted,
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            break
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
        accepted = {item["Id"] for item in sent.get("Successful", [])}
        # Not accepted: left in the DLQ (visible again after the visibility timeout), counted as failed.
        failed += len(messages) - len(accepted)
        to_delete = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
            if str(index) in accepted
        ]
        if to_delete:
            sqs.delete_message_batch(QueueUrl=source_url, Entries=to_delete)
        moved += len(to_delete)
        if on_progress is not None:
            on_progress(moved)
        if len(accepted) < len(messages):
            break  # the check queue refuses some: stop rather than spin on them
    return RedriveResult(moved=moved, failed=failed)
