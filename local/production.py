"""Production's cadence on the simulated clock: the one way a scenario lets time pass.

On AWS, EventBridge Scheduler fires the functions at the times `template.yaml` declares (the scheduler and
the escalator, hourly at their own minutes), the SQS event sources hand check messages to the worker (and bus
events to webhook-delivery, when the template deploys it) as soon as they are visible, and Lambda retries a failed asynchronous invocation twice (one minute, then two minutes
later). `ProductionSchedule` plays exactly that on the simulated clock, reading the schedules from the
template, so a scenario test runs what production runs, with the settings it runs with:

    schedule = ProductionSchedule(lambdas)
    schedule.run_for(timedelta(days=3))
    schedule.errors  # failed invocations, as Lambda would count them

Time jumps from one event to the next (a firing, a retry, the moment a delayed message falls due), so days
pass in seconds and nothing depends on the speed of the machine. A check-everything-now run is an ops action
(`LocalLambda.run_scheduler(all_slots=True)`), never how a scenario passes.
"""

from __future__ import annotations

import heapq
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from local.runner import LocalLambda, schedule_event
from local.template import function_schedules

# Lambda's retries of an asynchronous invocation that returned an error (AWS Lambda Developer Guide,
# "Error handling and automatic retries in Lambda": two more attempts, one minute then two minutes later).
# EventBridge Scheduler invokes a Lambda target asynchronously, and the template sets no EventInvokeConfig.
ASYNC_RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=2))
MINUTES_PER_DAY = 24 * 60


def firings_per_day(expression: str) -> list[int]:
    """The minutes of the day at which a schedule expression fires (``cron(5 * * * ? *)`` -> 5, 65, ...).

    Supports what a daily cadence needs: ``rate(N minutes|hours)`` and ``cron(M H * * ? *)`` whose minute and
    hour fields are ``*``, a number, a comma list or ``*/N``. Anything else is refused rather than guessed.
    """
    expression = expression.strip()
    if expression.startswith("rate(") and expression.endswith(")"):
        amount, unit = expression[5:-1].split()
        every = int(amount) * {"minute": 1, "minutes": 1, "hour": 60, "hours": 60}[unit]
        return list(range(0, MINUTES_PER_DAY, every))
    if expression.startswith("cron(") and expression.endswith(")"):
        fields = expression[5:-1].split()
        if len(fields) != 6 or fields[2] not in ("*", "?") or fields[3] != "*" or fields[4] not in ("*", "?"):
            raise ValueError(f"unsupported schedule expression: {expression}")
        minutes, hours = _cron_field(fields[0], 60), _cron_field(fields[1], 24)
        return sorted(hour * 60 + minute for hour in hours for minute in minutes)
    raise ValueError(f"unsupported schedule expression: {expression}")


def _cron_field(text: str, size: int) -> list[int]:
    if text == "*":
        return list(range(size))
    if text.startswith("*/"):
        return list(range(0, size, int(text[2:])))
    values = [int(part) for part in text.split(",")]
    if any(not 0 <= value < size for value in values):
        raise ValueError(f"cron field out of range: {text}")
    return values


def next_firing(firings: list[int], after: datetime) -> datetime:
    """The first firing strictly after ``after``."""
    midnight = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for day in (0, 1):
        for minute in firings:
            moment = midnight + timedelta(days=day, minutes=minute)
            if moment > after:
                return moment
    raise ValueError("a schedule with no firings")


@dataclass(frozen=True)
class Invocation:
    """One invocation of a scheduled function, as Lambda's metrics and logs would show it."""

    function: str
    at: datetime
    attempt: int  # 1 for the scheduled one, 2 and 3 for Lambda's retries
    result: Any = None
    error: str | None = None


@dataclass(order=True)
class _Pending:
    at: datetime
    order: int
    function: str = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    attempt: int = field(compare=False, default=1)


class ProductionSchedule:
    """Plays the template's schedules, the check queue and Lambda's retries on the simulated clock."""

    def __init__(
        self,
        lambdas: LocalLambda,
        *,
        after_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        self.lambdas = lambdas
        self.clock = lambdas.stack.clock
        self.firings = {
            function: firings_per_day(expression)
            for function, expression in function_schedules(lambdas.stack.template).items()
        }
        self.invocations: list[Invocation] = []
        self._after_invocation = after_invocation
        self._retries: list[_Pending] = []
        self._order = 0
        self._last_event = self.clock.now()
        self._next_message: datetime | None = None
        self._next_webhook: datetime | None = None

    @property
    def errors(self) -> list[Invocation]:
        return [invocation for invocation in self.invocations if invocation.error is not None]

    def of(self, function: str) -> list[Invocation]:
        return [invocation for invocation in self.invocations if invocation.function == function]

    def run_for(self, duration: timedelta) -> None:
        self.run_until(self.clock.now() + duration)

    def run_until(self, end: datetime) -> None:
        """Let time pass until ``end``: every firing, retry and due message in between happens in order."""
        self._drain()  # whatever the scenario queued by hand before time starts to pass
        while True:
            now = self.clock.now()
            moment, due = self._next_events(now)
            if moment > end:
                self.clock.set(max(end, now))
                return
            self.clock.set(moment)
            for function, event, attempt in due:
                self._invoke(function, event, attempt)
            self._drain()

    def _next_events(self, now: datetime) -> tuple[datetime, list[tuple[str, dict[str, Any], int]]]:
        scheduled = {function: next_firing(firings, now) for function, firings in self.firings.items()}
        candidates = list(scheduled.values())
        if self._retries:
            candidates.append(self._retries[0].at)
        if self._next_message is not None:
            candidates.append(max(self._next_message, now))
        if self._next_webhook is not None:
            candidates.append(max(self._next_webhook, now))
        moment = min(candidates)
        due: list[tuple[str, dict[str, Any], int]] = []
        while self._retries and self._retries[0].at <= moment:
            retry = heapq.heappop(self._retries)
            due.append((retry.function, retry.event, retry.attempt))
        # The scheduler fires before the escalator when both are due at once (their template minutes differ).
        for function in sorted(scheduled, key=lambda name: name != "check_scheduler"):
            if scheduled[function] == moment:
                due.append((function, schedule_event(moment, {}), 1))
        return moment, due

    def _invoke(self, function: str, event: dict[str, Any], attempt: int) -> None:
        at = self.clock.now()
        try:
            result = self.lambdas.invoke(function, event)
            invocation = Invocation(function, at, attempt, result=result)
        except Exception as error:  # a function error: Lambda counts it and retries the async invocation
            summary = "".join(traceback.format_exception_only(type(error), error)).strip()
            invocation = Invocation(function, at, attempt, error=summary)
            if attempt <= len(ASYNC_RETRY_DELAYS):
                self._order += 1
                retry_at = at + ASYNC_RETRY_DELAYS[attempt - 1]
                heapq.heappush(self._retries, _Pending(retry_at, self._order, function, event, attempt + 1))
        self.invocations.append(invocation)
        if self._after_invocation is not None:
            self._after_invocation(invocation)

    def _drain(self) -> None:
        stats = self.lambdas.drain_checks()
        self._next_message = stats.next_due
        # The webhook queue's event source (only when the template deploys it): events the run published
        # are delivered now, failed attempts when their backoff has passed.
        self._next_webhook = self.lambdas.drain_webhooks().next_due
