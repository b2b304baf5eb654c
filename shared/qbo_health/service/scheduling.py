"""The hourly scheduler: send the connections whose daily slot is due to the check queue."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qbo_health.domain.schedule import SLOTS_PER_DAY, due_slot
from qbo_health.messages import CheckRequest


class Member(Protocol):
    @property
    def connection_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def issue_type(self) -> str | None: ...


class SlotSource(Protocol):
    def slot_members(self, slot: int) -> Iterable[Member]: ...


class Sender(Protocol):
    def send(self, requests: Sequence[CheckRequest], *, delay_seconds: int = 0) -> int: ...


class RunLog(Protocol):
    def start_run(self, run_id: str, now: datetime, scheduled: int) -> None: ...


@dataclass(frozen=True)
class ScheduleSummary:
    run_id: str
    slots: tuple[int, ...]
    scheduled: int
    sent: int
    # Over a day the 24 hourly runs see every checkable connection once: the dashboard sums these.
    by_state: Counter[str] = field(default_factory=Counter)
    by_issue: Counter[str] = field(default_factory=Counter)


def schedule_checks(
    source: SlotSource,
    queue: Sender,
    runs: RunLog,
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
    requests = [CheckRequest(connection_id=connection_id, run_id=run_id) for connection_id in ids]
    sent = queue.send(requests)
    return ScheduleSummary(
        run_id=run_id,
        slots=slots,
        scheduled=len(ids),
        sent=sent,
        by_state=Counter(member.state for member in members),
        by_issue=Counter(member.issue_type for member in members if member.issue_type),
    )
