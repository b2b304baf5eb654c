"""Fault injection: Intuit chaos, DynamoDB throttling, a lost write after rotation, a killed worker,
duplicate deliveries. Each test names the figure it proves."""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta

import pytest
from botocore.awsrequest import AWSResponse

from local.production import ProductionSchedule
from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import ConnectionModel
from qbo_health.domain.model import ConnectionState, IssueType
from qbo_health.messages import CheckRequest

CONFIRM = timedelta(minutes=15)


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


class DynamoThrottle:
    """Answers a share of DynamoDB UpdateItem calls with ProvisionedThroughputExceeded, as DynamoDB does,
    at the HTTP layer (botocore's `before-send`), so the SDK's own retries and errors are exercised."""

    def __init__(self, rate: float = 0.0, seed: int = 1) -> None:
        self.rate, self.random, self.forced, self.injected = rate, random.Random(seed), 0, 0
        self._lock = threading.Lock()
        self._events = ConnectionModel._get_connection().connection.client.meta.events

    def __enter__(self) -> DynamoThrottle:
        self._events.register("before-send.dynamodb.UpdateItem", self._answer)
        return self

    def __exit__(self, *_) -> None:
        self._events.unregister("before-send.dynamodb.UpdateItem", self._answer)

    def fail_next(self, calls: int) -> None:
        with self._lock:
            self.forced = calls

    def _answer(self, request, **_):
        with self._lock:
            throttle = self.forced > 0 or self.random.random() < self.rate
            self.forced = max(self.forced - 1, 0)
            self.injected += throttle
        if not throttle:
            return None
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }
        ).encode()
        return AWSResponse(request.url, 400, {"x-amzn-RequestId": "injected"}, _Body(body))


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


def test_a_429_storm_opens_no_issue_stops_retrying_and_the_next_run_checks_everyone(stack, lambdas):
    """Figures: 0 of 60 connections opened an issue under a 12-hour 100% throttle storm; once the guard
    suspected an outage, retries stopped: 90 requests for 60 connections reached Intuit in those 12 hours
    (780 without the guard: a check and 12 retries each); 60 of 60 checked by the next day's run."""
    ids = [f"conn-{n:02d}" for n in range(60)]
    for connection_id in ids:
        seed_connection(stack, connection_id, refreshed_days_ago=1)
    stack.intuit.control.set_faults(rate=1.0, kinds=["429"], seed=5)
    lambdas.run_scheduler(all_slots=True)
    for _ in range(12 * 4):  # twelve hours of the storm; every due retry is delivered
        lambdas.drain_checks()
        stack.clock.advance(CONFIRM)
    assert wiring.control_store().outage() is not None  # the guard saw it for what it was
    throttled = stack.intuit.control.stats()["faults"]["429"]
    stack.intuit.control.clear_faults()

    opened = [c for c in ids if stored(c).issue or stored(c).suspect]
    assert opened == [], f"{len(opened)} of 60 connections falsely suspected"
    assert 60 <= throttled <= 2 * 60, f"{throttled} requests for 60 connections during the storm"
    stack.clock.advance(timedelta(days=1) - 12 * timedelta(hours=1))
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    checked = [c for c in ids if stored(c).last_success_at == stack.clock.now()]
    assert len(checked) == 60, f"{len(checked)} of 60 checked by the next run"


def test_dynamodb_throttling_loses_no_check_and_no_token(stack, lambdas):
    """Figure: with 30% of DynamoDB writes throttled, 40 of 40 connections checked, 40 of 40 tokens live."""
    ids = [f"conn-{n:02d}" for n in range(40)]
    for connection_id in ids:
        seed_connection(stack, connection_id, refreshed_days_ago=2)
    with DynamoThrottle(rate=0.3) as throttle:
        lambdas.run_scheduler(all_slots=True)
        for _ in range(4):  # failed messages come back to the queue; the worker takes them again
            lambdas.drain_checks()
    assert throttle.injected > 20
    control = stack.intuit.control
    for connection_id in ids:
        connection = stored(connection_id)
        assert connection.tokens.refreshed_at == stack.clock.now(), connection_id
        assert control.is_refresh_token_current(open_tokens(connection).refresh_token), connection_id


def _write_after_rotation_fails_then_recovers(stack, lambdas, connection_id):
    """The day's check with the write after Intuit's rotation throttled, all its retries too: the stored token
    is the superseded one. The message comes back; the next check adopts the kept pair."""
    deps = wiring.check_deps()
    real_refresh = deps.intuit.refresh
    with DynamoThrottle() as throttle:

        def refresh_then_fail_the_write(refresh_token):
            granted = real_refresh(refresh_token)
            throttle.fail_next(10)  # the write that carries the new pair, and its retries
            return granted

        deps.intuit.refresh = refresh_then_fail_the_write
        try:
            lambdas.run_scheduler(all_slots=True)
            lambdas.drain_checks()
        finally:
            del deps.intuit.refresh
    control = stack.intuit.control
    assert not control.is_refresh_token_current(open_tokens(stored(connection_id)).refresh_token)

    stack.clock.advance(timedelta(minutes=5))
    lambdas.drain_checks()  # the failed message is delivered again

    connection = stored(connection_id)
    assert connection.state is ConnectionState.HEALTHY and connection.suspect is None
    assert control.is_refresh_token_current(open_tokens(connection).refresh_token)
    assert wiring.check_deps().recovery.take(connection_id) is None


