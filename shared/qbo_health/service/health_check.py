"""One connection's health check: lease, refresh when due, probe when due, classify, record, release."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Literal, Protocol

from qbo_health.domain.check import (
    MAX_INTUIT_CALLS_PER_CHECK,
    REASON_BUDGET,
    STORE_TIME_PER_CHECK,
    CheckOutcome,
    CheckPolicy,
    ConnectionEvent,
    OutcomeKind,
    Transition,
    apply_outcome,
    longest_check,
    needs_probe,
    plan_check,
    probe_required,
)
from qbo_health.domain.classification import FailureKind, classify
from qbo_health.domain.model import (
    Connection,
    ConnectionState,
    IntuitFailure,
    SealedTokens,
    StoredAccessToken,
    TokenPair,
    TokenTimes,
)
from qbo_health.domain.subscription import (
    REASON_REPORTED_6190,
    REASON_SUBSCRIPTION_STATUS,
    classify_subscription,
    issue_with_report,
)
from qbo_health.errors import AccessWanted, ConnectionNotFound, IntuitCallFailed, LeaseHeld
from qbo_health.messages import NO_RETRY_REASONS, CheckReason, CheckRequest
from qbo_health.observability import logger
from qbo_health.service.leased import Lease, acquire_lease_waiting, record

BUSY_RETRY_DELAY = timedelta(seconds=60)
__all__ = [  # re-exported
    "MAX_INTUIT_CALLS_PER_CHECK",
    "STORE_TIME_PER_CHECK",
    "acquire_lease_waiting",
    "longest_check",
]


class ConnectionRepository(Protocol):
    def acquire_lease(
        self, connection_id: str, owner: str, now: datetime, lease_seconds: int
    ) -> Connection: ...

    def save(
        self,
        connection: Connection,
        *,
        changed_from: Connection | None = None,
        lease_owner: str | None = None,
        release_lease: bool = False,
        unless_access_wanted: bool = False,
    ) -> Connection: ...

    def release_lease(self, connection_id: str, owner: str) -> None: ...


class Vault(Protocol):
    def seal(self, pair: TokenPair, *, connection_id: str, realm_id: str) -> SealedTokens: ...

    def open(self, sealed: SealedTokens, *, connection_id: str, realm_id: str) -> TokenPair: ...

    def seal_access(self, access_token: str, *, connection_id: str, realm_id: str) -> SealedTokens: ...

    def open_access(self, sealed: SealedTokens, *, connection_id: str, realm_id: str) -> str: ...


class AccessTokens(Protocol):
    """Where a handed-out access token waits for the product's next request (apart from the connection)."""

    def put(self, connection_id: str, token: StoredAccessToken, now: datetime) -> None: ...

    def get(self, connection_id: str, now: datetime) -> StoredAccessToken | None: ...

    def delete(self, connection_id: str) -> None: ...


class Granted(Protocol):
    @property
    def pair(self) -> TokenPair: ...


class CompanyRead(Protocol):
    @property
    def subscription_status(self) -> str | None: ...

    @property
    def company_name(self) -> str | None: ...

    @property
    def intuit_tid(self) -> str | None: ...


class IntuitApi(Protocol):
    def refresh(self, refresh_token: str) -> Granted: ...

    def company_info(self, realm_id: str, access_token: str) -> CompanyRead: ...


class AuditTrail(Protocol):
    def append(self, connection_id: str, events: Sequence[ConnectionEvent]) -> None: ...


class Notifier(Protocol):
    """Tells people about transitions as they happen (e.g. the restored notice when an issue closes)."""

    def connection_events(
        self, connection: Connection, events: Sequence[ConnectionEvent], now: datetime
    ) -> None: ...


class NoNotifier:
    def connection_events(
        self, connection: Connection, events: Sequence[ConnectionEvent], now: datetime
    ) -> None:
        return None


class TokenRecovery(Protocol):
    """Where a refreshed token pair waits when it could not be written to its connection."""

    def stash(self, connection_id: str, sealed: SealedTokens, times: TokenTimes, now: datetime) -> None: ...

    def take(self, connection_id: str) -> tuple[SealedTokens, TokenTimes] | None: ...

    def clear(self, connection_id: str) -> None: ...


class OutageFlag(Protocol):
    """Whether a suspected provider outage is on (read only when a transient failure asks for a retry)."""

    def suspected(self, now: datetime) -> bool: ...

    def raised_here(self, now: datetime) -> None:
        """This container has just flagged an outage: its own next checks know without a read."""


