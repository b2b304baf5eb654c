"""The webhook queue's retry timer: a failed delivery stays hidden in SQS until its next attempt is due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


class WebhookRetries:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs, self._queue_url = sqs, queue_url

    def postpone(self, receipt_handle: str, delay: timedelta) -> None:
        """Hide the message for ``delay`` (counted from now); Lambda's poller receives it again after that."""
        self._sqs.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=int(delay.total_seconds()),
        )
