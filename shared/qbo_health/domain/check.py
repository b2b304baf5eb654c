"""Pure decisions of a health check: when to refresh, when to probe, and what an outcome changes.

Nothing here performs I/O; callers pass ``now`` and get back a new ``Connection`` plus the events to record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from qbo_health.domain.connect_links import refuse_stale_sign_in
from qbo_health.domain.escalation import EscalationPolicy, continues, disconnect_deadline
from qbo_health.domain.model import (
    Authorizer,
    Connection,
    ConnectionState,
    DisconnectReason,
    IssueType,
    OpenIssue,
    PauseWindow,
    PendingNotice,
    SealedTokens,
    SubscriptionStatus,
    SuspectedIssue,
    TokenTimes,
)
from qbo_health.domain.notices import NoticeKind
from qbo_health.domain.probe_budget import BudgetPolicy, Need, evidence_of, rank
from qbo_health.errors import DisconnectAverted, RealmMismatch

# The most Intuit calls one check makes: a refresh, its second try after adopting a recovered pair, the
# probe, a refresh after a refused access token, and the probe again. Each may last the client's timeout.
MAX_INTUIT_CALLS_PER_CHECK = 5
STORE_TIME_PER_CHECK = timedelta(seconds=10)  # lease, token and outcome writes with the SDK's retries


def longest_check(intuit_timeout: timedelta) -> timedelta:
    """The longest one check can hold its connection: every call at the client's timeout, and the writes."""
    return MAX_INTUIT_CALLS_PER_CHECK * intuit_timeout + STORE_TIME_PER_CHECK


