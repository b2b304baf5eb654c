"""The hourly scheduler: send the connections whose daily slot is due to the check queue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from qbo_health.domain.schedule import SLOTS_PER_DAY, due_slot
from qbo_health.messages import CheckRequest


class SlotSource(Protocol):
    def ids_in_slot(self, slot: int) -> Iterable[str]: ...


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
    ids = [connection_id for slot in slots for connection_id in source.ids_in_slot(slot)]
    # The run exists before any worker reports on it, so the outage guard knows the run's size.
    runs.start_run(run_id, now, scheduled=len(ids))
    requests = [CheckRequest(connection_id=connection_id, run_id=run_id) for connection_id in ids]
    sent = queue.send(requests)
    return ScheduleSummary(run_id=run_id, slots=slots, scheduled=len(ids), sent=sent)
