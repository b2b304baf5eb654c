"""The metered-call budget: how many CompanyInfo probes each hourly run may make, and which connections
get them.

Intuit's App Partner Program meters data reads (the "CorePlus" calls); CompanyInfo is one. The Builder tier
gives an app 500,000 a month for the whole app (the host product's own sync included); past that, calls are
refused until the next month and Intuit shows the app as "Offline" to its customers (Intuit developer blog,
2026-01-08). So the service spends a monthly budget of its own, paced across the month, and spends it where a
probe is most likely to find a problem nobody else would notice.

Evidence replaces probes: a successful probe, or the product's own report of successful calls, within
``probe_interval`` means no probe is needed. The daily token refresh is unmetered evidence too, but only of
the authorization (it finds ``AUTHORIZATION_EXPIRED`` by itself), so it never counts as success evidence
for admin or subscription problems.

Pure: no I/O; callers pass ``now`` and the month's state.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from qbo_health.domain.model import Connection, ConnectionState, SubscriptionStatus

# Statuses under which a company's subscription is likely to change soon: trials end in 30 days
# (Intuit's QuickBooks Online trial), RESTRICTED is one step from SUSPENDED.
AT_RISK_STATUSES = frozenset(
    {SubscriptionStatus.TRIAL, SubscriptionStatus.TRIALOPTIN, SubscriptionStatus.RESTRICTED}
)
# The alarm looks at the month-to-date share of the budget before this day of the month.
EARLY_BURN_DAY = 24


@dataclass(frozen=True)
class BudgetPolicy:
    monthly_budget: int = 100_000
    # No probe while success evidence (a probe, or the product's report) is more recent than this.
    probe_interval: timedelta = timedelta(hours=20)
    # Connections in one of these situations weigh ``risk_weight`` times more per hour without evidence.
    recently_settled: timedelta = timedelta(days=14)  # restored after an issue, or verified after connecting
    new_connection: timedelta = timedelta(days=14)
    nearing_hard_cap: timedelta = timedelta(days=60)
    risk_weight: float = 4.0
    # The alarm share: month to date at or above this share of the budget before ``EARLY_BURN_DAY``.
    early_burn_share: float = 0.8


@dataclass(frozen=True)
class BudgetState:
    """One calendar month (UTC) of metered calls: ``spent`` counts every call granted, made or not."""

    month: str
    spent: int = 0
    # Intuit refused a metered call this month: no more probes until the next month.
    refused_at: datetime | None = None


class Need(IntEnum):
    """Why a connection wants a probe, most urgent first (lower value = earlier)."""

    # A check must read CompanyInfo: an open issue (only a read closes it), a suspicion to confirm, a new
    # connection to verify. Granted first, from the month's remainder, regardless of the hour's pace.
    REQUIRED = 0
    # The product reported a failed call since our last look.
    REPORTED = 1
    # Nothing recent shows it healthy: ranked by hours without evidence, weighted by risk.
    STALE = 2
    # Recent success evidence: no probe.
    NONE = 3


@dataclass(frozen=True)
class Evidence:
    """What the scheduler knows of one connection to decide whether to spend a probe on it."""

    connection_id: str
    state: ConnectionState
    has_issue: bool = False
    has_suspect: bool = False
    created_at: datetime | None = None
    last_success_at: datetime | None = None  # our latest successful probe
    activity_ok_at: datetime | None = None  # the product's latest reported successful call
    activity_failed_at: datetime | None = None  # the product's latest reported failed call
    settled_at: datetime | None = None  # restored after an issue, or verified after connecting
    subscription_status: SubscriptionStatus | None = None
    hard_expires_at: datetime | None = None

    @property
    def evidence_at(self) -> datetime | None:
        """The latest success evidence of any source (the token refresh is not one: see the module doc)."""
        moments = [moment for moment in (self.last_success_at, self.activity_ok_at) if moment is not None]
        return max(moments) if moments else None


def evidence_of(connection: Connection) -> Evidence:
    return Evidence(
        connection_id=connection.connection_id,
        state=connection.state,
        has_issue=connection.issue is not None,
        has_suspect=connection.suspect is not None,
        created_at=connection.created_at,
        last_success_at=connection.last_success_at,
        activity_ok_at=connection.activity_ok_at,
        activity_failed_at=connection.activity_failed_at,
        settled_at=connection.settled_at,
        subscription_status=connection.subscription_status,
        hard_expires_at=connection.tokens.hard_expires_at,
    )


@dataclass(frozen=True)
class Rank:
    need: Need
    # Within a need, higher first: weighted hours without evidence.
    score: float = 0.0

    def sort_key(self) -> tuple[int, float]:
        return (int(self.need), -self.score)


@dataclass(frozen=True)
class Selection:
    probe: tuple[str, ...]
    # Wanted a probe (REQUIRED, REPORTED or STALE) but the budget had none left for it this hour.
    deferred: tuple[str, ...]
    # Probes granted: the run reserves this many from the month before sending.
    granted: int


def month_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def month_start(now: datetime) -> datetime:
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def month_end(now: datetime) -> datetime:
    moment = now.astimezone(UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return month_start(moment) + timedelta(days=days)


def hours_left(now: datetime) -> int:
    """Hourly runs left in the month, this one included."""
    start_of_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return max(1, int((month_end(now) - start_of_hour).total_seconds() // 3600))


def current(state: BudgetState | None, now: datetime) -> BudgetState:
    """The state of ``now``'s month: a state from an earlier month starts over."""
    month = month_of(now)
    if state is None or state.month != month:
        return BudgetState(month)
    return state


