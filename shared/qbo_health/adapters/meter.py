"""The month's metered-call budget in the control table: one item per month, atomic counters.

Every grant is one conditional ``ADD``: it succeeds only while the month's total stays within the budget and
no metering refusal was recorded, so concurrent schedulers and workers can never spend past the budget.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.exceptions import DoesNotExist, UpdateError

from qbo_health.adapters.dynamo_models import ControlModel
from qbo_health.domain.probe_budget import BudgetState, current, month_of

METER_PREFIX = "METER#"
# Month items stay a while for ``ops budget`` comparisons, then DynamoDB's TTL removes them.
METER_RETENTION = timedelta(days=400)


class MeterStore:
    def __init__(self, monthly_budget: int) -> None:
        self.monthly_budget = monthly_budget

    def state(self, now: datetime) -> BudgetState:
        month = month_of(now)
        try:
            item = ControlModel.get(f"{METER_PREFIX}{month}", consistent_read=True)
        except DoesNotExist:
            return BudgetState(month)
        return current(BudgetState(month, int(item.spent or 0), item.refused_at), now)

    def grant(self, now: datetime, calls: int) -> bool:
        """Reserve ``calls`` metered calls from ``now``'s month; False when the budget or a refusal says no."""
        if calls <= 0:
            return True
        item = ControlModel(f"{METER_PREFIX}{month_of(now)}")
        within = ControlModel.spent.does_not_exist() | (ControlModel.spent <= self.monthly_budget - calls)
        if calls > self.monthly_budget:
            return False
        try:
            item.update(
                actions=[
                    ControlModel.spent.add(calls),
                    ControlModel.expires_at.set(int((now + METER_RETENTION).timestamp())),
                ],
                condition=within & ControlModel.refused_at.does_not_exist(),
            )
        except UpdateError as error:
            if getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def take(self, now: datetime) -> bool:
        """One metered call outside a scheduled run's grant (a confirming re-check, a retry, ops, the API)."""
        return self.grant(now, 1)

    def stop(self, now: datetime) -> None:
        """Intuit refused a metered call: no more grants this month (the first refusal's time stays)."""
        ControlModel(f"{METER_PREFIX}{month_of(now)}").update(
            actions=[
                ControlModel.refused_at.set(ControlModel.refused_at | now),
                ControlModel.expires_at.set(int((now + METER_RETENTION).timestamp())),
            ]
        )