def test_a_failed_write_right_after_a_rotation_is_recovered(stack, lambdas):
    """Figure: 1 of 1 rotated token whose write failed (every retry throttled) recovered; 0 issues."""
    seed_connection(stack, "conn-1", refreshed_days_ago=2)  # due to rotate; never probed, so it probes
    _write_after_rotation_fails_then_recovers(stack, lambdas, "conn-1")


def test_a_worker_killed_between_refresh_and_write_is_detected_and_others_are_unharmed(stack, lambdas):
    """Figure: the 1 connection whose worker died after Intuit rotated its token is flagged for
    reauthorization within one confirm cycle (never silently broken); 9 of 9 others stay healthy.

    Nothing can recover a rotated token from a process that died before writing anything: Intuit kills the
    old value at once. The design narrows the window (the pair is written before any other use) and makes
    the loss visible at once instead of at the next sync."""
    ids = [f"conn-{n}" for n in range(10)]
    for connection_id in ids:
        seed_connection(stack, connection_id, refreshed_days_ago=2)
    deps = wiring.check_deps()
    real_refresh = deps.intuit.refresh
    victim_token = open_tokens(stored("conn-0")).refresh_token

    def die_after_refreshing_the_victim(refresh_token):
        granted = real_refresh(refresh_token)
        if refresh_token == victim_token:
            raise SystemExit("worker killed")
        return granted

    deps.intuit.refresh = die_after_refreshing_the_victim
    try:
        with pytest.raises(SystemExit):
            from qbo_health.service.health_check import check_connection

            check_connection(CheckRequest(connection_id="conn-0"), deps, stack.clock.now())
    finally:
        del deps.intuit.refresh
    stack.clock.advance(timedelta(seconds=wiring.check_settings().lease_seconds + 1))  # the lease lapses
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM)
    lambdas.drain_checks()

    victim = stored("conn-0")
    assert victim.issue is not None and victim.issue.type is IssueType.AUTHORIZATION_EXPIRED
    for connection_id in ids[1:]:
        assert stored(connection_id).state is ConnectionState.HEALTHY, connection_id


def test_duplicate_deliveries_refresh_and_probe_once(stack, lambdas):
    """Figure: 50 connections each delivered 3 times: 50 refreshes and 50 metered calls, not 150."""
    ids = [f"conn-{n:02d}" for n in range(50)]
    for connection_id in ids:
        seed_connection(stack, connection_id, refreshed_days_ago=2)
    stack.intuit.control.reset_stats()
    wiring.check_queue().send([CheckRequest(connection_id=c) for c in ids for _ in range(3)])

    lambdas.drain_checks(concurrency=3)

    stats = stack.intuit.control.stats()
    assert stats["refresh_grants"] == 50
    assert sum(stats["metered"].values()) == 50


def test_timeouts_and_lost_answers_at_intuit_never_break_a_connection_silently(stack, lambdas, monkeypatch):
    """Figures (20 connections, 5 days, 20% of Intuit requests failing as client timeouts, 503s, or answers
    lost after Intuit served them): 0 connections flagged whose token still worked; every connection whose
    rotated refresh token was lost in flight (6 of 20, from 17 lost answers; Intuit kills the old value at
    once, so only a reauthorization can bring it back) was flagged AUTHORIZATION_EXPIRED; 0 broken silently."""
    monkeypatch.setenv("INTUIT_TIMEOUT_SECONDS", "0.1")  # the simulator's timeout hangs for 0.25 s
    wiring.reset()
    ids = [f"conn-{n:02d}" for n in range(20)]
    for connection_id in ids:
        seed_connection(stack, connection_id, refreshed_days_ago=1)
    control = stack.intuit.control
    control.set_faults(rate=0.2, kinds=["timeout", "503", "lost"], hang_seconds=0.25, seed=11)
    production = ProductionSchedule(lambdas)
    production.run_for(timedelta(days=5))
    faults = control.stats()["faults"]
    control.clear_faults()
    production.run_for(timedelta(hours=1))  # confirming re-checks still due come in

    lost, flagged_wrongly = [], []
    for connection_id in ids:
        connection = stored(connection_id)
        works = control.is_refresh_token_current(open_tokens(connection).refresh_token)
        if works:
            if connection.issue or connection.suspect:
                flagged_wrongly.append(connection_id)
        else:
            lost.append(connection_id)
            assert connection.issue and connection.issue.type is IssueType.AUTHORIZATION_EXPIRED, (
                connection_id
            )
    assert faults["timeout"] > 0 and faults["lost"] > 0, faults
    assert flagged_wrongly == []
    assert 0 < len(lost) < len(ids), f"{len(lost)} of {len(ids)} lost in flight"


