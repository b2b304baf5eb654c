"""The hourly scheduler: send the connections whose daily slot is due to the check queue, and decide which
of them this hour's share of the metered-call budget pays a probe for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit

from qbo_health.domain.probe_budget import (
    BudgetPolicy,
    BudgetState,
    Evidence,
    Selection,
    choose_probes,
    early_burn,
)
from qbo_health.domain.schedule import SLOTS_PER_DAY, due_slot
from qbo_health.messages import CheckRequest
from qbo_health.observability import counts, logger, metrics


class Member(Protocol):
    @property
    def connection_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def issue_type(self) -> str | None: ...


class SlotSource(Protocol):
    def slot_members(self, slot: int) -> Iterable[Member]: ...

    def evidence(self, connection_ids: Sequence[str]) -> list[Evidence]: ...


class Sender(Protocol):
    def send(self, requests: Sequence[CheckRequest], *, delay_seconds: int = 0) -> int: ...


class RunLog(Protocol):
    def start_run(self, run_id: str, now: datetime, scheduled: int) -> None: ...


class Meter(Protocol):
    def state(self, now: datetime) -> BudgetState: ...

    def grant(self, now: datetime, calls: int) -> bool: ...


@dataclass(frozen=True)
class ScheduleSummary:
    run_id: str
    slots: tuple[int, ...]
    scheduled: int
    sent: int
    # Over a day the 24 hourly runs see every checkable connection once: the dashboard sums these.
    by_state: Counter[str] = field(default_factory=Counter)
    by_issue: Counter[str] = field(default_factory=Counter)
    # Metered probes this run paid for, and the connections that wanted one the budget could not pay.
    probes_granted: int = 0
    probes_deferred: int = 0
    budget: BudgetState | None = None


def schedule_checks(
    source: SlotSource,
    queue: Sender,
    runs: RunLog,
    meter: Meter,
    budget: BudgetPolicy,
    now: datetime,
    *,
    run_id: str,
    all_slots: bool = False,
) -> ScheduleSummary:
    slots = tuple(range(SLOTS_PER_DAY)) if all_slots else (due_slot(now),)
    members = [member for slot in slots for member in source.slot_members(slot)]
    ids = [member.connection_id for member in members]
    # The run exists before any worker reports on it, so the outage guard knows the run's size.
    runs.start_run(run_id, now, scheduled=len(ids))
    selection, state = _grant_probes(source, meter, budget, ids, now)
    probed = set(selection.probe)
    requests = [
        CheckRequest(connection_id=connection_id, run_id=run_id, probe_granted=connection_id in probed)
        for connection_id in ids
    ]
    sent = queue.send(requests)
    return ScheduleSummary(
        run_id=run_id,
        slots=slots,
        scheduled=len(ids),
        sent=sent,
        by_state=Counter(member.state for member in members),
        by_issue=Counter(member.issue_type for member in members if member.issue_type),
        probes_granted=selection.granted,
        probes_deferred=len(selection.deferred),
        budget=state,
    )


def _grant_probes(
    source: SlotSource, meter: Meter, budget: BudgetPolicy, ids: Sequence[str], now: datetime
) -> tuple[Selection, BudgetState]:
    """Choose this run's probes and reserve them from the month in one atomic write. Another writer may
    have spent in between (a re-check's probe): then choose again from the fresh state, once; if even
    that does not fit, this run probes nothing (the next hour's share covers it)."""
    candidates = source.evidence(ids) if ids else []
    for _ in range(2):
        state = meter.state(now)
        selection = choose_probes(candidates, state, now, budget)
        if meter.grant(now, selection.granted):
            spent = BudgetState(state.month, state.spent + selection.granted, state.refused_at)
            return selection, spent
    wanted = (*selection.probe, *selection.deferred)
    return Selection((), wanted, 0), state


def report_run(summary: ScheduleSummary, policy: BudgetPolicy, now: datetime) -> None:
    """The run's log line and counts (the dashboard's widgets query them: connections by state, issues, the
    month's burn), and the one metric an alarm reads: 80% of the budget spent before day 24, sent only then
    (a metric is billed for each hour it is sent; the alarm treats a missing value as fine)."""
    counts.add("ChecksScheduled", summary.scheduled)
    counts.add("ProbesGranted", summary.probes_granted)
    counts.add("ProbesDeferred", summary.probes_deferred)
    for state, count in summary.by_state.items():
        counts.add(f"Connections_{state}", count)
    for issue, count in summary.by_issue.items():
        counts.add(f"Issues_{issue}", count)
    spent = summary.budget.spent if summary.budget is not None else None
    used = 100.0 * spent / policy.monthly_budget if spent is not None and policy.monthly_budget else None
    logger.info(
        "check run scheduled",
        extra={
            "run_id": summary.run_id,
            "scheduled": summary.scheduled,
            "probes_granted": summary.probes_granted,
            "probes_deferred": summary.probes_deferred,
            "budget_spent": spent,
            "budget_used_percent": round(used, 2) if used is not None else None,
        },
    )
    if summary.budget is not None and early_burn(summary.budget, now, policy):
        metrics.add_metric(name="MeteredBudgetEarlyBurn", unit=MetricUnit.Count, value=1)
