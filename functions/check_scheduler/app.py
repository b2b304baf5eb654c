"""check-scheduler: hourly, sends the connections whose daily slot is due to the check queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from qbo_health import clock, wiring
from qbo_health.domain.probe_budget import early_burn
from qbo_health.observability import counts, logger, metrics, traced
from qbo_health.service.scheduling import ScheduleSummary, schedule_checks


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
    _budget_metrics(
        summary,
        budget.monthly_budget,
        early_burn_now=bool(summary.budget and early_burn(summary.budget, now, budget)),
    )
    counts.add("ChecksScheduled", summary.scheduled)
    for state, count in summary.by_state.items():
        counts.add(f"Connections_{state}", count)
    for issue, count in summary.by_issue.items():
        counts.add(f"Issues_{issue}", count)
    logger.info(
        "check run scheduled",
        extra={
            "run_id": summary.run_id,
            "scheduled": summary.scheduled,
            "probes_granted": summary.probes_granted,
            "probes_deferred": summary.probes_deferred,
        },
    )
    return {"run_id": summary.run_id, "slots": list(summary.slots), "scheduled": summary.scheduled}


def _budget_metrics(summary: ScheduleSummary, monthly_budget: int, *, early_burn_now: bool) -> None:
    """The burn the dashboard draws and the early-burn alarm reads (80% of the month before day 24); the
    grants and deferrals go to the run's ``counts`` line (a metric is billed for each hour it is sent)."""
    counts.add("ProbesGranted", summary.probes_granted)
    counts.add("ProbesDeferred", summary.probes_deferred)
    if summary.budget is not None and monthly_budget > 0:
        used = 100.0 * summary.budget.spent / monthly_budget
        metrics.add_metric(name="MeteredBudgetUsedPercent", unit=MetricUnit.Percent, value=used)
    if early_burn_now:  # the alarm treats a missing value as fine
        metrics.add_metric(name="MeteredBudgetEarlyBurn", unit=MetricUnit.Count, value=1)