class NoOutageFlag:
    def suspected(self, now: datetime) -> bool:
        return False

    def raised_here(self, now: datetime) -> None:
        return None


class Meter(Protocol):
    """The month's metered-call budget (see ``domain.probe_budget``)."""

    def take(self, now: datetime) -> bool:
        """One metered call outside a scheduled run's grant; False when the budget says no."""

    def stop(self, now: datetime) -> None:
        """Intuit refused a metered call: no more probes this month."""


class UnmeteredBudget:
    """No budget (tools and tests that build their own deps): every probe is allowed."""

    def take(self, now: datetime) -> bool:
        return True

    def stop(self, now: datetime) -> None:
        return None


class Requeue(Protocol):
    def send(self, requests: Sequence[CheckRequest], *, delay_seconds: int = 0) -> int: ...


@dataclass
class CheckDeps:
    store: ConnectionRepository
    vault: Vault
    intuit: IntuitApi
    history: AuditTrail
    queue: Requeue
    recovery: TokenRecovery
    access_tokens: AccessTokens
    notifier: Notifier = field(default_factory=NoNotifier)
    outage: OutageFlag = field(default_factory=NoOutageFlag)
    meter: Meter = field(default_factory=UnmeteredBudget)
    policy: CheckPolicy = field(default_factory=CheckPolicy)
    lease_seconds: int = 120
    # A refresh starts only with time left for Intuit's answer and our write of it: cut off in between,
    # the rotated token would be lost. ``time_left`` is the running invocation's.
    time_left: Callable[[], timedelta] = field(default=lambda: timedelta.max)
    refresh_time_needed: timedelta = timedelta(seconds=20)
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class CheckResult:
    connection_id: str
    status: Literal["checked", "busy", "skipped"]
    outcome: CheckOutcome | None = None
    refreshed: bool = False
    transition: Transition | None = None
    skipped_because: str | None = None
    # With ``hold_lease``: the owner of the lease the check kept for its caller (who must release it).
    lease_owner: str | None = None
    # CompanyInfo reads made (metered by Intuit): 0, 1, or 2 when a refused access token was refreshed.
    metered_calls: int = 0


def check_connection(
    request: CheckRequest, deps: CheckDeps, now: datetime, *, hold_lease: bool = False
) -> CheckResult:
    """With ``hold_lease`` a checked connection stays leased to the caller (see ``CheckResult.lease_owner``):
    the escalator re-checks and disconnects under one lease, so nothing slips in between."""
    owner = f"check:{deps.new_id()}"
    try:
        connection = deps.store.acquire_lease(request.connection_id, owner, now, deps.lease_seconds)
    except ConnectionNotFound:
        return CheckResult(request.connection_id, "skipped", skipped_because="not_found")
    except LeaseHeld:
        # Someone else (another worker, or the API handing out a token) is on it; look again shortly.
        _requeue(deps, request, "busy", BUSY_RETRY_DELAY, now)
        return CheckResult(request.connection_id, "busy")
    with Lease(deps.store, owner, connection) as lease:
        skip = _skip_reason(connection)
        if skip:
            return CheckResult(request.connection_id, "skipped", skipped_because=skip)
        session = _Session(deps, lease, now, request, may_defer_tokens=not hold_lease)
        outcome = session.run()
        try:
            transition = _record_outcome(session, outcome, request, deps, now, hold_lease=hold_lease)
        except Exception:
            session.stash_pending()
            raise
    _follow_up(deps, request, transition, now)
    return CheckResult(
        request.connection_id,
        "checked",
        outcome,
        session.refreshed,
        transition,
        lease_owner=owner if hold_lease else None,
        metered_calls=session.metered_calls,
    )


def _record_outcome(
    session: _Session,
    outcome: CheckOutcome,
    request: CheckRequest,
    deps: CheckDeps,
    now: datetime,
    *,
    hold_lease: bool,
) -> Transition:
    """The outcome's transition, written with the lease released (or kept, with ``hold_lease``)."""
    if outcome.kind is OutcomeKind.METERED_OUT and outcome.reason != REASON_BUDGET:
        # Intuit refused a metered call: the app is past its allowance. Probing stops for the month
        # (never the customer's issue); checks go on refreshing tokens, which are not metered.
        deps.meter.stop(now)
    transition = apply_outcome(
        session.connection,
        outcome,
        now,
        deps.policy,
        new_episode_id=deps.new_id(),
        attempt=request.attempt if request.reason == "retry" else 0,
        outage_suspected=outcome.kind is OutcomeKind.TRANSIENT and deps.outage.suspected(now),
        retry_transient=request.reason not in NO_RETRY_REASONS,
    )
    if hold_lease:
        session.save_holding(transition.connection)
    else:
        session.save_and_release(transition.connection)
    return transition


