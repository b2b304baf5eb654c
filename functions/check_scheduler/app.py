"""check-scheduler: hourly, sends the connections whose daily slot is due to the check queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from qbo_health import clock, wiring
from qbo_health.observability import logger, metrics, traced
from qbo_health.service.scheduling import report_run, schedule_checks


class ScheduleInput(BaseModel):
    """The schedule's input; ``all_slots`` sends every connection (ops: check everything now)."""

    model_config = ConfigDict(extra="ignore")
    all_slots: bool = False


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    options = ScheduleInput.model_validate(event.get("detail") or event)
    now = clock.now()
    budget = wiring.budget_policy(wiring.check_settings())
    summary = schedule_checks(
        wiring.connection_store(),
        wiring.check_queue(),
        wiring.control_store(),
        wiring.meter_store(),
        budget,
        now,
        run_id=context.aws_request_id,
        all_slots=options.all_slots,
    )
    report_run(summary, budget, now)
    return {"run_id": summary.run_id, "slots": list(summary.slots), "scheduled": summary.scheduled}
