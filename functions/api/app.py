"""api: the HTTP API (internal routes for the product's backend, public routes for the browser)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from qbo_health import clock, invocation, wiring
from qbo_health.api.app import build_app
from qbo_health.observability import logger, metrics, traced

wiring.api_settings()  # cold start: a configuration error fails here, not at the first request
app: APIGatewayHttpResolver = build_app(wiring.api_deps, clock.now)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@traced
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with invocation.running(context):
        return app.resolve(event, context)
