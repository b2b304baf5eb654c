"""The hourly escalator: staged notices through the grace period, and a safe disconnect at its end.

It reads only the sparse index of open issues, so its cost grows with broken connections, not with all
connections. Every decision that does something (or is held back) lands in the connection's history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit

from qbo_health import clock
from qbo_health.domain.check import OutcomeKind
from qbo_health.domain.escalation import (
    RESTORED,
    Blocked,
    Decision,
    EscalationPolicy,
    PauseWindow,
    Safety,
    Stage,
    decide,
    healing,
)
from qbo_health.domain.model import Connection, DisconnectReason
from qbo_health.domain.notices import NoticeKind, SendResult
from qbo_health.domain.outage import OutageThresholds, RunSummary, outage_over
from qbo_health.errors import ConcurrentUpdate, DisconnectAverted
from qbo_health.observability import counts, logger, metrics
from qbo_health.service.health_check import CheckResult
from qbo_health.service.notices import Notices

# No disconnect unless a check completed this recently: stale data never disconnects anyone.
CHECKS_FRESH_FOR = timedelta(hours=26)


class OpenIssueStore(Protocol):
    def open_issues(self) -> Iterable[Connection]: ...

    def save(
        self,
        connection: Connection,
        *,
        changed_from: Connection | None = None,
        lease_owner: str | None = None,
        release_lease: bool = False,
    ) -> Connection: ...

    def get(self, connection_id: str) -> Connection: ...

    def release_lease(self, connection_id: str, owner: str) -> None: ...


class Recheck(Protocol):
    """A live check through the worker's code; with ``hold_lease`` the lease stays taken for the caller."""

    def __call__(self, connection_id: str, now: datetime, *, hold_lease: bool = False) -> CheckResult: ...


class Disconnect(Protocol):
    def __call__(
        self,
        connection_id: str,
        reason: DisconnectReason,
        now: datetime,
        *,
        episode_id: str | None = None,
        lease_owner: str | None = None,
    ) -> Connection: ...


class EscalationControl(Protocol):
    def outage(self) -> PauseWindow | None: ...

    def latest_run(self) -> RunSummary | None: ...

    def end_outage(self, now: datetime) -> None: ...

    def pause_windows(self) -> list[PauseWindow]: ...

    def last_beat(self) -> datetime | None: ...


class Audit(Protocol):
    def record(
        self, connection_id: str, kind: str, at: datetime, detail: dict[str, str] | None = None
    ) -> None: ...


@dataclass
class EscalationDeps:
    store: OpenIssueStore
    control: EscalationControl
    notices: Notices
    history: Audit
    recheck: Recheck
    disconnect: Disconnect
    policy: EscalationPolicy = field(default_factory=EscalationPolicy)
    thresholds: OutageThresholds = field(default_factory=OutageThresholds)
    notes: dict[str, str] = field(default_factory=dict)  # per-issue extra wording, by issue type
    dry_run: bool = False
    # The longest one connection can take (a disconnect: a live re-check, then the revoke with its retries).
    # A connection is started only with this much of the invocation left; the next hourly run goes on.
    time_per_connection: timedelta = timedelta(seconds=120)
    # The current time, read again for each lease: a run lasts up to 15 minutes, and a lease dated from its
    # start would be born expired (a worker could then refresh the same token at the same time).
    now: Callable[[], datetime] = clock.now


@dataclass
class EscalationSummary:
    open_issues: int = 0
    paused: bool = False
    checks_fresh: bool = True
    notices: Counter[str] = field(default_factory=Counter)
    disconnected: list[str] = field(default_factory=list)
    healed: list[str] = field(default_factory=list)
    blocked: Counter[str] = field(default_factory=Counter)
    would: list[str] = field(default_factory=list)  # dry run: what would have happened
    failed: list[str] = field(default_factory=list)  # connections whose escalation raised (logged, counted)
    left_for_next_run: bool = False  # the invocation ran short of time: the rest waits for the next run


def _unlimited() -> timedelta:
    return timedelta.max