def _skip_reason(connection: Connection) -> str | None:
    if connection.state is ConnectionState.DISCONNECTED:
        return "disconnected"
    if connection.sealed_tokens is None or connection.realm_id is None:
        return "not_authorized"
    return None


def _follow_up(deps: CheckDeps, request: CheckRequest, transition: Transition, now: datetime) -> None:
    record(deps, transition.connection, transition.events, now)
    if transition.recheck_after is not None:
        reason: CheckReason = "retry" if transition.retry_transient else "confirm"
        _requeue(deps, request, reason, transition.recheck_after, now)


def _requeue(
    deps: CheckDeps, request: CheckRequest, reason: CheckReason, delay: timedelta, now: datetime
) -> None:
    follow = CheckRequest(
        connection_id=request.connection_id,
        reason=reason,
        # A reported 6190 stays evidence for the re-checks that follow its report (confirm, retry, busy).
        reported_issue=request.reported_issue,
        run_id=request.run_id,
        attempt=request.attempt + 1 if reason == "retry" else 0,
        not_before=now + delay,
        # A busy connection was not checked: the probe its run paid for is still due. Other follow-ups
        # ask the budget for their own probe.
        probe_granted=request.probe_granted if reason == "busy" else None,
    )
    deps.queue.send([follow], delay_seconds=int(delay.total_seconds()))


