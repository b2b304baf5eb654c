"""The outage guard: a run whose trouble is far above normal is Intuit's bad day, not the customers'.

A suspected outage starts when a check run looks like one and lasts until a later run, given time to
settle, looks normal again. While it lasts, escalation pauses and its clocks stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# A run is judged once this much time has passed since it started (its checks and retries have run).
RUN_SETTLE_TIME = timedelta(minutes=30)


@dataclass(frozen=True)
class OutageThresholds:
    transient_share: float = 0.5
    new_issue_share: float = 0.2
    min_checks: int = 20


@dataclass(frozen=True)
class RunSummary:
    started_at: datetime
    scheduled: int
    transient: int
    suspected: int


def looks_like_outage(scheduled: int, transient: int, suspected: int, thresholds: OutageThresholds) -> bool:
    base = max(scheduled, transient + suspected)
    if base < thresholds.min_checks:
        return False
    return transient / base >= thresholds.transient_share or suspected / base >= thresholds.new_issue_share


def outage_over(
    last_seen: datetime, latest_run: RunSummary | None, now: datetime, thresholds: OutageThresholds
) -> bool:
    """True once a run that started after the outage was last seen has settled and looks normal."""
    if latest_run is None or latest_run.started_at <= last_seen:
        return False
    if now - latest_run.started_at < RUN_SETTLE_TIME:
        return False
    if latest_run.scheduled < thresholds.min_checks:
        # Too small to judge by shares: only a run whose checks all got answers ends the outage. An empty
        # run (an hourly slot that holds no connection) says nothing about Intuit.
        return latest_run.scheduled > 0 and latest_run.transient == 0 and latest_run.suspected == 0
    return not looks_like_outage(latest_run.scheduled, latest_run.transient, latest_run.suspected, thresholds)
