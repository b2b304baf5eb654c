"""Delivers the bus's events to the product's webhook endpoint, signed per Standard Webhooks.

One SQS record is one EventBridge event (the rule's target is the webhook queue). A failed attempt hides its
message until the next attempt is due (``retry_delay``) and is reported as a partial batch failure; after the
last attempt the queue's redrive policy moves it to the dead-letter queue (docs/webhooks.md: replay).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from standardwebhooks import Webhook

from qbo_health.domain.webhooks import is_delivered, payload_body, retry_delay, webhook_id, webhook_payload
from qbo_health.errors import WebhookRefused
from qbo_health.observability import logger

USER_AGENT = "qbo-connection-health-webhooks/1"


class Endpoint(Protocol):
    def post(self, body: bytes, headers: Mapping[str, str]) -> int: ...


class Retries(Protocol):
    def postpone(self, receipt_handle: str, delay: timedelta) -> None: ...


@dataclass
class WebhookDeps:
    endpoint: Endpoint
    signing_key: Callable[[], str]  # the Standard Webhooks secret (base64, optionally ``whsec_``-prefixed)
    retries: Retries
    now: Callable[[], datetime]


def signed_headers(payload: Mapping[str, Any], body: str, key: str, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers; the signature covers ``{webhook-id}.{webhook-timestamp}.{body}``."""
    message_id = webhook_id(payload)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(key).sign(message_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def deliver(event: Mapping[str, Any], deps: WebhookDeps) -> None:
    """One attempt: sign now (a fresh timestamp each attempt) and POST; raises WebhookRefused unless 2xx."""
    payload = webhook_payload(event)
    body = payload_body(payload)
    headers = signed_headers(payload, body, deps.signing_key(), deps.now())
    status = deps.endpoint.post(body.encode(), headers)
    if not is_delivered(status):
        raise WebhookRefused(f"the webhook endpoint answered {status}")


def deliver_record(record: SQSRecord, deps: WebhookDeps) -> None:
    event = json.loads(record.body)
    attempt = int(record.attributes.approximate_receive_count)
    try:
        deliver(event, deps)
    except Exception as error:  # refused, or our side failed (e.g. the secret): either way, back off
        delay = retry_delay(attempt)
        # Attempts used up: visible at once, so the next receive moves it to the dead-letter queue.
        deps.retries.postpone(record.receipt_handle, delay or timedelta(0))
        reason = str(error) if isinstance(error, WebhookRefused) else type(error).__name__
        logger.warning(
            "webhook attempt failed",
            extra={
                "connection_id": (event.get("detail") or {}).get("connection_id"),
                "webhook_type": event.get("detail-type"),
                "attempt": attempt,
                "retry_in_seconds": int(delay.total_seconds()) if delay else None,
                "reason": reason,
            },
        )
        raise
    logger.info(
        "webhook delivered",
        extra={
            "connection_id": (event.get("detail") or {}).get("connection_id"),
            "webhook_type": event.get("detail-type"),
            "attempt": attempt,
        },
    )


def deliver_webhook_batch(event: dict[str, Any], context: Any, deps: WebhookDeps) -> dict[str, Any]:
    """An SQS batch; failed records are reported individually (ReportBatchItemFailures)."""
    response = process_partial_response(
        event=event,
        record_handler=lambda record: deliver_record(record, deps),
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
    return dict(response)