def run_escalation(
    deps: EscalationDeps, now: datetime, time_left: Callable[[], timedelta] = _unlimited
) -> EscalationSummary:
    summary = EscalationSummary()
    outage = deps.control.outage()
    latest_run = deps.control.latest_run() if outage is not None else None
    if outage is not None and outage_over(outage.end or outage.start, latest_run, now, deps.thresholds):
        assert latest_run is not None
        if not deps.dry_run:
            # Intuit answered that run normally: the pause ends when the run started, not when we noticed.
            deps.control.end_outage(latest_run.started_at)
            logger.info("suspected outage over: escalation resumes")
        outage = None
    windows = deps.control.pause_windows()
    last_beat = deps.control.last_beat()
    safety = Safety(
        paused=outage is not None,
        checks_fresh=last_beat is not None and now - last_beat <= CHECKS_FRESH_FOR,
    )
    summary.paused, summary.checks_fresh = safety.paused, safety.checks_fresh
    for connection in deps.store.open_issues():  # soonest deadline first: the urgent ones never wait
        if time_left() < deps.time_per_connection:
            summary.left_for_next_run = True
            logger.warning("escalation run out of time: the rest waits for the next run")
            break
        logger.append_keys(connection_id=connection.connection_id)
        try:
            if connection.issue is None:
                _send_pending(deps, connection, now, summary)
                _settle_healed(deps, connection, now, summary)
                continue
            summary.open_issues += 1
            _escalate_one(deps, connection, windows, safety, now, summary)
        except Exception:  # one connection's bad data or a failed send never stops the others
            summary.failed.append(connection.connection_id)
            logger.exception(
                "escalation of one connection failed: the run goes on",
                extra={"connection_id": connection.connection_id},
            )
        finally:
            logger.remove_keys(["connection_id"])
    _emit(summary)
    return summary


def _escalate_one(
    deps: EscalationDeps,
    connection: Connection,
    windows: list[PauseWindow],
    safety: Safety,
    now: datetime,
    summary: EscalationSummary,
) -> None:
    decision = _decide(deps, connection, windows, safety, now)
    if deps.dry_run:
        _count_blocked(decision, summary)
        _describe(connection, decision, summary)
        return
    acting = decision.notice is not None or decision.disconnect
    issue = connection.issue
    assert issue is not None
    held: str | None = None  # the re-check's lease, kept for the disconnect
    try:
        if not safety.paused and (acting or issue.paused_now):
            # Nothing is sent or disconnected on yesterday's answer: a live re-check first. It is also what
            # pauses this connection when Intuit does not answer, and what ends that pause an hour later.
            # Before a disconnect the re-check keeps its lease: nothing can slip in between the two.
            # (A paused issue may turn out due once its re-check ends the pause: it keeps the lease too.)
            keep = decision.disconnect or issue.paused_now
            result = deps.recheck(connection.connection_id, deps.now(), hold_lease=keep)
            held = result.lease_owner
            rechecked = _rechecked(deps, connection, result, now, summary, disconnecting=decision.disconnect)
            if rechecked is None:
                return
            connection, answered = rechecked
            decision = _decide(deps, connection, windows, safety, now)
            if not answered:
                decision = replace(decision, notice=None, skipped=(), disconnect=False)
        _count_blocked(decision, summary)
        connection = _move_deadline(deps, connection, decision, now)
        if decision.notice is not None:
            connection = _send_stage(deps, connection, decision, now, summary)
        if decision.blocked is not None:
            deps.history.record(connection.connection_id, f"ESCALATION_BLOCKED_{decision.blocked.value}", now)
        if decision.disconnect:
            owner, held = held, None  # the disconnect releases it, whatever happens
            _disconnect(deps, connection, owner, issue.episode_id, now, summary)
    finally:
        if held is not None:
            deps.store.release_lease(connection.connection_id, held)


def _disconnect(
    deps: EscalationDeps,
    connection: Connection,
    owner: str | None,
    episode_id: str,
    now: datetime,
    summary: EscalationSummary,
) -> None:
    connection_id = connection.connection_id
    try:
        disconnected = deps.disconnect(
            connection_id,
            DisconnectReason.GRACE_PERIOD_EXPIRED,
            deps.now(),
            episode_id=episode_id,
            lease_owner=owner,
        )
    except DisconnectAverted as averted:
        deps.history.record(connection_id, "DISCONNECT_AVERTED", now, {"reason": averted.reason})
        logger.info("disconnect averted", extra={"connection_id": connection_id, "reason": averted.reason})
        return
    summary.disconnected.append(connection_id)
    _send_pending(deps, disconnected, now, summary)


