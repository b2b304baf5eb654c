"""The escalation policy: which notice is due, when to disconnect, and when to hold back. Pure.

Days count from the moment the issue was confirmed (day 0), minus any time escalation was paused for a
suspected provider outage: a customer never loses days to Intuit's bad day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from qbo_health.domain.model import Connection, IssueType, OpenIssue, PauseWindow


class Stage(StrEnum):
    NOTICE = "NOTICE"
    REMINDER_1 = "REMINDER_1"
    REMINDER_2 = "REMINDER_2"
    FINAL_WARNING = "FINAL_WARNING"


@dataclass(frozen=True)
class Schedule:
    """When each stage goes out and when the connection disconnects, in days after confirmation."""

    stage_days: tuple[tuple[Stage, float], ...] = (
        (Stage.NOTICE, 0),
        (Stage.REMINDER_1, 3),
        (Stage.REMINDER_2, 7),
        (Stage.FINAL_WARNING, 12),
    )
    disconnect_day: float = 14
    # The final warning must have been out this long before a disconnect (escalator downtime never
    # turns a warning into a same-day disconnect).
    final_warning_lead: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class EscalationPolicy:
    default: Schedule = field(default_factory=Schedule)
    overrides: dict[IssueType, Schedule] = field(default_factory=dict)
    # Flapping damping: a problem that returns within ``flap_window`` of healing continues its episode and
    # its clock; the restored notice goes out once the connection stayed healthy for ``restored_after``.
    flap_window: timedelta = timedelta(days=7)
    restored_after: timedelta = timedelta(hours=24)

    def schedule_for(self, issue: IssueType) -> Schedule:
        return self.overrides.get(issue, self.default)


def paused_time(windows: Iterable[PauseWindow], since: datetime, now: datetime) -> timedelta:
    """How much of ``[since, now]`` escalation spent paused (overlapping windows count once)."""
    spans = sorted((max(w.start, since), min(w.end or now, now)) for w in windows)
    total = timedelta(0)
    covered_until = since
    for start, end in spans:
        start = max(start, covered_until)
        if end > start:
            total += end - start
            covered_until = end
    return total


# What ``OpenIssue.notices`` records once the restored notice of an episode went out (one per episode).
RESTORED = "RESTORED"


@dataclass(frozen=True)
class Healing:
    """What to do for an episode that healed: tell the customer it is fixed, and/or close it for good."""

    send_restored: bool = False
    close: bool = False


def healing(episode: OpenIssue, now: datetime, policy: EscalationPolicy) -> Healing:
    """A healed episode: the restored notice once it stayed healthy for ``restored_after`` (and only if the
    customer heard of the problem), closed for good after the damping window."""
    assert episode.healed_at is not None
    healthy_for = now - episode.healed_at
    told = any(stage in Stage.__members__ for stage, _ in episode.notices)
    restored_sent = any(stage == RESTORED for stage, _ in episode.notices)
    send = told and not restored_sent and healthy_for >= policy.restored_after
    return Healing(send_restored=send, close=healthy_for >= policy.flap_window)


def continues(episode: OpenIssue | None, now: datetime, policy: EscalationPolicy) -> bool:
    """Whether a problem confirmed now continues this healed episode (it came back within the window)."""
    return (
        episode is not None and episode.healed_at is not None and now - episode.healed_at < policy.flap_window
    )


class Blocked(StrEnum):
    HELD = "HELD"
    PAUSED = "PAUSED"
    CHECKS_STALE = "CHECKS_STALE"
    AWAITING_FINAL_WARNING = "AWAITING_FINAL_WARNING"


@dataclass(frozen=True)
class Decision:
    """What to do for one connection now. ``notice`` is the one stage to send (earlier unsent stages that
    are already overtaken are recorded as ``skipped`` instead of being sent late in a burst)."""

    deadline: datetime
    days_left: float
    notice: Stage | None = None
    skipped: tuple[Stage, ...] = ()
    disconnect: bool = False
    blocked: Blocked | None = None


@dataclass(frozen=True)
class Safety:
    paused: bool
    checks_fresh: bool


def paused_for(issue: OpenIssue, windows: Iterable[PauseWindow], now: datetime) -> timedelta:
    """The time this issue's escalation stood still: its own pauses and the fleet's, counted once."""
    return paused_time([*windows, *issue.pauses], issue.opened_at, now)


def disconnect_deadline(
    issue: OpenIssue, policy: EscalationPolicy, now: datetime, windows: Iterable[PauseWindow] = ()
) -> datetime:
    """The one place a disconnect deadline is decided, for the worker that opens an issue and the escalator
    that escalates it: day 0, plus the disconnect day of the issue type's schedule (its override, if any),
    plus the time escalation stood still (``windows``: the fleet's pauses; the issue's own are included)."""
    schedule = policy.schedule_for(issue.type)
    return issue.opened_at + timedelta(days=schedule.disconnect_day) + paused_for(issue, windows, now)


def decide(
    connection: Connection,
    notices_sent: Mapping[Stage, datetime],
    now: datetime,
    policy: EscalationPolicy,
    *,
    windows: Iterable[PauseWindow],
    safety: Safety,
) -> Decision:
    issue = connection.issue
    if issue is None:
        raise ValueError("only connections with an open issue escalate")
    schedule = policy.schedule_for(issue.type)
    windows = list(windows)
    paused = paused_for(issue, windows, now)
    deadline = disconnect_deadline(issue, policy, now, windows)
    days_left = max((deadline - now).total_seconds() / 86400, 0.0)
    if connection.on_hold:
        return Decision(deadline, days_left, blocked=Blocked.HELD)
    if safety.paused:
        return Decision(deadline, days_left, blocked=Blocked.PAUSED)
    elapsed_days = (now - issue.opened_at - paused).total_seconds() / 86400
    due = [stage for stage, day in schedule.stage_days if day <= elapsed_days and stage not in notices_sent]
    notice = due[-1] if due else None
    skipped = tuple(due[:-1])
    if elapsed_days < schedule.disconnect_day:
        return Decision(deadline, days_left, notice=notice, skipped=skipped)
    warned_at = notices_sent.get(Stage.FINAL_WARNING)
    if warned_at is None or now - warned_at < schedule.final_warning_lead:
        return Decision(
            deadline, days_left, notice=notice, skipped=skipped, blocked=Blocked.AWAITING_FINAL_WARNING
        )
    if not safety.checks_fresh:
        return Decision(deadline, days_left, notice=notice, skipped=skipped, blocked=Blocked.CHECKS_STALE)
    return Decision(deadline, days_left, notice=notice, skipped=skipped, disconnect=True)
