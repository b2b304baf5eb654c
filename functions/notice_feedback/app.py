"""notice-feedback: SES's bounce and complaint records (via the configuration set's SNS topic) suppress addresses."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from qbo_health import clock, wiring
from qbo_health.observability import logger, traced
from qbo_health.service.deliverability import record_feedback

wiring.suppression_store()  # cold start


@logger.inject_lambda_context(clear_state=True)
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return {"suppressed": record_feedback(event, wiring.suppression_store(), clock.now())}