def _send_pending(
    deps: EscalationDeps, connection: Connection, now: datetime, summary: EscalationSummary
) -> None:
    """The disconnect notice, sent until it went out (each channel once: see ``Notices.send``)."""
    pending = connection.pending_notice
    if pending is None or deps.dry_run:
        return
    kind = NoticeKind(pending.kind)
    notice = deps.notices.notice_for(
        connection, kind, now, episode_id=pending.episode_id, issue=pending.issue
    )
    result = deps.notices.send(connection, notice, now)
    if result is SendResult.IN_FLIGHT:
        return
    if result is SendResult.SENT:
        summary.notices[kind.value] += 1
    deps.store.save(replace(connection, pending_notice=None), changed_from=connection)


def _settle_healed(
    deps: EscalationDeps, connection: Connection, now: datetime, summary: EscalationSummary
) -> None:
    """An episode that healed: "restored" once it stayed healthy long enough, closed after the damping window
    (a problem back before then continues the episode: see ``domain.check``)."""
    episode = connection.recovering
    if episode is None:
        return
    step = healing(episode, now, deps.policy)
    if deps.dry_run:
        if step.send_restored:
            summary.would.append(f"{connection.connection_id}: send {RESTORED}")
        return
    connection_id = connection.connection_id
    if step.send_restored:
        notice = deps.notices.notice_for(
            connection, NoticeKind.RESTORED, now, episode_id=episode.episode_id, issue=episode.type
        )
        result = deps.notices.send(connection, notice, now)
        if result is SendResult.IN_FLIGHT:
            return
        if result is SendResult.SENT:
            summary.notices[RESTORED] += 1
            deps.history.record(
                connection_id, "NOTICE_SENT", now, {"stage": RESTORED, "notice_id": notice.notice_id}
            )
        told = replace(episode, notices=(*episode.notices, (RESTORED, now)))
        connection = deps.store.save(replace(connection, recovering=told), changed_from=connection)
    if step.close:
        deps.store.save(replace(connection, recovering=None), changed_from=connection)
        detail = {"episode_id": episode.episode_id, "issue": episode.type.value, "detail": "stayed healthy"}
        deps.history.record(connection_id, "ISSUE_CLOSED", now, detail)


def _decide(
    deps: EscalationDeps, connection: Connection, windows: list[PauseWindow], safety: Safety, now: datetime
) -> Decision:
    """The policy's decision, with the fleet's pauses and this connection's own (Intuit not answering it)."""
    issue = connection.issue
    assert issue is not None
    sent = {Stage(stage): at for stage, at in issue.notices if stage in Stage.__members__}
    own = replace(safety, paused=safety.paused or issue.paused_now)
    return decide(connection, sent, now, deps.policy, windows=windows, safety=own)


def _count_blocked(decision: Decision, summary: EscalationSummary) -> None:
    if decision.blocked is not None:
        summary.blocked[decision.blocked.value] += 1


def _rechecked(
    deps: EscalationDeps,
    connection: Connection,
    result: CheckResult,
    now: datetime,
    summary: EscalationSummary,
    *,
    disconnecting: bool,
) -> tuple[Connection, bool] | None:
    """What a live re-check found. Returns the connection as it now stands and whether Intuit answered with
    the problem still there; None when the episode is over (healed meanwhile)."""
    connection_id = connection.connection_id
    if result.transition is not None and result.transition.connection.issue is None:
        summary.healed.append(connection_id)
        if disconnecting:
            deps.history.record(connection_id, "DISCONNECT_AVERTED", now, {"reason": "healthy at re-check"})
        return None
    fresh = result.transition.connection if result.transition is not None else deps.store.get(connection_id)
    if fresh.issue is None:
        return None
    answered = result.outcome is not None and result.outcome.kind is OutcomeKind.PROBLEM
    if not answered:
        # Intuit did not answer clearly (or a check holds the lease): never act on a blip; next run.
        reason = result.outcome.reason if result.outcome else result.status
        kind = "DISCONNECT_DEFERRED" if disconnecting else "NOTICE_DEFERRED"
        deps.history.record(connection_id, kind, now, {"reason": reason})
        summary.blocked["RECHECK_INCONCLUSIVE"] += 1
    return fresh, answered


