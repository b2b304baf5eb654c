"""A check-queue batch: each record is one connection's check; trouble is tallied per run for the guard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from qbo_health.adapters.control import RunTally
from qbo_health.domain.check import REASON_BUDGET, EventKind, OutcomeKind
from qbo_health.domain.model import SubscriptionStatus
from qbo_health.domain.outage import OutageThresholds, looks_like_outage
from qbo_health.messages import CheckRequest
from qbo_health.observability import logger, metrics
from qbo_health.service.health_check import CheckDeps, CheckResult, check_connection

HEARTBEAT_EVERY_SECONDS = 600


class RunControl(Protocol):
    def add_to_run(self, run_id: str, *, transient: int, suspected: int) -> RunTally: ...

    def mark_outage(self, now: datetime, run_id: str) -> None: ...

    def beat(self, now: datetime) -> None: ...


@dataclass
class BatchContext:
    deps: CheckDeps
    control: RunControl
    thresholds: OutageThresholds
    now: Callable[[], datetime]
    # The longest one check can take (every Intuit call at the client's timeout, plus DynamoDB). A check is
    # started only with this much of the invocation left: Lambda stopping a check between Intuit's rotation
    # and our write would lose the connection's token.
    check_time_needed: timedelta = timedelta(seconds=60)
    last_beat: datetime | None = None


def process_check_batch(event: dict[str, Any], lambda_context: Any, ctx: BatchContext) -> dict[str, Any]:
    results: list[tuple[CheckRequest, CheckResult]] = []

    def record_handler(record: SQSRecord) -> None:
        request = CheckRequest.model_validate_json(record.body)
        logger.append_keys(connection_id=request.connection_id)
        now = ctx.now()
        if request.not_before and request.not_before > now:
            # Early delivery of a delayed re-check: put it back for the time that is left.
            ctx.deps.queue.send([request], delay_seconds=int((request.not_before - now).total_seconds()))
            return
        if ctx.deps.time_left() < ctx.check_time_needed:
            # Put back, not failed: a failed message counts towards the dead-letter queue.
            ctx.deps.queue.send([request])
            metrics.add_metric(name="CheckPutBack", unit=MetricUnit.Count, value=1)
            return
        result = check_connection(request, ctx.deps, now)
        results.append((request, result))
        _count(result)

    try:
        response = process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=BatchProcessor(event_type=EventType.SQS),
            context=lambda_context,
        )
    finally:
        logger.remove_keys(["connection_id"])
    _count_metered(results)
    _guard_runs(results, ctx)
    _heartbeat(results, ctx)
    return dict(response)


def _count(result: CheckResult) -> None:
    if result.status != "checked" or result.outcome is None:
        metrics.add_metric(name=f"Check{result.status.capitalize()}", unit=MetricUnit.Count, value=1)
        return
    outcome = result.outcome
    withheld = outcome.kind is OutcomeKind.METERED_OUT and outcome.reason == REASON_BUDGET
    # A probe our own budget withheld is not Intuit refusing one (that has its own alarm).
    name = "ProbeWithheldBudget" if withheld else _OUTCOME_METRICS[outcome.kind]
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if outcome.probed and outcome.subscription_status in (None, SubscriptionStatus.UNKNOWN):
        # Counted healthy (an unknown answer is never the customer's problem); the check logged it.
        metrics.add_metric(name="SubscriptionStatusUnknown", unit=MetricUnit.Count, value=1)
    if outcome.kind is OutcomeKind.METERED_OUT and not withheld:
        logger.warning(
            "Intuit refused the probe: metered allowance used up", extra={"intuit_tid": outcome.intuit_tid}
        )
    if result.refreshed:
        metrics.add_metric(name="TokenRefreshed", unit=MetricUnit.Count, value=1)
    if result.outcome.kind is OutcomeKind.TRANSIENT:
        logger.info("transient Intuit failure", extra={"reason": result.outcome.reason})
    if result.outcome.kind is OutcomeKind.MISCONFIGURED:
        logger.error(
            "Intuit rejected our client credentials", extra={"intuit_tid": result.outcome.intuit_tid}
        )
    for event in result.transition.events if result.transition else ():
        metrics.add_metric(
            name=_EVENT_METRICS.get(event.kind, event.kind.value), unit=MetricUnit.Count, value=1
        )
        logger.info(
            "connection event",
            extra={"event": event.kind.value, "issue": event.issue.value if event.issue else None},
        )


def _count_metered(results: list[tuple[CheckRequest, CheckResult]]) -> None:
    """CompanyInfo reads made (Intuit meters them): the dashboard draws the month's burn from this."""
    calls = sum(result.metered_calls for _, result in results)
    if calls:
        metrics.add_metric(name="MeteredCalls", unit=MetricUnit.Count, value=calls)


_OUTCOME_METRICS = {
    OutcomeKind.HEALTHY: "CheckHealthy",
    OutcomeKind.PROBLEM: "CheckProblem",
    OutcomeKind.TRANSIENT: "CheckTransient",
    OutcomeKind.MISCONFIGURED: "CheckMisconfigured",
    # Its own alarm: the app is past its metered allowance (ProbeRefusedMeteringAlarm).
    OutcomeKind.METERED_OUT: "ProbeRefusedMetering",
}

_EVENT_METRICS = {
    EventKind.ISSUE_SUSPECTED: "IssueSuspected",
    EventKind.ISSUE_OPENED: "IssueOpened",
    EventKind.ISSUE_CLOSED: "IssueClosed",
    EventKind.ISSUE_CHANGED: "IssueChanged",
    EventKind.SUSPECT_CLEARED: "SuspectCleared",
    EventKind.REAUTH_DUE: "ReauthDue",
    EventKind.VERIFIED: "ConnectionVerified",
}


def _guard_runs(results: list[tuple[CheckRequest, CheckResult]], ctx: BatchContext) -> None:
    """Add this batch's trouble to its run; a run far above normal is flagged as a suspected outage."""
    transient: Counter[str] = Counter()
    suspected: Counter[str] = Counter()
    for request, result in results:
        if request.run_id is None or request.attempt > 0 or result.transition is None:
            continue
        if result.outcome and result.outcome.kind is OutcomeKind.TRANSIENT:
            transient[request.run_id] += 1
        if result.transition.new_suspect:
            suspected[request.run_id] += 1
    for run_id in set(transient) | set(suspected):
        tally = ctx.control.add_to_run(run_id, transient=transient[run_id], suspected=suspected[run_id])
        if looks_like_outage(tally.scheduled, tally.transient, tally.suspected, ctx.thresholds):
            ctx.control.mark_outage(ctx.now(), run_id)
            ctx.deps.outage.raised_here(ctx.now())
            metrics.add_metric(name="OutageSuspected", unit=MetricUnit.Count, value=1)
            logger.warning("suspected provider outage", extra={"run_id": run_id, "tally": tally.__dict__})


def _heartbeat(results: list[tuple[CheckRequest, CheckResult]], ctx: BatchContext) -> None:
    """Record that checks complete, at most every ten minutes per container (it gates disconnects)."""
    completed = any(
        result.outcome and result.outcome.kind in (OutcomeKind.HEALTHY, OutcomeKind.PROBLEM)
        for _, result in results
    )
    if not completed:
        return
    now = ctx.now()
    if ctx.last_beat is not None and (now - ctx.last_beat).total_seconds() < HEARTBEAT_EVERY_SECONDS:
        return
    ctx.control.beat(now)
    ctx.last_beat = now
