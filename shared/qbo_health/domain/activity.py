"""The product's report of its own Intuit calls (``POST /connections/activity``): which items count, and the
one write a day each connection's evidence may cost.

A report is evidence for the probe budget (``domain.probe_budget``): a successful call means no probe is
needed for a while, a failed one asks for a probe soon. It never closes an open issue: only a check can.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Clocks differ a little: a call a few minutes "in the future" is the product's clock, not a lie.
CLOCK_SKEW = timedelta(minutes=5)
# Older than this is no evidence of how the connection is now.
MAX_AGE = timedelta(days=7)
MAX_ITEMS = 5000

REFUSED_IN_FUTURE = "in_future"
REFUSED_TOO_OLD = "too_old"


@dataclass(frozen=True)
class Report:
    connection_id: str
    at: datetime
    ok: bool


@dataclass(frozen=True)
class StoredActivity:
    """What a connection holds of earlier reports."""

    ok_at: datetime | None = None
    failed_at: datetime | None = None
    # The UTC day (days since the epoch) of the last write: at most one a day.
    written_day: int | None = None


@dataclass(frozen=True)
class ActivityWrite:
    connection_id: str
    ok_at: datetime | None
    failed_at: datetime | None
    day: int


def refusal(report: Report, now: datetime) -> str | None:
    """Why one item is refused, or None when it counts."""
    at = report.at if report.at.tzinfo else report.at.replace(tzinfo=UTC)
    if at > now + CLOCK_SKEW:
        return REFUSED_IN_FUTURE
    if now - at > MAX_AGE:
        return REFUSED_TOO_OLD
    return None


def day_of(now: datetime) -> int:
    return (now.astimezone(UTC).date() - datetime(1970, 1, 1, tzinfo=UTC).date()).days


def write_for(
    connection_id: str, reports: Iterable[Report], stored: StoredActivity, now: datetime
) -> ActivityWrite | None:
    """The one write this connection's reports make today, or None: already written today, or nothing newer
    than what it holds (so a report sent twice writes once)."""
    today = day_of(now)
    if stored.written_day is not None and stored.written_day >= today:
        return None
    ok_at, failed_at = stored.ok_at, stored.failed_at
    for report in reports:
        at = report.at if report.at.tzinfo else report.at.replace(tzinfo=UTC)
        if report.ok:
            ok_at = _later(ok_at, at)
        else:
            failed_at = _later(failed_at, at)
    if (ok_at, failed_at) == (stored.ok_at, stored.failed_at):
        return None
    return ActivityWrite(connection_id, ok_at, failed_at, today)


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current