def lease_too_short(lease: timedelta, intuit_timeout: timedelta) -> str | None:
    """Why a lease of this length is unsafe, or None. A lease that ends while its check still runs lets a
    second check refresh the same token at the same time: the race that loses a rotated token."""
    needed = longest_check(intuit_timeout)
    if lease >= needed:
        return None
    return (
        f"LEASE_SECONDS={int(lease.total_seconds())} is shorter than the longest check "
        f"({int(needed.total_seconds())} s with INTUIT_TIMEOUT_SECONDS={intuit_timeout.total_seconds():g})"
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
    # Decides each new issue's disconnect deadline (``disconnect_deadline``), as the escalator does.
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
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


# The reason of a METERED_OUT outcome when our own budget, not Intuit, withheld the probe.
REASON_BUDGET = "budget_withheld"


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
    # A notified episode checked healthy: kept (``recovering``) for the damping window, nobody told yet.
    ISSUE_HEALED = "ISSUE_HEALED"
    # A healed episode's problem came back within the damping window: the same episode goes on.
    ISSUE_RETURNED = "ISSUE_RETURNED"
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


def plan_check(
    connection: Connection, now: datetime, policy: CheckPolicy, *, probe: bool | None = None
) -> CheckPlan:
    """``probe`` is the budget's decision when one was made (see ``domain.probe_budget``)."""
    tokens = connection.tokens
    if probe is None:
        probe = needs_probe(connection, now, policy)
    reasons: list[str] = []
    # A probe needs an access token; the connection normally keeps none, so probing means refreshing.
    if probe and (tokens.access_expires_at is None or tokens.access_expires_at - ACCESS_TOKEN_MARGIN <= now):
        reasons.append("access_token_expired")
    if tokens.refreshed_at is None or now - tokens.refreshed_at >= policy.refresh_after:
        reasons.append("refresh_due")
    refresh = bool(reasons)
    return CheckPlan(refresh=refresh, probe=probe, reasons=tuple(reasons))


def probe_required(connection: Connection) -> bool:
    """Only a read can close an issue, confirm a suspicion or verify a new connection."""
    return bool(connection.issue or connection.suspect or connection.state is ConnectionState.PENDING)


def needs_probe(connection: Connection, now: datetime, policy: CheckPolicy) -> bool:
    """CompanyInfo is metered: probe only to verify, or when no recent evidence shows the connection healthy
    (the rule's home is ``domain.probe_budget``)."""
    budget = BudgetPolicy(probe_interval=policy.probe_interval)
    return rank(evidence_of(connection), now, budget).need is not Need.NONE


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
        issue = connection.issue
        if issue:
            updated = replace(updated, settled_at=now)
        if issue and issue.notices:
            # Told of it: kept for the damping window; the escalator sends "restored" once it stays healthy.
            healed = replace(issue, healed_at=now)
            updated = replace(updated, recovering=healed)
            events.append(ConnectionEvent(EventKind.ISSUE_HEALED, now, issue.type, issue.episode_id))
        elif issue:
            events.append(issue_closed(issue, now))
        elif connection.suspect:
            events.append(ConnectionEvent(EventKind.SUSPECT_CLEARED, now, connection.suspect.type))
        if connection.state is ConnectionState.PENDING:
            events.append(ConnectionEvent(EventKind.VERIFIED, now))
            updated = replace(updated, settled_at=now)
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
        # Another type may have another schedule: the deadline follows it (keeping any time paused).
        retyped = replace(current, type=issue_type)
        shift = disconnect_deadline(retyped, policy.escalation, now) - disconnect_deadline(
            current, policy.escalation, now
        )
        changed = replace(retyped, deadline=current.deadline + shift)
        event = ConnectionEvent(EventKind.ISSUE_CHANGED, now, issue_type, current.episode_id)
        return Transition(replace(connection, issue=changed), events=(event,))
    suspect = connection.suspect
    if suspect is not None and now - suspect.first_seen_at >= policy.confirm_delay:
        if continues(connection.recovering, now, policy.escalation):
            return _returned(connection, issue_type, now, policy)
        opened = OpenIssue(
            type=issue_type,
            episode_id=new_episode_id,
            first_seen_at=suspect.first_seen_at,
            opened_at=now,
            deadline=now,
        )
        opened = replace(opened, deadline=disconnect_deadline(opened, policy.escalation, now))
        event = ConnectionEvent(EventKind.ISSUE_OPENED, now, issue_type, new_episode_id, intuit_tid)
        updated = replace(
            connection, issue=opened, recovering=None, suspect=None, state=ConnectionState.NEEDS_ATTENTION
        )
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


def _returned(
    connection: Connection, issue_type: IssueType, now: datetime, policy: CheckPolicy
) -> Transition:
    """The problem came back within the damping window: the healed episode goes on, with its clock (the
    deadline stays where it was) and its notices (no new day-0 notice)."""
    episode = connection.recovering
    assert episode is not None
    resumed = replace(episode, healed_at=None)
    if issue_type is not episode.type:
        retyped = replace(resumed, type=issue_type)
        shift = disconnect_deadline(retyped, policy.escalation, now) - disconnect_deadline(
            resumed, policy.escalation, now
        )
        resumed = replace(retyped, deadline=resumed.deadline + shift)
    event = ConnectionEvent(EventKind.ISSUE_RETURNED, now, issue_type, episode.episode_id)
    updated = replace(
        connection, issue=resumed, recovering=None, suspect=None, state=ConnectionState.NEEDS_ATTENTION
    )
    return Transition(updated, events=(event,))


def reauth_warning(connection: Connection, now: datetime, policy: CheckPolicy) -> ConnectionEvent | None:
    """Warn once when the 5-year hard cap is within the warning window."""
    hard = connection.tokens.hard_expires_at
    if hard is None or hard - now > policy.reauth_warning:
        return None
    warned = connection.reauth_due_warned_at
    if warned is not None and hard - warned <= policy.reauth_warning:
        return None
    return ConnectionEvent(EventKind.REAUTH_DUE, now, detail=hard.isoformat())


# --- transitions outside a check: a disconnect and a reauthorization ------------------------------------------
# Both are decided under the connection's lease (``service.leased``) on the item the lease returned, so the
# rules that keep them from undoing each other live here, once.


def disconnected(
    connection: Connection, reason: DisconnectReason, now: datetime, *, episode_id: str | None = None
) -> Transition:
    """The connection without its grant. Already disconnected: unchanged (a disconnect is idempotent).

    The escalator passes the ``episode_id`` it escalated: the connection must still need attention in that
    episode and not be on hold, or ``DisconnectAverted`` (a reauthorization that just succeeded is never undone).
    Its disconnect notice stays pending on the connection until the escalator sent it."""
    if connection.state is ConnectionState.DISCONNECTED:
        return Transition(connection)
    issue = connection.issue
    pending = None
    if episode_id is not None:
        _confirm_still_due(connection, episode_id)
        assert issue is not None
        pending = PendingNotice(NoticeKind.DISCONNECTED.value, episode_id, issue.type)
    updated = replace(
        connection,
        state=ConnectionState.DISCONNECTED,
        disconnect_reason=reason,
        disconnected_at=now,
        sealed_tokens=None,
        issue=None,
        recovering=None,
        suspect=None,
        pending_notice=pending,
    )
    event = ConnectionEvent(
        EventKind.DISCONNECTED,
        now,
        issue.type if issue else None,
        issue.episode_id if issue else None,
        detail=reason.value,
    )
    return Transition(updated, events=(event,))


def _confirm_still_due(connection: Connection, episode_id: str) -> None:
    issue = connection.issue
    if connection.state is not ConnectionState.NEEDS_ATTENTION or issue is None:
        raise DisconnectAverted(connection.connection_id, "no longer needs attention")
    if issue.episode_id != episode_id:
        raise DisconnectAverted(connection.connection_id, "another episode")
    if connection.on_hold:
        raise DisconnectAverted(connection.connection_id, "on hold")


@dataclass(frozen=True)
class NewGrant:
    """A grant a sign-in obtained and verified (CompanyInfo answered with it), sealed for storing."""

    realm_id: str
    sealed: SealedTokens
    refresh_expires_at: datetime
    hard_expires_at: datetime | None
    authorized_by: Authorizer | None
    company_name: str | None
    # The sign-in's link: the grant generation it carried and when it was minted (the state's creation for a
    # sign-in started from QuickBooks).
    link_generation: int
    link_issued_at: datetime


def reauthorized(connection: Connection, grant: NewGrant, now: datetime) -> Transition:
    """The connection on its new grant, healthy. Raises (``ReconnectLinkInvalid``, ``RealmMismatch``) when the
    sign-in may no longer store it: another grant came first, the customer disconnected after the link was
    minted, or the connection moved to another company meanwhile."""
    refuse_stale_sign_in(connection, generation=grant.link_generation, link_issued_at=grant.link_issued_at)
    if connection.realm_id is not None and connection.realm_id != grant.realm_id:
        raise RealmMismatch("This connection now uses a different QuickBooks company.")
    updated = replace(
        connection,
        realm_id=grant.realm_id,
        state=ConnectionState.HEALTHY,
        authorized_by=grant.authorized_by or connection.authorized_by,
        issue=None,
        suspect=None,
        sealed_tokens=grant.sealed,
        tokens=TokenTimes(
            refresh_expires_at=grant.refresh_expires_at,
            hard_expires_at=grant.hard_expires_at,
            refreshed_at=now,
            rotated_at=now,
        ),
        last_check_at=now,
        last_success_at=now,
        transient_failures=0,
        reauth_due_warned_at=None,
        disconnect_reason=None,
        disconnected_at=None,
        grant_generation=connection.grant_generation + 1,
        company_name=known_company_name(grant.company_name, connection),
    )
    who = grant.authorized_by
    events = [ConnectionEvent(EventKind.REAUTHORIZED, now, detail=who.user_id if who else None)]
    if connection.issue is not None:
        events.append(issue_closed(connection.issue, now))
    return Transition(updated, events=tuple(events))