class _Session:
    """The Intuit side of one check, holding the lease. Tokens stay in memory only."""

    def __init__(
        self, deps: CheckDeps, lease: Lease, now: datetime, request: CheckRequest, *, may_defer_tokens: bool
    ) -> None:
        connection = lease.connection
        self.deps, self.lease, self.owner, self.now, self.connection = (
            deps,
            lease,
            lease.owner,
            now,
            connection,
        )
        self.request = request
        self.reported = request.reported_issue  # what the product saw on a write (see ``report_problem``)
        self.refreshed = False
        self.metered_calls = 0
        # The connection as last written. ``connection`` runs ahead of it only while a refreshed pair waits
        # for the check's final write (``refresh_deferred``): then ``pending`` holds that pair.
        self.stored = connection
        self.pending: tuple[SealedTokens, TokenTimes] | None = None
        self.may_defer_tokens = may_defer_tokens
        assert connection.sealed_tokens is not None and connection.realm_id is not None
        self.realm_id: str = connection.realm_id
        self.tokens = open_tokens(deps, connection)

    def run(self) -> CheckOutcome:
        probe, paid = self.probe_decision()
        plan = plan_check(self.connection, self.now, self.deps.policy, probe=probe)
        try:
            if plan.refresh and self.nothing_between(plan.probe):
                # Nothing but the final write follows the refresh: the pair goes with the outcome, in one
                # write instead of two (most checks: the budget grants few probes).
                self.refresh_deferred()
                return CheckOutcome.healthy(probed=False)
            if plan.refresh:
                self.refresh_or_recover()
            # The budget is asked only now: a refresh that failed (a revoked grant) needed no metered call.
            if plan.probe and (paid or self.deps.meter.take(self.now)):
                return self.probe()
            if plan.probe or probe_required(self.connection):
                # A read was needed (an open issue, a suspicion, a new connection) and the budget had none:
                # nothing is known, so an open issue's escalation pauses, as when Intuit refuses.
                return CheckOutcome(OutcomeKind.METERED_OUT, reason=REASON_BUDGET)
            return CheckOutcome.healthy(probed=False)
        except IntuitCallFailed as error:
            return _outcome_of(error.failure, after_fresh_refresh=False)

    def nothing_between(self, probe: bool) -> bool:
        """Whether the check ends with the refresh: no read to make, and no caller waiting for a token."""
        return (
            self.may_defer_tokens
            and not probe
            and not probe_required(self.connection)
            and not self.connection.access_wanted
        )

    def refresh_deferred(self) -> None:
        """Refresh, keeping the new pair for the final write (``check_connection`` stashes it for recovery if
        that write fails)."""
        self.refresh_or_recover(self.refresh_pending)

    def refresh_pending(self) -> None:
        sealed, times, self.tokens = refresh_sealed(self.deps, self.connection, self.tokens, self.now)
        self.pending = (sealed, times)
        self.connection = replace(self.connection, sealed_tokens=sealed, tokens=times)
        self.refreshed = True

    def probe_decision(self) -> tuple[bool, bool]:
        """(probe, paid): whether this check reads CompanyInfo, and whether its run already paid for it. A
        scheduled check follows its run's grant; any other reads when evidence asks, if the budget agrees."""
        granted = self.request.probe_granted
        if granted is not None:
            return granted, granted
        return needs_probe(self.connection, self.now, self.deps.policy), False

    def company_info(self) -> CompanyRead:
        self.metered_calls += 1
        return self.deps.intuit.company_info(self.realm_id, self.tokens.access_token)

    def refresh_or_recover(self, refresh: Callable[[], None] | None = None) -> None:
        """``refresh`` (the persisting one by default); a superseded token (a pair stashed by an earlier failed
        write) is adopted first and the refresh tried again."""
        refresh = refresh or self.refresh
        try:
            refresh()
        except IntuitCallFailed as error:
            if error.failure.oauth_error != "invalid_grant" or not self.recover():
                raise
            refresh()

    def recover(self) -> bool:
        """Adopt a pair stashed by a refresh whose write failed (the stored token is then superseded)."""
        stashed = self.deps.recovery.take(self.connection.connection_id)
        if stashed is None:
            return False
        sealed, times = stashed
        self.connection = self.stored = self.deps.store.save(
            replace(self.connection, sealed_tokens=sealed, tokens=times),
            changed_from=self.connection,
            lease_owner=self.owner,
        )
        self.tokens = open_tokens(self.deps, self.connection)
        self.deps.recovery.clear(self.connection.connection_id)
        logger.warning("recovered the tokens of a refresh whose write had failed")
        return True

    def probe(self) -> CheckOutcome:
        try:
            return self.read(self.company_info())
        except IntuitCallFailed as error:
            verdict = classify(error.failure, after_fresh_refresh=self.refreshed)
            if verdict.kind is not FailureKind.REFRESH_AND_RETRY:
                return _outcome_of(error.failure, after_fresh_refresh=self.refreshed)
        # The access token was refused (an expired one draws 401 with code 100, or 3200): refresh once and
        # ask again; a second refusal means the grant is gone.
        self.refresh()
        if not self.deps.meter.take(self.now):
            return CheckOutcome(OutcomeKind.METERED_OUT, reason=REASON_BUDGET)
        try:
            info = self.company_info()
        except IntuitCallFailed as error:
            return _outcome_of(error.failure, after_fresh_refresh=True)
        return self.read(info)

    def read(self, info: CompanyRead) -> CheckOutcome:
        """A successful CompanyInfo read: its SubscriptionStatus decides (a suspended company still reads)."""
        verdict = classify_subscription(info.subscription_status)
        if verdict.unknown:
            logger.warning(
                "CompanyInfo without a known SubscriptionStatus: counted healthy",
                extra={
                    "connection_id": self.connection.connection_id,
                    "subscription_status": (info.subscription_status or "")[:32] or None,
                    "intuit_tid": info.intuit_tid,
                },
            )
        issue = issue_with_report(verdict, self.reported)
        if issue is None:
            return CheckOutcome.healthy(
                probed=True, subscription_status=verdict.status, company_name=info.company_name
            )
        reason = REASON_REPORTED_6190 if verdict.issue is None else REASON_SUBSCRIPTION_STATUS
        return CheckOutcome(
            OutcomeKind.PROBLEM,
            issue,
            reason,
            probed=True,
            intuit_tid=info.intuit_tid,
            subscription_status=verdict.status,
            company_name=info.company_name,
        )

    def refresh(self) -> None:
        self.connection, self.tokens = refresh_and_persist(
            self.deps, self.connection, self.tokens, owner=self.owner, now=self.now
        )
        self.stored = self.connection
        self.refreshed = True

    def save_and_release(self, checked: Connection) -> None:
        """Record the outcome and release the lease in one write. An API caller that asked for an access
        token while we held the lease gets ours (stored before the release) instead of refreshing again."""
        wanted = self.connection.access_wanted
        if wanted:
            self.share_access_token()
        save = partial(self.lease.save, checked, changed_from=self.stored)
        try:
            save(unless_access_wanted=not wanted)
        except AccessWanted:
            self.share_access_token()
            save()

    def stash_pending(self) -> None:
        """A refreshed pair that was to go with the final write must not be lost (see ``refresh_and_persist``)."""
        if self.pending is not None:
            self.deps.recovery.stash(self.connection.connection_id, *self.pending, self.now)
            logger.warning("token write failed after a refresh: new tokens kept for recovery")

    def save_holding(self, checked: Connection) -> None:
        """Record the outcome and keep the lease (a caller waiting for a token gets ours first)."""
        if self.connection.access_wanted:
            self.share_access_token()
        self.connection = self.stored = self.lease.save(checked, changed_from=self.stored, keep=True)

    def share_access_token(self) -> None:
        if self.refreshed and self.tokens.access_token:
            share_access_token(self.deps, self.connection, self.tokens, self.now)


