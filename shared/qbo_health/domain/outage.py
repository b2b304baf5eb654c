"""The outage guard: a run whose trouble is far above normal is Intuit's bad day, not the customers'."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# A suspected outage stays in force this long after the last batch that looked like one: runs are hourly.
OUTAGE_HOLD = timedelta(hours=2)


@dataclass(frozen=True)
class OutageThresholds:
    transient_share: float = 0.5
    new_issue_share: float = 0.2
    min_checks: int = 20


def looks_like_outage(scheduled: int, transient: int, suspected: int, thresholds: OutageThresholds) -> bool:
    base = max(scheduled, transient + suspected)
    if base < thresholds.min_checks:
        return False
    return transient / base >= thresholds.transient_share or suspected / base >= thresholds.new_issue_share


def outage_in_force(last_seen: datetime | None, now: datetime) -> bool:
    return last_seen is not None and now - last_seen < OUTAGE_HOLD
