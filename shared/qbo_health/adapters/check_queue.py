"""The check queue: connection ids go out in batches of 10 (one SQS request per ten checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from qbo_health.messages import CheckRequest

SQS_BATCH = 10
SQS_MAX_DELAY_SECONDS = 900


class SqsClient(Protocol):
    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]: ...


class CheckQueue:
    def __init__(self, sqs: SqsClient, queue_url: str, *, native_delay: bool = True) -> None:
        self._sqs = sqs
        self._url = queue_url
        # Locally the simulated clock decides when a delayed message is due (its `not_before`), so the
        # embedded stack turns SQS's real-time delay off.
        self._native_delay = native_delay

    def send(self, requests: Sequence[CheckRequest], *, delay_seconds: int = 0) -> int:
        delay = min(max(delay_seconds, 0), SQS_MAX_DELAY_SECONDS) if self._native_delay else 0
        failed = 0
        for start in range(0, len(requests), SQS_BATCH):
            batch = requests[start : start + SQS_BATCH]
            response = self._sqs.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(index), "MessageBody": request.model_dump_json(), "DelaySeconds": delay}
                    for index, request in enumerate(batch)
                ],
            )
            failed += len(response.get("Failed", []))
        return len(requests) - failed