def test_a_hanging_intuit_never_keeps_a_worker_past_its_timeout(stack, lambdas, monkeypatch):
    """Figures: with every token call hanging past the client's timeout and the worker's timeout cut to
    1.3 s (room for one round of five checks at once, of the batch's two), no invocation ran past 1.3 s (2.2 s
    without the budget: a Lambda stopped between Intuit's rotation and our write would lose the token); 30 of
    30 connections checked, 0 messages failed or dead-lettered: the checks that did not fit were put back on
    the queue."""
    monkeypatch.setenv("INTUIT_TIMEOUT_SECONDS", "0.2")  # the simulator hangs for 0.5 s
    monkeypatch.setenv("CHECK_CONCURRENCY", "5")  # a batch of 10 in two rounds: the second cannot fit
    wiring.reset()
    lambdas.timeouts["check_worker"] = 1.3
    # Five Intuit calls at 0.2 s and a store margin scaled down with them (60 s for the deployed 150 s).
    wiring.check_batch_context().check_time_needed = timedelta(seconds=1.2)
    wiring.check_deps().refresh_time_needed = timedelta(seconds=0.4)  # a refresh's call and its write
    ids = [f"conn-{n:02d}" for n in range(30)]
    for connection_id in ids:
        seed_connection(stack, connection_id, refreshed_days_ago=1)
    stack.intuit.control.set_faults(rate=1.0, kinds=["timeout"], endpoints=["token"], hang_seconds=0.5)

    lambdas.run_scheduler(all_slots=True)
    drained = lambdas.drain_checks()

    assert lambdas.longest_invocation["check_worker"] < 1.3, lambdas.longest_invocation
    assert stack.intuit.control.stats()["faults"]["timeout"] == 30  # each check really waited on Intuit
    assert lambdas.counts["CheckPutBack"] > 0, (lambdas.counts, lambdas.longest_invocation)
    attempted = [c for c in ids if stored(c).transient_failures == 1]
    assert len(attempted) == 30, f"{len(attempted)} of 30 checked"
    assert drained.failed == 0
    dead = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources["CheckDeadLetterQueue"].ref, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"


class WriteCounter:
    """Counts UpdateItem and PutItem calls on the connections table (botocore `before-parameter-build`)."""

    def __init__(self) -> None:
        self.calls = 0
        self._events = ConnectionModel._get_connection().connection.client.meta.events

    def __enter__(self) -> WriteCounter:
        self._events.register("before-parameter-build.dynamodb.UpdateItem", self._count)
        self._events.register("before-parameter-build.dynamodb.PutItem", self._count)
        return self

    def __exit__(self, *_) -> None:
        self._events.unregister("before-parameter-build.dynamodb.UpdateItem", self._count)
        self._events.unregister("before-parameter-build.dynamodb.PutItem", self._count)

    def _count(self, params, **_):
        if params.get("TableName") == ConnectionModel.Meta.table_name:
            self.calls += 1


def _report_success(api_client, stack, ids):
    api_client.report_activity([(cid, stack.clock.now() - timedelta(minutes=5), True) for cid in ids])


def test_a_check_without_a_probe_writes_its_refreshed_tokens_with_the_outcome(stack, lambdas, api_client):
    """Figure: 10 connections the product showed healthy take 2 writes a check (lease, then the new tokens
    with the outcome); the 10 probed take 3 (the tokens are written before the read). 20 of 20 tokens live."""
    quiet = [f"quiet-{n}" for n in range(10)]
    probed = [f"probed-{n}" for n in range(10)]
    for connection_id in quiet + probed:
        seed_connection(stack, connection_id)
    stack.clock.advance(timedelta(days=2))
    _report_success(api_client, stack, quiet)
    lambdas.run_scheduler(all_slots=True)
    metered_before = sum(stack.intuit.control.stats()["metered"].values())
    with WriteCounter() as writes:
        lambdas.drain_checks()

    assert sum(stack.intuit.control.stats()["metered"].values()) - metered_before == len(probed)
    assert writes.calls == 2 * len(quiet) + 3 * len(probed)
    control = stack.intuit.control
    for connection_id in quiet + probed:
        connection = stored(connection_id)
        assert connection.state is ConnectionState.HEALTHY, connection_id
        assert connection.tokens.refreshed_at == stack.clock.now(), connection_id
        assert control.is_refresh_token_current(open_tokens(connection).refresh_token), connection_id


def test_a_failed_final_write_of_a_check_without_a_probe_keeps_the_refreshed_tokens(
    stack, lambdas, api_client
):
    """Figure: 1 of 1 rotated token whose only write (with the outcome) failed, every retry throttled,
    recovered at the next delivery; 0 issues."""
    seed_connection(stack, "conn-1")
    stack.clock.advance(timedelta(days=2))
    _report_success(api_client, stack, ["conn-1"])  # recent evidence: no probe, one write after the refresh
    _write_after_rotation_fails_then_recovers(stack, lambdas, "conn-1")