def _move_deadline(
    deps: EscalationDeps, connection: Connection, decision: Decision, now: datetime
) -> Connection:
    issue = connection.issue
    assert issue is not None
    if decision.deadline == issue.deadline:
        return connection
    moved = replace(connection, issue=replace(issue, deadline=decision.deadline))
    saved = _save(deps, moved, connection)
    deps.history.record(
        connection.connection_id,
        "DEADLINE_MOVED",
        now,
        {
            "episode_id": issue.episode_id,
            "from": issue.deadline.isoformat(),
            "to": decision.deadline.isoformat(),
        },
    )
    return saved


def _send_stage(
    deps: EscalationDeps,
    connection: Connection,
    decision: Decision,
    now: datetime,
    summary: EscalationSummary,
) -> Connection:
    issue = connection.issue
    assert issue is not None and decision.notice is not None
    notice = deps.notices.notice_for(
        connection,
        NoticeKind(decision.notice.value),
        now,
        episode_id=issue.episode_id,
        issue=issue.type,
        deadline=decision.deadline,
        days_left=round(decision.days_left),
        note=deps.notes.get(issue.type.value),
    )
    result = deps.notices.send(connection, notice, now)
    if result in (SendResult.IN_FLIGHT, SendResult.DRY_RUN):
        return connection  # another run is sending it (or retries it once its claim goes stale)
    sent_now = result is SendResult.SENT
    if sent_now:
        summary.notices[decision.notice.value] += 1
    # Sent now, or already by an overlapping run: the stage is done; overtaken ones are noted as skipped.
    recorded = tuple((stage.value, now) for stage in (*decision.skipped, decision.notice))
    updated = replace(connection, issue=replace(issue, notices=issue.notices + recorded))
    saved = _save(deps, updated, connection)
    for stage in decision.skipped:
        deps.history.record(connection.connection_id, "NOTICE_SKIPPED", now, {"stage": stage.value})
    if sent_now:
        deps.history.record(
            connection.connection_id,
            "NOTICE_SENT",
            now,
            {
                "stage": decision.notice.value,
                "notice_id": notice.notice_id,
                "days_left": str(notice.days_left),
            },
        )
    return saved


def _save(deps: EscalationDeps, updated: Connection, before: Connection) -> Connection:
    try:
        return deps.store.save(updated, changed_from=before)
    except ConcurrentUpdate:
        # The worker wrote meanwhile: apply the same change on top of what it wrote.
        fresh = deps.store.get(before.connection_id)
        if fresh.issue is None or before.issue is None or fresh.issue.episode_id != before.issue.episode_id:
            return fresh  # the episode closed meanwhile: nothing left to record on it
        assert updated.issue is not None
        merged = replace(
            fresh, issue=replace(fresh.issue, deadline=updated.issue.deadline, notices=updated.issue.notices)
        )
        return deps.store.save(merged, changed_from=fresh)


def _describe(connection: Connection, decision: Decision, summary: EscalationSummary) -> None:
    parts = []
    if decision.notice:
        parts.append(f"send {decision.notice.value}")
    if decision.disconnect:
        parts.append("re-check and disconnect if still broken")
    if decision.blocked:
        parts.append(f"blocked: {decision.blocked.value}")
    if parts:
        line = f"{connection.connection_id}: " + ", ".join(parts)
        summary.would.append(line)
        logger.info("dry run", extra={"would": line})


def _emit(summary: EscalationSummary) -> None:
    """Metrics for the alarms only, each sent when it has something to say (a metric is billed by the hour
    it is sent; the alarms treat a missing value as fine). The rest is the run's ``counts`` line."""
    counts.add("EscalatorRuns")
    counts.add("HeldConnections", summary.blocked[Blocked.HELD.value])
    if summary.open_issues:
        metrics.add_metric(name="OpenIssues", unit=MetricUnit.Count, value=summary.open_issues)
    if summary.paused:
        metrics.add_metric(name="EscalationPaused", unit=MetricUnit.Count, value=1)
    if summary.disconnected:
        metrics.add_metric(name="Disconnects", unit=MetricUnit.Count, value=len(summary.disconnected))
    if not summary.checks_fresh:
        metrics.add_metric(name="ChecksStale", unit=MetricUnit.Count, value=1)
    if summary.left_for_next_run:
        metrics.add_metric(name="EscalationCutShort", unit=MetricUnit.Count, value=1)
    if summary.failed:
        metrics.add_metric(name="EscalationFailed", unit=MetricUnit.Count, value=len(summary.failed))
