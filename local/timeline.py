"""Days of simulated time on the embedded stack: daily checks, the escalator every hour, and a record of
what happened each day (states, notices by kind, disconnects). The demo and the escalation tests use it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from local.runner import LocalLambda, schedule_event
from qbo_health import wiring

TICK = timedelta(minutes=30)
CHECK_HOUR = 6  # the daily check run
ESCALATOR_MINUTE = 30  # the escalator runs every hour at this minute


@dataclass
class DayRecord:
    day: int
    states: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)
    disconnected: list[str] = field(default_factory=list)
    paused_hours: int = 0


class Timeline:
    def __init__(self, lambdas: LocalLambda, connection_ids: Iterable[str]) -> None:
        self.lambdas = lambdas
        self.clock = lambdas.stack.clock
        self.connection_ids = list(connection_ids)
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
        before = Counter(self.lambdas.metrics)
        end = self.day0 + timedelta(days=day + 1)
        while self.clock.now() < end:
            now = self.clock.now()
            if now.hour == CHECK_HOUR and now.minute == 0:
                self.lambdas.run_scheduler(all_slots=True)
            self.lambdas.drain_checks()
            if now.minute == ESCALATOR_MINUTE:
                result = self.lambdas.invoke("escalator", schedule_event(now, {}))
                record.disconnected += result["disconnected"]
                record.paused_hours += 1 if result["paused"] else 0
            self.clock.advance(TICK)
        delta = Counter(self.lambdas.metrics)
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
    """States at the end of each day, notices sent that day by kind, and hours the escalator was paused."""
    kinds, states = list(NOTICE_LABELS), list(STATE_LABELS)
    header = ["day", *STATE_LABELS.values(), *NOTICE_LABELS.values(), "paused h"]
    rows = [header]
    for record in days:
        rows.append(
            [
                str(record.day),
                *[str(record.states[state]) for state in states],
                *[str(record.notices[kind] or "") for kind in kinds],
                str(record.paused_hours or ""),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )
