"""Escalation you can trust: races with the user's reauthorization, leases of a long run, bad data that must
not stop a run, notices that go out once, one source of every deadline, flapping connections.

Scenarios play production's schedules (`ProductionSchedule`) with default settings on the embedded stack.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from botocore.awsrequest import AWSResponse
from moto.ses.models import ses_backends

from local.production import ProductionSchedule
from local.seed import open_tokens, seed_connection
from local.stack import ACCOUNT_ID, REGION
from local.timeline import Timeline
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import ConnectionModel, HistoryModel
from qbo_health.api.models import ConnectionStatus, ImportRequest, RegisterRequest
from qbo_health.client import QboHealthApiError
from qbo_health.domain.escalation import Stage
from qbo_health.domain.model import ConnectionState, DisconnectReason, IssueType, OpenIssue
from qbo_health.errors import ConfigurationError, DisconnectAverted, TokenDecryptionFailed
from qbo_health.messages import CheckRequest
from qbo_health.service.disconnect import disconnect_connection
from qbo_health.service.health_check import check_connection
from tests.integration.test_escalation import product_events


def due_for_disconnect(stack, name, *, days_ago=14.1, contacts=("owner@example.com",)):
    """A connection whose admin left ``days_ago`` days ago, told at every stage due by a day ago (so past
    its deadline by default); checks are running."""
    seeded = seed_connection(stack, name, refreshed_days_ago=1, contacts=contacts)
    stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, False)
    store = wiring.connection_store()
    connection = store.get(name)
    opened = stack.clock.now() - timedelta(days=days_ago)
    told = ((Stage.NOTICE, 0), (Stage.REMINDER_1, 3), (Stage.REMINDER_2, 7), (Stage.FINAL_WARNING, 12))
    issue = OpenIssue(
        type=IssueType.ADMIN_ACCESS_LOST,
        episode_id=f"episode-{name}",
        first_seen_at=opened,
        opened_at=opened,
        deadline=opened + timedelta(days=14),
        notices=tuple(
            (stage.value, opened + timedelta(days=day)) for stage, day in told if day < days_ago - 1
        ),
    )
    store.save(
        replace(connection, issue=issue, state=ConnectionState.NEEDS_ATTENTION), changed_from=connection
    )
    wiring.control_store().beat(stack.clock.now())
    return seeded


def lease_free(connection_id, now):
    item = ConnectionModel.get(connection_id, consistent_read=True)
    return item.lease_owner is None or item.lease_expires_at < int(now.timestamp())


def reauthorize(stack, reconnect_url):
    """The user's browser: the reconnect link, consent at Intuit, the callback. Returns the callback page."""
    browser = requests.Session()
    start = browser.get(reconnect_url, allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text
    location = stack.intuit.control.consent(start.headers["Location"])
    return browser.get(location, allow_redirects=False, timeout=30)


# ------------------------------------------------------------------ item 1: disconnect vs reauthorization


def test_a_reauthorization_right_after_the_disconnect_recheck_is_never_undone(stack, lambdas, api_client):
    """Day 14: the escalator's live re-check still finds the admin gone; that very moment the user
    restores the admin and reauthorizes. The reauthorization either lands before the disconnect takes the
    connection (and is kept), or waits for the lease (and the disconnect is what the user sees): a
    reauthorization that said "connected" is never revoked afterwards."""
    seeded = due_for_disconnect(stack, "conn-1")
    reconnect_url = api_client.status("conn-1").reconnect_url
    deps = wiring.escalation_deps()
    original = deps.recheck
    pages = []

    def user_acts_after_the_recheck(connection_id, now, **kwargs):
        result = original(connection_id, now, **kwargs)
        if not pages:
            stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, True)
            if lease_free(connection_id, stack.clock.now()):
                pages.append(reauthorize(stack, reconnect_url))
            else:
                pages.append(None)  # the user's request waits for the lease: it comes after this run
        return result

    deps.recheck = user_acts_after_the_recheck
    try:
        ProductionSchedule(lambdas).run_for(timedelta(hours=1))
    finally:
        deps.recheck = original
    if pages == [None]:
        pages = [reauthorize(stack, reconnect_url)]

    [page] = pages
    connection = wiring.connection_store().get("conn-1")
    if page.status_code == 200:
        assert connection.state is ConnectionState.HEALTHY, "a reauthorization that succeeded was undone"
        assert connection.sealed_tokens is not None
        live = [grant for grant in stack.intuit.control.grants_of(seeded.realm_id) if not grant["revoked"]]
        assert live, "the new grant was revoked"
        token = open_tokens(connection).refresh_token
        assert wiring.intuit_client().refresh(token).pair.access_token
    else:
        assert connection.state is ConnectionState.DISCONNECTED


def test_the_disconnect_confirms_under_its_lease_that_the_episode_still_stands(stack, lambdas):
    seeded = due_for_disconnect(stack, "conn-1")
    deps, now = wiring.check_deps(), stack.clock.now()
    store = wiring.connection_store()

    with pytest.raises(DisconnectAverted) as averted:
        disconnect_connection(
            "conn-1", DisconnectReason.GRACE_PERIOD_EXPIRED, deps, now, episode_id="an-older-episode"
        )
    assert averted.value.reason == "another episode"
    held = store.get("conn-1")
    store.save(replace(held, on_hold=True), changed_from=held)
    with pytest.raises(DisconnectAverted, match="on hold"):
        disconnect_connection(
            "conn-1", DisconnectReason.GRACE_PERIOD_EXPIRED, deps, now, episode_id="episode-conn-1"
        )

    connection = store.get("conn-1")
    assert connection.state is ConnectionState.NEEDS_ATTENTION and connection.sealed_tokens is not None
    assert not any(grant["revoked"] for grant in stack.intuit.control.grants_of(seeded.realm_id))
    assert lease_free("conn-1", stack.clock.now())


# ------------------------------------------------------------------ item 2: leases of a long run


def test_a_long_escalator_run_holds_each_lease_from_when_it_took_it(stack, lambdas):
    """Twelve connections due for disconnect and an Intuit that takes 5 s a call (simulated): the run
    lasts minutes. While the escalator re-checks each one, a worker's check of the same connection must
    find it busy; a lease dated from the run's start would already have ended, and the two would refresh
    the same token at once."""
    names = [f"due-{n:02d}" for n in range(12)]
    for n, name in enumerate(names):
        due_for_disconnect(stack, name, days_ago=14.1 + n / 24)
    lambdas.use_simulated_invocation_time()
    stack.intuit.control.set_latency(5000, simulated=True)
    deps = wiring.escalation_deps()
    intuit = wiring.intuit_client()
    original_recheck, original_refresh = deps.recheck, intuit.refresh
    in_recheck: list[str] = []
    worker_saw: dict[str, str] = {}

    def recheck(connection_id, now, **kwargs):
        in_recheck.append(connection_id)
        try:
            return original_recheck(connection_id, now, **kwargs)
        finally:
            in_recheck.pop()

    def refresh(token):
        if in_recheck and in_recheck[-1] not in worker_saw:
            connection_id = in_recheck[-1]
            worker_saw[connection_id] = "running"
            request = CheckRequest(connection_id=connection_id, reason="scheduled")
            worker_saw[connection_id] = check_connection(
                request, wiring.check_deps(), stack.clock.now()
            ).status
        return original_refresh(token)

    deps.recheck, intuit.refresh = recheck, refresh
    start = stack.clock.now()
    try:
        ProductionSchedule(lambdas).run_for(timedelta(hours=1))
    finally:
        deps.recheck = original_recheck
        del intuit.refresh

    assert stack.clock.now() - start >= timedelta(minutes=2)
    assert sorted(worker_saw) == names
    assert set(worker_saw.values()) == {"busy"}, worker_saw
    for name in names:
        assert wiring.connection_store().get(name).state is ConnectionState.DISCONNECTED, name


def test_a_lease_shorter_than_the_longest_check_fails_the_cold_start(stack, monkeypatch):
    monkeypatch.setenv("LEASE_SECONDS", "10")  # allowed by itself, but a check may take 60 s
    wiring.reset()
    try:
        with pytest.raises(ConfigurationError, match="LEASE_SECONDS=10 is shorter than the longest check"):
            wiring.escalation_deps()
        with pytest.raises(ConfigurationError):
            wiring.check_batch_context()
        monkeypatch.setenv("LEASE_SECONDS", "60")
        wiring.reset()
        assert wiring.escalation_deps()
    finally:
        monkeypatch.undo()
        wiring.reset()


# ------------------------------------------------------------------ item 5: bad data never stops the run


def emails_to(address):
    return [message for message in sent_emails() if address in message.destinations["ToAddresses"]]


def sent_emails():
    return list(ses_backends[ACCOUNT_ID][REGION].sent_messages)


def stage_events(read_events, connection_id):
    return sorted(
        (event["detail-type"], event["detail"].get("days_left"))
        for event in read_events
        if event["detail"]["connection_id"] == connection_id
    )


def test_a_contact_ses_refuses_never_stops_the_run_and_its_connection_still_escalates(stack, lambdas):
    """A contact stored before addresses were checked (``owner-at-example.com``: SES answers
    InvalidParameterValue). Its issue opens first, so every run takes it first. On production's schedule for
    15 days: every connection gets each stage on its day and its disconnect on day 14, the bad one through
    its events (no e-mail can reach it), and no escalator run fails."""
    control = stack.intuit.control
    read_events = product_events(stack)
    bad = seed_connection(stack, "bad-contact", refreshed_days_ago=1, contacts=("owner-at-example.com",))
    good = {
        name: seed_connection(stack, name, refreshed_days_ago=1, contacts=(f"{name}@example.com",))
        for name in ("good-a", "good-b")
    }
    healthy = [seed_connection(stack, f"ok-{n}", refreshed_days_ago=1) for n in range(3)]
    schedule = ProductionSchedule(lambdas)
    control.set_admin(bad.realm_id, bad.user_id, False)
    schedule.run_for(
        timedelta(days=1)
    )  # the bad one is confirmed first: soonest deadline, first in every run
    for seeded in good.values():
        control.set_admin(seeded.realm_id, seeded.user_id, False)
    schedule.run_for(timedelta(days=16))

    assert [invocation.error for invocation in schedule.of("escalator") if invocation.error] == []
    assert lambdas.metrics["EscalationFailed"] == 0
    events = read_events()
    for name in ("bad-contact", *good):
        connection = wiring.connection_store().get(name)
        assert connection.state is ConnectionState.DISCONNECTED, name
        kinds = [kind for kind, _ in stage_events(events, name)]
        assert sorted(kinds) == sorted(
            [
                "ConnectionNeedsAttention",
                "ConnectionReminder",
                "ConnectionReminder",
                "ConnectionFinalWarning",
                "ConnectionDisconnected",
            ]
        ), name
    assert emails_to("owner-at-example.com") == []
    for name in good:
        assert len(emails_to(f"{name}@example.com")) == 5, name
    assert all(
        wiring.connection_store().get(seeded.connection_id).state is ConnectionState.HEALTHY
        for seeded in healthy
    )


def test_one_connection_that_fails_is_logged_counted_and_the_run_goes_on(stack, lambdas, monkeypatch, caplog):
    """A connection whose tokens cannot be opened (a decryption failure): its escalation fails, is logged with
    its connection_id and counted in EscalationFailed; the run still sends the others' notices."""
    for name in ("broken-0", "broken-1", "broken-2"):
        due_for_disconnect(stack, name, days_ago=12.5)  # final warning due, re-check first
    vault = wiring.token_vault()
    original = vault.open

    def unreadable(sealed, *, connection_id, realm_id):
        if connection_id == "broken-0":
            raise TokenDecryptionFailed("the data key is gone")
        return original(sealed, connection_id=connection_id, realm_id=realm_id)

    monkeypatch.setattr(vault, "open", unreadable)
    schedule = ProductionSchedule(lambdas)
    schedule.run_for(timedelta(hours=1))

    [run] = schedule.of("escalator")
    assert run.error is None and run.result["failed"] == ["broken-0"]
    assert lambdas.metrics["EscalationFailed"] == 1
    assert run.result["notices"] == {"FINAL_WARNING": 2}
    [logged] = [record for record in caplog.records if "one connection failed" in record.getMessage()]
    assert logged.connection_id == "broken-0" and logged.exc_info is not None


def test_contacts_are_validated_on_every_route_that_takes_them(stack, api_client):
    bad = "owner-at-example.com"
    for path, request in (
        ("/connections", RegisterRequest.model_construct(tenant_id="t-1", contacts=["ok@example.com", bad])),
        (
            "/connections/import",
            ImportRequest.model_construct(
                tenant_id="t-1", realm_id="123", refresh_token="r", contacts=["ok@example.com", bad]
            ),
        ),
    ):
        with pytest.raises(QboHealthApiError) as refused:
            api_client._call("POST", path, ConnectionStatus, request)
        assert refused.value.status == 400 and refused.value.error == "invalid_request"
        assert "contacts.1" in refused.value.message
        assert bad not in str(refused.value.body) and bad not in refused.value.message
    registered = api_client.register("t-1", contacts=["owner@example.com"])
    assert registered.state == "PENDING"


# ------------------------------------------------------------------ item 6: each channel once


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