def remaining(state: BudgetState, policy: BudgetPolicy) -> int:
    return max(0, policy.monthly_budget - state.spent)


def probing_stopped(state: BudgetState) -> bool:
    """A metering refusal stops all probing for the rest of its month (checks still refresh tokens)."""
    return state.refused_at is not None


def hourly_allowance(state: BudgetState, now: datetime, policy: BudgetPolicy) -> int:
    """What this hour's run may spend: up to the month's pace line (the budget spread evenly over the
    month's hours, this one included), never more than the month has left. Spending below the line (fresh
    evidence made probes unnecessary) leaves more for later hours; required probes above it leave less."""
    state = current(state, now)
    if probing_stopped(state):
        return 0
    total_hours = int((month_end(now) - month_start(now)).total_seconds() // 3600)
    elapsed = total_hours - hours_left(now) + 1
    pace = policy.monthly_budget * elapsed // total_hours
    return max(0, min(remaining(state, policy), pace - state.spent))


def rank(evidence: Evidence, now: datetime, policy: BudgetPolicy) -> Rank:
    """How much a probe of this connection is worth now."""
    if evidence.state is ConnectionState.DISCONNECTED:
        return Rank(Need.NONE)
    if evidence.has_issue or evidence.has_suspect or evidence.state is ConnectionState.PENDING:
        return Rank(Need.REQUIRED)
    seen = evidence.evidence_at
    failed = evidence.activity_failed_at
    if failed is not None and (evidence.last_success_at is None or failed > evidence.last_success_at):
        return Rank(Need.REPORTED, score=_hours(now - failed))
    if seen is not None and now - seen < policy.probe_interval:
        return Rank(Need.NONE)
    since = seen or evidence.created_at
    # Never seen healthy and no creation time: as stale as can be.
    hours = _hours(now - since) if since is not None else float(24 * 365 * 5)
    return Rank(Need.STALE, score=hours * risk_factor(evidence, now, policy))


def risk_factor(evidence: Evidence, now: datetime, policy: BudgetPolicy) -> float:
    """Where problems are likely: recently restored or verified, new, on a trial or restricted, nearing the
    5-year cap. Each applies ``risk_weight`` once (they do not compound: one is reason enough)."""
    risky = (
        _within(evidence.settled_at, now, policy.recently_settled)
        or _within(evidence.created_at, now, policy.new_connection)
        or evidence.subscription_status in AT_RISK_STATUSES
        or (
            evidence.hard_expires_at is not None and evidence.hard_expires_at - now <= policy.nearing_hard_cap
        )
    )
    return policy.risk_weight if risky else 1.0


def choose_probes(
    candidates: Iterable[Evidence], state: BudgetState, now: datetime, policy: BudgetPolicy
) -> Selection:
    """The connections this run probes: every REQUIRED one the month can still pay for, then the others by
    rank up to the hour's allowance. The grant never exceeds what the month has left."""
    state = current(state, now)
    ranked = sorted(
        ((rank(evidence, now, policy), evidence.connection_id) for evidence in candidates),
        key=lambda pair: (pair[0].sort_key(), pair[1]),
    )
    wanted = [(r, connection_id) for r, connection_id in ranked if r.need is not Need.NONE]
    if probing_stopped(state):
        return Selection((), tuple(connection_id for _, connection_id in wanted), 0)
    month_left = remaining(state, policy)
    allowance = hourly_allowance(state, now, policy)
    chosen: list[str] = []
    deferred: list[str] = []
    for r, connection_id in wanted:
        limit = month_left if r.need is Need.REQUIRED else min(month_left, allowance)
        if len(chosen) < limit:
            chosen.append(connection_id)
        else:
            deferred.append(connection_id)
    return Selection(tuple(chosen), tuple(deferred), len(chosen))


def spend(state: BudgetState, calls: int, now: datetime, policy: BudgetPolicy) -> BudgetState | None:
    """The state after granting ``calls`` more, or None when that would go over the month's budget."""
    state = current(state, now)
    if probing_stopped(state) or state.spent + calls > policy.monthly_budget:
        return None
    return replace(state, spent=state.spent + calls)


def refused(state: BudgetState, now: datetime) -> BudgetState:
    """Intuit refused a metered call: probing stops until the month ends (never a customer's issue)."""
    state = current(state, now)
    return state if state.refused_at is not None else replace(state, refused_at=now)


def projection(state: BudgetState, now: datetime, policy: BudgetPolicy) -> int:
    """The month's total at its current pace: month to date, plus the same hourly rate for the hours left
    (never more than the budget: pacing stops there)."""
    state = current(state, now)
    elapsed = max(1.0, (now - month_start(now)).total_seconds() / 3600)
    rate = state.spent / elapsed
    total_hours = (month_end(now) - month_start(now)).total_seconds() / 3600
    projected = round(state.spent + rate * max(0.0, total_hours - elapsed))
    return min(projected, policy.monthly_budget) if not probing_stopped(state) else state.spent


def early_burn(state: BudgetState, now: datetime, policy: BudgetPolicy) -> bool:
    """The alarm's condition: 80% of the month's budget spent before day 24 (pacing would not get there;
    required probes of open issues or suspicions did)."""
    state = current(state, now)
    before_day = now.astimezone(UTC).day < EARLY_BURN_DAY
    return before_day and state.spent >= policy.early_burn_share * policy.monthly_budget


def _within(moment: datetime | None, now: datetime, window: timedelta) -> bool:
    return moment is not None and timedelta(0) <= now - moment <= window


def _hours(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds() / 3600)
