"""Pure decisions of a health check: when to refresh, when to probe, and what an outcome changes.

Nothing here performs I/O; callers pass ``now`` and get back a new ``Connection`` plus the events to record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from qbo_health.domain.model import (
    Connection,
    ConnectionState,
    IssueType,
    OpenIssue,
    PauseWindow,
    SubscriptionStatus,
    SuspectedIssue,
)

# The most of a CompanyName we keep (our bound, not Intuit's): the connection item stays small, notices
# stay readable.
COMPANY_NAME_MAX = 200

# An access token this close to expiry is refreshed first: a probe must not race the expiry.
ACCESS_TOKEN_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class CheckPolicy:
    refresh_after: timedelta = timedelta(hours=20)
    probe_interval: timedelta = timedelta(hours=20)
    confirm_delay: timedelta = timedelta(minutes=15)
    reauth_warning: timedelta = timedelta(days=30)
    grace_period: timedelta = timedelta(days=14)
    # Transient trouble is retried with backoff (15 min doubling to 1 h): twelve tries span ~11 hours, so
    # a connection is still checked that day unless Intuit is down for most of it.
    max_transient_retries: int = 12
    transient_retry_delay: timedelta = timedelta(minutes=15)
    transient_retry_cap: timedelta = timedelta(hours=1)

    def retry_delay(self, attempt: int) -> timedelta:
        return min(self.transient_retry_delay * (2 ** min(attempt, 16)), self.transient_retry_cap)


class OutcomeKind(StrEnum):
    HEALTHY = "HEALTHY"
    PROBLEM = "PROBLEM"
    TRANSIENT = "TRANSIENT"
    MISCONFIGURED = "MISCONFIGURED"
    # Intuit refused the probe because the app is past its metered allowance: nothing is known about the
    # connection. Never an issue, never retried (the allowance returns next month), never counted towards
    # the outage guard (it is our quota, not Intuit's health); an open issue's escalation pauses meanwhile.
    METERED_OUT = "METERED_OUT"


@dataclass(frozen=True)
class CheckOutcome:
    kind: OutcomeKind
    issue: IssueType | None = None
    reason: str = "ok"
    # The probe read CompanyInfo (HEALTHY, or PROBLEM found in a successful read).
    probed: bool = False
    intuit_tid: str | None = None
    # The SubscriptionStatus that read carried (None when it had none, or nothing was read).
    subscription_status: SubscriptionStatus | None = None
    # The CompanyName that read carried (None when nothing was read).
    company_name: str | None = None

    @classmethod
    def healthy(
        cls,
        *,
        probed: bool,
        subscription_status: SubscriptionStatus | None = None,
        company_name: str | None = None,
    ) -> CheckOutcome:
        return cls(
            OutcomeKind.HEALTHY,
            probed=probed,
            subscription_status=subscription_status,
            company_name=company_name,
        )


class EventKind(StrEnum):
    ISSUE_SUSPECTED = "ISSUE_SUSPECTED"
    ISSUE_OPENED = "ISSUE_OPENED"
    ISSUE_CHANGED = "ISSUE_CHANGED"
    ISSUE_CLOSED = "ISSUE_CLOSED"
    SUSPECT_CLEARED = "SUSPECT_CLEARED"
    REAUTH_DUE = "REAUTH_DUE"
    VERIFIED = "VERIFIED"
    REAUTHORIZED = "REAUTHORIZED"
    DISCONNECTED = "DISCONNECTED"
    HOLD_SET = "HOLD_SET"
    HOLD_RELEASED = "HOLD_RELEASED"
    REVOKE_FAILED = "REVOKE_FAILED"


@dataclass(frozen=True)
class ConnectionEvent:
    kind: EventKind
    at: datetime
    issue: IssueType | None = None
    episode_id: str | None = None
    detail: str | None = None


# The detail of an ISSUE_CLOSED event when nobody was told of the issue: no "restored" notice follows.
CLOSED_UNNOTIFIED = "closed before any notice"


def issue_closed(issue: OpenIssue, now: datetime) -> ConnectionEvent:
    detail = None if issue.notices else CLOSED_UNNOTIFIED
    return ConnectionEvent(EventKind.ISSUE_CLOSED, now, issue.type, issue.episode_id, detail=detail)


@dataclass(frozen=True)
class Transition:
    connection: Connection
    events: tuple[ConnectionEvent, ...] = ()
    recheck_after: timedelta | None = None
    new_suspect: bool = False
    retry_transient: bool = False


@dataclass(frozen=True)
class CheckPlan:
    refresh: bool
    probe: bool
    reasons: tuple[str, ...] = field(default=())


def plan_check(connection: Connection, now: datetime, policy: CheckPolicy) -> CheckPlan:
    tokens = connection.tokens
    probe = needs_probe(connection, now, policy)
    reasons: list[str] = []
    # A probe needs an access token; the connection normally keeps none, so probing means refreshing.
    if probe and (tokens.access_expires_at is None or tokens.access_expires_at - ACCESS_TOKEN_MARGIN <= now):
        reasons.append("access_token_expired")
    if tokens.refreshed_at is None or now - tokens.refreshed_at >= policy.refresh_after:
        reasons.append("refresh_due")
    refresh = bool(reasons)
    return CheckPlan(refresh=refresh, probe=probe, reasons=tuple(reasons))


def needs_probe(connection: Connection, now: datetime, policy: CheckPolicy) -> bool:
    """CompanyInfo is metered: probe only when nothing recent shows the connection healthy, or to verify."""
    if connection.issue or connection.suspect or connection.state is ConnectionState.PENDING:
        return True
    last = connection.last_success_at
    return last is None or now - last >= policy.probe_interval


def apply_outcome(
    connection: Connection,
    outcome: CheckOutcome,
    now: datetime,
    policy: CheckPolicy,
    *,
    new_episode_id: str,
    attempt: int = 0,
    outage_suspected: bool = False,
    retry_transient: bool = True,
) -> Transition:
    """What ``outcome`` changes. During a suspected outage a transient failure is not retried: retrying
    every connection would add to Intuit's trouble, and the next daily run checks again (escalation is
    paused meanwhile, so nobody loses anything by the wait)."""
    answered = outcome.kind in (OutcomeKind.HEALTHY, OutcomeKind.PROBLEM)
    checked = replace(track_pause(connection, answered=answered, now=now), last_check_at=now)
    if outcome.probed:
        checked = replace(checked, subscription_status=outcome.subscription_status)
        # Companies get renamed: every successful read keeps the name current.
        checked = replace(checked, company_name=known_company_name(outcome.company_name, connection))
    if outcome.kind is OutcomeKind.METERED_OUT:
        # Not Intuit's trouble and not the connection's: no counter, no retry, no suspicion.
        return Transition(checked)
    if outcome.kind is OutcomeKind.HEALTHY:
        return _healthy(checked, outcome, now, policy)
    if outcome.kind is OutcomeKind.PROBLEM and outcome.issue is not None:
        return _problem(checked, outcome.issue, outcome.intuit_tid, now, policy, new_episode_id)
    # Transient trouble (and our own misconfiguration) is a counter, never a customer-facing issue.
    counted = replace(checked, transient_failures=connection.transient_failures + 1)
    retry = (
        retry_transient
        and outcome.kind is OutcomeKind.TRANSIENT
        and attempt < policy.max_transient_retries
        and not outage_suspected
    )
    return Transition(
        counted,
        recheck_after=policy.retry_delay(attempt) if retry else None,
        retry_transient=retry,
    )


def known_company_name(read: str | None, connection: Connection) -> str | None:
    """The name to keep: what Intuit just said (trimmed, bounded), else what we had."""
    printable = "".join(char for char in read or "" if char.isprintable() or char.isspace())
    name = " ".join(printable.split())[:COMPANY_NAME_MAX]
    return name or connection.company_name


def track_pause(connection: Connection, *, answered: bool, now: datetime) -> Connection:
    """An open issue's escalation stands still while Intuit does not answer its checks: a check without an
    answer starts a pause (if none runs), the next answered check ends it. This is what protects a fleet of
    any size from an outage: each connection is its own witness (see the escalator's re-check before acting).
    """
    issue = connection.issue
    if issue is None or answered != issue.paused_now:
        return connection
    if answered:
        pauses = tuple(replace(p, end=now) if p.end is None else p for p in issue.pauses)
        return replace(connection, issue=replace(issue, pauses=pauses))
    return replace(connection, issue=replace(issue, pauses=(*issue.pauses, PauseWindow(now, None))))


def _healthy(connection: Connection, outcome: CheckOutcome, now: datetime, policy: CheckPolicy) -> Transition:
    events: list[ConnectionEvent] = []
    verified = outcome.probed
    updated = replace(connection, transient_failures=0)
    if verified:
        updated = replace(updated, last_success_at=now)
        if connection.issue:
            events.append(issue_closed(connection.issue, now))
        elif connection.suspect:
            events.append(ConnectionEvent(EventKind.SUSPECT_CLEARED, now, connection.suspect.type))
        if connection.state is ConnectionState.PENDING:
            events.append(ConnectionEvent(EventKind.VERIFIED, now))
        updated = replace(updated, issue=None, suspect=None, state=ConnectionState.HEALTHY)
    warning = reauth_warning(updated, now, policy)
    if warning:
        updated = replace(updated, reauth_due_warned_at=now)
        events.append(warning)
    return Transition(updated, events=tuple(events))


def _problem(
    connection: Connection,
    issue_type: IssueType,
    intuit_tid: str | None,
    now: datetime,
    policy: CheckPolicy,
    new_episode_id: str,
) -> Transition:
    current = connection.issue
    if current is not None:
        if current.type is issue_type:
            return Transition(connection)
        changed = replace(current, type=issue_type)
        event = ConnectionEvent(EventKind.ISSUE_CHANGED, now, issue_type, current.episode_id)
        return Transition(replace(connection, issue=changed), events=(event,))
    suspect = connection.suspect
    if suspect is not None and now - suspect.first_seen_at >= policy.confirm_delay:
        opened = OpenIssue(
            type=issue_type,
            episode_id=new_episode_id,
            first_seen_at=suspect.first_seen_at,
            opened_at=now,
            deadline=now + policy.grace_period,
        )
        event = ConnectionEvent(EventKind.ISSUE_OPENED, now, issue_type, new_episode_id, intuit_tid)
        updated = replace(connection, issue=opened, suspect=None, state=ConnectionState.NEEDS_ATTENTION)
        return Transition(updated, events=(event,))
    if suspect is not None:
        # Seen again before the confirming delay passed (a duplicate delivery): keep waiting.
        return Transition(connection, recheck_after=policy.confirm_delay - (now - suspect.first_seen_at))
    new_suspect = SuspectedIssue(type=issue_type, first_seen_at=now, intuit_tid=intuit_tid)
    event = ConnectionEvent(EventKind.ISSUE_SUSPECTED, now, issue_type, detail=intuit_tid)
    return Transition(
        replace(connection, suspect=new_suspect),
        events=(event,),
        recheck_after=policy.confirm_delay,
        new_suspect=True,
    )


def reauth_warning(connection: Connection, now: datetime, policy: CheckPolicy) -> ConnectionEvent | None:
    """Warn once when the 5-year hard cap is within the warning window."""
    hard = connection.tokens.hard_expires_at
    if hard is None or hard - now > policy.reauth_warning:
        return None
    warned = connection.reauth_due_warned_at
    if warned is not None and hard - warned <= policy.reauth_warning:
        return None
    return ConnectionEvent(EventKind.REAUTH_DUE, now, detail=hard.isoformat())