class EventBridgeFailure:
    """PutEvents answering with a failed entry (HTTP 200, ``FailedEntryCount`` 1: how EventBridge reports an
    entry it could not take, per its API reference), injected at the HTTP layer for the next ``calls``."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self._events = wiring.aws_client("events").meta.events

    def __enter__(self) -> EventBridgeFailure:
        self._events.register("before-send.events.PutEvents", self._answer)
        return self

    def __exit__(self, *_) -> None:
        self._events.unregister("before-send.events.PutEvents", self._answer)

    def _answer(self, request, **_):
        if self.calls <= 0:
            return None
        self.calls -= 1
        body = {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}],
        }
        return AWSResponse(
            request.url, 200, {"x-amzn-RequestId": "injected"}, _Body(json.dumps(body).encode())
        )


def test_an_eventbridge_failure_after_the_email_never_sends_the_email_twice(stack, lambdas):
    due_for_disconnect(stack, "conn-1", days_ago=0.1)  # day 0: the first notice is due
    read_events = product_events(stack)
    schedule = ProductionSchedule(lambdas)
    with EventBridgeFailure(calls=1):
        schedule.run_for(timedelta(hours=1))
    [first] = schedule.of("escalator")
    assert first.result["failed"] == ["conn-1"]  # the event did not go: the stage waits for the next run
    assert len(emails_to("owner@example.com")) == 1

    schedule.run_for(timedelta(hours=3))

    assert len(emails_to("owner@example.com")) == 1
    assert [event["detail-type"] for event in read_events()] == ["ConnectionNeedsAttention"]
    assert [stage for stage, _ in wiring.connection_store().get("conn-1").issue.notices] == ["NOTICE"]


def test_a_send_that_could_not_be_recorded_is_not_sent_again(stack, lambdas, monkeypatch):
    due_for_disconnect(stack, "conn-1", days_ago=0.1)
    claims = wiring.notices().claims
    original = claims.mark

    def lost_write(notice, channel, now, status):
        raise RuntimeError("DynamoDB refused the write")

    monkeypatch.setattr(claims, "mark", lost_write)
    schedule = ProductionSchedule(lambdas)
    schedule.run_for(timedelta(hours=1))
    monkeypatch.setattr(claims, "mark", original)
    stack.clock.advance(timedelta(minutes=30))  # the claims are stale now
    schedule.run_for(timedelta(days=1))

    assert len(emails_to("owner@example.com")) == 1
    assert [stage for stage, _ in wiring.connection_store().get("conn-1").issue.notices] == ["NOTICE"]


# ------------------------------------------------------------------ item 9: one source of every deadline


def test_a_per_issue_grace_period_is_the_deadline_from_the_moment_the_issue_opens(
    stack, lambdas, api_client, monkeypatch
):
    """``SUBSCRIPTION_LAPSED`` gets 21 days. The worker that opens the issue stores the deadline the
    escalator decides (one function decides both): the status API shows 21 days from the start, the
    open-issues index orders by the real deadline, and no run moves it."""
    policy = {"overrides": {"SUBSCRIPTION_LAPSED": {"days": {"FINAL_WARNING": 19, "DISCONNECT": 21}}}}
    monkeypatch.setenv("ESCALATION_POLICY", json.dumps(policy))
    wiring.reset()
    try:
        lapsed = seed_connection(stack, "lapsed", refreshed_days_ago=1)
        admin = seed_connection(stack, "admin-gone", refreshed_days_ago=1)
        schedule = ProductionSchedule(lambdas)
        stack.intuit.control.suspend(lapsed.realm_id)
        schedule.run_for(timedelta(hours=2))  # lapsed opens first
        stack.intuit.control.set_admin(admin.realm_id, admin.user_id, False)
        issues = {}
        for _ in range(48):  # each hour: what the status API says, before and after the escalator's runs
            schedule.run_for(timedelta(hours=1))
            for name in ("lapsed", "admin-gone"):
                status = api_client.status(name)
                if status.deadline is not None:
                    issues.setdefault(name, set()).add(status.deadline)

        store = wiring.connection_store()
        opened = {name: store.get(name).issue.opened_at for name in ("lapsed", "admin-gone")}
        assert issues == {
            "lapsed": {opened["lapsed"] + timedelta(days=21)},
            "admin-gone": {opened["admin-gone"] + timedelta(days=14)},
        }
        for name in ("lapsed", "admin-gone"):
            kinds = [entry["kind"] for entry in wiring.history_log().entries(name)]
            assert "NOTICE_SENT" in kinds and "DEADLINE_MOVED" not in kinds, name
        # The index orders by the real deadline: the admin issue opened later but is due a week sooner.
        assert [connection.connection_id for connection in store.open_issues()] == ["admin-gone", "lapsed"]
    finally:
        monkeypatch.undo()
        wiring.reset()


# ------------------------------------------------------------------ item 7: flapping damping


def test_a_flapping_connection_gets_one_episode_one_notice_and_its_disconnect(stack, lambdas):
    """Broken on odd days, fine on even days, for 20 days, on production's schedule with default settings:
    each return within 7 days continues the episode and its clock. One "action needed" e-mail (not 10), no
    "restored" (it never stayed healthy for 24 hours), and the disconnect once the 14 days ran out, at a
    moment it was broken (without damping every return restarted the clock: never disconnected)."""
    seeded = seed_connection(stack, "flappy", refreshed_days_ago=1, contacts=("flappy@example.com",))
    steady = seed_connection(stack, "steady", refreshed_days_ago=1)
    control = stack.intuit.control
    days = {
        day: (lambda broken=day % 2 == 1: control.set_admin(seeded.realm_id, seeded.user_id, not broken))
        for day in range(1, 20)
    }
    timeline = Timeline(lambdas, ["flappy", "steady"])
    timeline.run(20, days)

    subjects = [message.subject for message in emails_to("flappy@example.com")]
    sent = notices_by_kind("flappy")
    assert sent["NOTICE"] == 1 and sent.get("RESTORED", 0) == 0, (sent, subjects)
    connection = wiring.connection_store().get("flappy")
    assert connection.state is ConnectionState.DISCONNECTED
    assert connection.disconnect_reason is DisconnectReason.GRACE_PERIOD_EXPIRED
    [day] = [record.day for record in timeline.days if record.disconnected]
    print(f"disconnected on day {day}; notices {sent}")
    assert day == 15  # day 1's episode ran out on day 15, a broken day: its live re-check agreed
    episodes = {entry["detail"].get("episode_id") for entry in wiring.history_log().entries("flappy")}
    assert len({episode for episode in episodes if episode}) == 1
    assert wiring.connection_store().get("steady").state is ConnectionState.HEALTHY
    assert steady.realm_id


def test_restored_goes_out_only_after_a_full_healthy_day_and_the_episode_closes_after_the_window(
    stack, lambdas
):
    seeded = seed_connection(stack, "fixed", refreshed_days_ago=1, contacts=("fixed@example.com",))
    control = stack.intuit.control
    timeline = Timeline(lambdas, ["fixed"])
    timeline.run(
        12,
        {
            0: lambda: control.set_admin(seeded.realm_id, seeded.user_id, False),
            2: lambda: control.set_admin(seeded.realm_id, seeded.user_id, True),
        },
    )

    claims = notice_claims("fixed")
    healed_at = next(
        entry["at"] for entry in wiring.history_log().entries("fixed") if entry["kind"] == "ISSUE_HEALED"
    )
    assert sorted(kind for kind, _ in claims) == ["NOTICE", "RESTORED"]
    restored_at = dict(claims)["RESTORED"]
    assert timedelta(hours=24) <= restored_at - healed_at <= timedelta(hours=25)
    assert [record.notices.get("RESTORED", 0) for record in timeline.days].count(1) == 1
    kinds = [entry["kind"] for entry in wiring.history_log().entries("fixed")]
    assert kinds.count("ISSUE_CLOSED") == 1
    [closed] = [
        entry["at"] for entry in wiring.history_log().entries("fixed") if entry["kind"] == "ISSUE_CLOSED"
    ]
    assert timedelta(days=7) <= closed - healed_at <= timedelta(days=7, hours=1)
    assert list(wiring.connection_store().open_issues()) == []
    status = wiring.connection_store().get("fixed")
    assert status.state is ConnectionState.HEALTHY and status.issue is None and status.recovering is None


def notice_claims(connection_id):
    """(kind, when) of every notice whose event went out for a connection."""
    return sorted(
        (json.loads(item.detail)["kind"], item.at)
        for item in HistoryModel.query(connection_id)
        if item.kind == "NOTICE_CLAIM" and item.status == "SENT" and item.entry.endswith("#EVENT")
    )


def notices_by_kind(connection_id):
    counts: dict[str, int] = {}
    for kind, _ in notice_claims(connection_id):
        counts[kind] = counts.get(kind, 0) + 1
    return counts