def open_tokens(deps: CheckDeps, connection: Connection) -> TokenPair:
    """The clear token pair of a connection that has one (callers check ``sealed_tokens`` first)."""
    assert connection.sealed_tokens is not None and connection.realm_id is not None
    return deps.vault.open(
        connection.sealed_tokens, connection_id=connection.connection_id, realm_id=connection.realm_id
    )


def refresh_and_persist(
    deps: CheckDeps, connection: Connection, tokens: TokenPair, *, owner: str, now: datetime
) -> tuple[Connection, TokenPair]:
    """Refresh at Intuit and persist the new pair in one conditional write before anything uses it.

    The caller holds the connection's lease as ``owner``: Intuit may kill the old refresh token at once,
    so two refreshes of one connection must never run together. Raises ``IntuitCallFailed``.
    """
    sealed, times, pair = refresh_sealed(deps, connection, tokens, now)
    try:
        saved = deps.store.save(
            replace(connection, sealed_tokens=sealed, tokens=times),
            changed_from=connection,
            lease_owner=owner,
        )
    except Exception:
        # Intuit may already have killed the old refresh token: the new pair must not be lost. It goes to
        # a recovery record in another table, which the next check adopts (see ``_Session.recover``).
        deps.recovery.stash(connection.connection_id, sealed, times, now)
        logger.warning("token write failed after a refresh: new tokens kept for recovery")
        raise
    return saved, pair


def refresh_sealed(
    deps: CheckDeps, connection: Connection, tokens: TokenPair, now: datetime
) -> tuple[SealedTokens, TokenTimes, TokenPair]:
    """Refresh at Intuit: the new pair sealed for storage, its times, and the clear pair. Started only with
    time left to write it (the caller writes it before anything else can fail). Raises ``IntuitCallFailed``."""
    assert connection.realm_id is not None
    if deps.time_left() < deps.refresh_time_needed:
        logger.warning("refresh not started: too little time left in this invocation")
        raise IntuitCallFailed(IntuitFailure(status=None, transport="not_started", endpoint="token"))
    pair = deps.intuit.refresh(tokens.refresh_token).pair
    sealed = deps.vault.seal(
        pair.without_access_token(), connection_id=connection.connection_id, realm_id=connection.realm_id
    )
    rotated = pair.refresh_token != tokens.refresh_token
    times = TokenTimes(
        access_expires_at=None,  # the connection keeps no access token (see ``share_access_token``)
        refresh_expires_at=pair.refresh_expires_at,
        hard_expires_at=pair.hard_expires_at or connection.tokens.hard_expires_at,
        refreshed_at=now,
        rotated_at=now if rotated else connection.tokens.rotated_at,
    )
    logger.debug("token refreshed", extra={"rotated": rotated})
    return sealed, times, pair


def share_access_token(deps: CheckDeps, connection: Connection, pair: TokenPair, now: datetime) -> None:
    """Keep ``pair``'s access token (sealed, apart from the connection) for the product's next request."""
    assert connection.realm_id is not None
    sealed = deps.vault.seal_access(
        pair.access_token, connection_id=connection.connection_id, realm_id=connection.realm_id
    )
    deps.access_tokens.put(connection.connection_id, StoredAccessToken(sealed, pair.access_expires_at), now)


def _outcome_of(failure: IntuitFailure, *, after_fresh_refresh: bool) -> CheckOutcome:
    verdict = classify(failure, after_fresh_refresh=after_fresh_refresh)
    if verdict.kind is FailureKind.ISSUE:
        return CheckOutcome(OutcomeKind.PROBLEM, verdict.issue, verdict.reason, intuit_tid=failure.intuit_tid)
    if verdict.kind is FailureKind.MISCONFIGURED:
        return CheckOutcome(OutcomeKind.MISCONFIGURED, reason=verdict.reason, intuit_tid=failure.intuit_tid)
    if verdict.kind is FailureKind.METERED:
        return CheckOutcome(OutcomeKind.METERED_OUT, reason=verdict.reason, intuit_tid=failure.intuit_tid)
    return CheckOutcome(OutcomeKind.TRANSIENT, reason=verdict.reason, intuit_tid=failure.intuit_tid)
