"""Days of simulated time on the embedded stack, on production's schedules (`local.production`), with a
record of what happened each day (states, notices by kind, disconnects, paused escalator runs). The demo and
the escalation tests use it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from local.production import ProductionSchedule
from local.runner import LocalLambda
from qbo_health import wiring


@dataclass
class DayRecord:
    day: int
    states: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)
    disconnected: list[str] = field(default_factory=list)
    paused_hours: int = 0  # escalator runs paused fleet-wide (the outage guard)
    blocked: Counter[str] = field(default_factory=Counter)  # connections held back, by reason, over the day
    errors: list[str] = field(default_factory=list)  # failed invocations (Lambda errors)


class Timeline:
    def __init__(self, lambdas: LocalLambda, connection_ids: Iterable[str]) -> None:
        self.lambdas = lambdas
        self.clock = lambdas.stack.clock
        self.connection_ids = list(connection_ids)
        self.schedule = ProductionSchedule(lambdas)
        self.day0 = self.clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
        self.days: list[DayRecord] = []

    def day_of(self, moment: datetime) -> int:
        return (moment - self.day0).days

    def run(self, days: int, events: dict[int, Callable[[], None]] | None = None) -> list[DayRecord]:
        """Run ``days`` days from midnight of the clock's current day; ``events[n]`` runs at 00:00 of day n."""
        events = events or {}
        self.clock.set(self.day0 + timedelta(days=len(self.days)))
        for _ in range(days):
            day = len(self.days)
            if day in events:
                events[day]()
            self.days.append(self._run_day(day))
        return self.days

    def _run_day(self, day: int) -> DayRecord:
        record = DayRecord(day)
        before = Counter(self.lambdas.counts)
        seen = len(self.schedule.invocations)
        self.schedule.run_until(self.day0 + timedelta(days=day + 1))
        for invocation in self.schedule.invocations[seen:]:
            if invocation.error is not None:
                record.errors.append(f"{invocation.function}: {invocation.error}")
            elif invocation.function == "escalator":
                record.disconnected += invocation.result["disconnected"]
                record.paused_hours += 1 if invocation.result["paused"] else 0
                record.blocked.update(invocation.result["blocked"])
        delta = Counter(self.lambdas.counts)
        delta.subtract(before)
        for name, count in delta.items():
            if name.startswith("Notice_") and name.endswith("_event") and count:
                record.notices[name.removeprefix("Notice_").removesuffix("_event")] += count
        store = wiring.connection_store()
        for connection_id in self.connection_ids:
            record.states[store.get(connection_id).state.value] += 1
        return record


STATE_LABELS = {"HEALTHY": "healthy", "NEEDS_ATTENTION": "attention", "DISCONNECTED": "disconnected"}
NOTICE_LABELS = {
    "NOTICE": "notice",
    "REMINDER_1": "reminder",
    "REMINDER_2": "reminder 2",
    "FINAL_WARNING": "final warning",
    "DISCONNECTED": "disconnect notice",
    "RESTORED": "restored",
}


def format_table(days: list[DayRecord]) -> str:
    """States at the end of each day, notices sent that day by kind, hours the escalator was paused fleet-wide,
    and escalator runs that held a connection back because Intuit did not answer its re-check."""
    kinds, states = list(NOTICE_LABELS), list(STATE_LABELS)
    header = ["day", *STATE_LABELS.values(), *NOTICE_LABELS.values(), "paused h", "held"]
    rows = [header]
    for record in days:
        rows.append(
            [
                str(record.day),
                *[str(record.states[state]) for state in states],
                *[str(record.notices[kind] or "") for kind in kinds],
                str(record.paused_hours or ""),
                str(record.blocked["PAUSED"] or ""),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )
