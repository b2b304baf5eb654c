"""webhook-delivery: one SQS batch of bus events, each POSTed signed to the product's endpoint."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from qbo_health import wiring
from qbo_health.observability import logger, metrics, traced
from qbo_health.service.webhooks import deliver_webhook_batch

wiring.webhook_deps()  # cold start: a missing or non-https WEBHOOK_URL fails here, not at the first event


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return deliver_webhook_batch(event, context, wiring.webhook_deps())
