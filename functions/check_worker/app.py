"""check-worker: one SQS batch of connection checks, with partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from qbo_health import invocation, wiring
from qbo_health.observability import logger, metrics, traced
from qbo_health.service.check_batch import process_check_batch

wiring.check_batch_context()  # cold start: a configuration error fails here, not at the first message


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with invocation.running(context):
        return process_check_batch(event, context, wiring.check_batch_context())
