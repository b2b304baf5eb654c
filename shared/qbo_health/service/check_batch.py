"""A check-queue batch: each record is one connection's check; trouble is tallied per run for the guard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from qbo_health import invocation
from qbo_health.adapters.control import RunTally
from qbo_health.domain.check import REASON_BUDGET, EventKind, OutcomeKind
from qbo_health.domain.model import SubscriptionStatus
from qbo_health.domain.outage import OutageThresholds, looks_like_outage
from qbo_health.messages import CheckRequest
from qbo_health.observability import counts, logger, metrics
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
    # Checks in flight at once. Each holds its connection's lease, so they never touch the same connection.
    concurrency: int = 1
    last_beat: datetime | None = None


def process_check_batch(event: dict[str, Any], lambda_context: Any, ctx: BatchContext) -> dict[str, Any]:
    """Checks the batch's connections ``ctx.concurrency`` at a time, then reports each message as Powertools'
    batch processor does: a check that raised is a partial batch failure, back to the queue."""
    results: list[tuple[CheckRequest, CheckResult]] = []
    with ThreadPoolExecutor(max_workers=ctx.concurrency, thread_name_prefix="check") as pool:
        checks = {
            record["messageId"]: pool.submit(invocation.carried(_check_record), SQSRecord(record), ctx)
            for record in event.get("Records", [])
        }

    def record_handler(record: SQSRecord) -> None:
        checked = checks[record.message_id].result()  # raises what the check raised
        if checked is not None:
            results.append(checked)
            logger.append_keys(connection_id=checked[0].connection_id)
            try:
                _count(checked[1])
            finally:
                logger.remove_keys(["connection_id"])

    response = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=lambda_context,
    )
    _count_metered(results)
    _guard_runs(results, ctx)
    _heartbeat(results, ctx)
    return dict(response)


def _check_record(record: SQSRecord, ctx: BatchContext) -> tuple[CheckRequest, CheckResult] | None:
    """One message's check, in a pool thread; None when the message went back to the queue unchecked."""
    request = CheckRequest.model_validate_json(record.body)
    logger.thread_safe_append_keys(connection_id=request.connection_id)
    try:
        now = ctx.now()
        if request.not_before and request.not_before > now:
            # Early delivery of a delayed re-check: put it back for the time that is left.
            ctx.deps.queue.send([request], delay_seconds=int((request.not_before - now).total_seconds()))
            return None
        if ctx.deps.time_left() < ctx.check_time_needed:
            # Put back, not failed: a failed message counts towards the dead-letter queue. Each check starts
            # only with this much time left, however many run beside it.
            ctx.deps.queue.send([request])
            counts.add("CheckPutBack")
            return None
        return request, check_connection(request, ctx.deps, now)
    finally:
        logger.thread_safe_remove_keys(["connection_id"])


def _count(result: CheckResult) -> None:
    """Counts go to the invocation's ``counts`` log line; only what an alarm reads is a metric."""
    if result.status != "checked" or result.outcome is None:
        counts.add(f"Check{result.status.capitalize()}")
        return
    outcome = result.outcome
    withheld = outcome.kind is OutcomeKind.METERED_OUT and outcome.reason == REASON_BUDGET
    # A probe our own budget withheld is not Intuit refusing one (that has its own alarm).
    counts.add("ProbeWithheldBudget" if withheld else _OUTCOME_COUNTS[outcome.kind])
    if outcome.probed and outcome.subscription_status in (None, SubscriptionStatus.UNKNOWN):
        # Counted healthy (an unknown answer is never the customer's problem); the check logged it.
        counts.add("SubscriptionStatusUnknown")
    if outcome.kind is OutcomeKind.METERED_OUT and not withheld:
        metrics.add_metric(name="ProbeRefusedMetering", unit=MetricUnit.Count, value=1)  # its alarm
        logger.warning(
            "Intuit refused the probe: metered allowance used up", extra={"intuit_tid": outcome.intuit_tid}
        )
    if result.refreshed:
        counts.add("TokenRefreshed")
    if result.outcome.kind is OutcomeKind.TRANSIENT:
        logger.info("transient Intuit failure", extra={"reason": result.outcome.reason})
    if result.outcome.kind is OutcomeKind.MISCONFIGURED:
        logger.error(
            "Intuit rejected our client credentials", extra={"intuit_tid": result.outcome.intuit_tid}
        )
    for event in result.transition.events if result.transition else ():
        counts.add(_EVENT_COUNTS.get(event.kind, event.kind.value))
        logger.info(
            "connection event",
            extra={"event": event.kind.value, "issue": event.issue.value if event.issue else None},
        )


def _count_metered(results: list[tuple[CheckRequest, CheckResult]]) -> None:
    """CompanyInfo reads made (Intuit meters them): the dashboard draws the hourly burn from this count."""
    counts.add("MeteredCalls", sum(result.metered_calls for _, result in results))


_OUTCOME_COUNTS = {
    OutcomeKind.HEALTHY: "CheckHealthy",
    OutcomeKind.PROBLEM: "CheckProblem",
    OutcomeKind.TRANSIENT: "CheckTransient",
    OutcomeKind.MISCONFIGURED: "CheckMisconfigured",
    # Also a metric: its alarm says the app is past its metered allowance (ProbeRefusedMeteringAlarm).
    OutcomeKind.METERED_OUT: "ProbeRefusedMetering",
}

_EVENT_COUNTS = {
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
