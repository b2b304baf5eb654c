"""Record the product's report of its own Intuit calls: per item checks, one write per connection a day."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qbo_health.domain.activity import ActivityWrite, Report, StoredActivity, refusal, write_for
from qbo_health.messages import CheckRequest


class ActivityStore(Protocol):
    def stored_activity(self, connection_ids: Sequence[str]) -> dict[str, StoredActivity | None]:
        """Each known connection's stored activity; None for a disconnected one; unknown ids left out."""

    def record_activity(self, writes: Sequence[ActivityWrite]) -> int:
        """Write each (conditionally: once a day, known connections only); returns how many were written."""


class CheckSender(Protocol):
    def send(self, requests: Sequence[CheckRequest], *, delay_seconds: int = 0) -> int: ...


@dataclass(frozen=True)
class Refused:
    index: int
    connection_id: str
    reason: str


@dataclass(frozen=True)
class ActivitySummary:
    accepted: int  # items that counted (known connection, plausible time)
    connections: int  # distinct connections among them
    written: int  # connections whose evidence changed (at most one write each a day)
    checks: int  # connections with a newly reported failure: each gets a check now
    unknown: int  # items for connections we do not have (or no longer check)
    refused: tuple[Refused, ...] = field(default=())


def record_activity(
    reports: Sequence[Report], store: ActivityStore, checks: CheckSender, now: datetime
) -> ActivitySummary:
    """Count and skip unknown connections, refuse implausible times per item, and write each connection's
    newest evidence at most once a day. A newly reported failure queues a check (its probe is where the
    budget finds problems). Never touches an issue: a report can open no issue and close none."""
    refused: list[Refused] = []
    plausible: list[tuple[int, Report]] = []
    for index, report in enumerate(reports):
        reason = refusal(report, now)
        if reason is None:
            plausible.append((index, report))
        else:
            refused.append(Refused(index, report.connection_id, reason))
    stored = store.stored_activity(sorted({report.connection_id for _, report in plausible}))
    by_connection: dict[str, list[Report]] = defaultdict(list)
    unknown = 0
    for _, report in plausible:
        if stored.get(report.connection_id) is None:
            unknown += 1
        else:
            by_connection[report.connection_id].append(report)
    writes = [
        write
        for connection_id, items in by_connection.items()
        if (write := write_for(connection_id, items, stored[connection_id] or StoredActivity(), now))
    ]
    written = store.record_activity(writes) if writes else 0
    failing = [
        write.connection_id
        for write in writes
        if write.failed_at is not None
        and write.failed_at != (stored[write.connection_id] or StoredActivity()).failed_at
    ]
    if failing:
        checks.send([CheckRequest(connection_id=cid, reason="problem_report") for cid in failing])
    return ActivitySummary(
        accepted=sum(len(items) for items in by_connection.values()),
        connections=len(by_connection),
        written=written,
        checks=len(failing),
        unknown=unknown,
        refused=tuple(refused),
    )
