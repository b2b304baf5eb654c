"""escalator: hourly, staged notices for open issues and a safe disconnect at the end of the grace period."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from qbo_health import clock, invocation, wiring
from qbo_health.observability import logger, metrics, traced
from qbo_health.service.escalation import run_escalation

wiring.escalation_deps()  # cold start: a configuration error (e.g. a bad ESCALATION_POLICY) fails here


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with invocation.running(context):
        summary = run_escalation(wiring.escalation_deps(), clock.now(), invocation.time_left)
    logger.info("escalation run", extra={"open_issues": summary.open_issues, "paused": summary.paused})
    return {
        "open_issues": summary.open_issues,
        "paused": summary.paused,
        "checks_fresh": summary.checks_fresh,
        "notices": dict(summary.notices),
        "disconnected": summary.disconnected,
        "healed": summary.healed,
        "blocked": dict(summary.blocked),
        "dry_run": summary.would,
        "left_for_next_run": summary.left_for_next_run,
        "failed": summary.failed,
    }
