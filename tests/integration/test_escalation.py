"""Escalation over the embedded stack: staged notices, pauses, safe disconnects, exactly-once sends."""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from markupsafe import escape
from moto.ses.models import ses_backends

from local.runner import schedule_event
from local.seed import open_tokens, seed_connection
from local.stack import ACCOUNT_ID, REGION
from local.timeline import Timeline
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import ConnectionModel, HistoryModel
from qbo_health.domain.escalation import Stage
from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import ConnectionState, DisconnectReason, IssueType, OpenIssue

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


def product_events(stack):
    """What the host product receives: a rule on the bus delivers every event to a queue."""
    events, sqs = stack.client("events"), stack.client("sqs")
    bus = stack.resources["EventBus"].ref
    url = sqs.create_queue(QueueName="product-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["qbo-connection-health"]})
    )
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    def read():
        received = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return read


def sent_emails():
    return list(ses_backends[ACCOUNT_ID][REGION].sent_messages)


def notices_by_day(timeline, connection_id):
    """(day, kind) of every notice sent for a connection, from its history claims."""
    sent = []
    for item in HistoryModel.query(connection_id):
        if item.kind == "NOTICE_CLAIM" and item.status == "SENT" and item.entry.endswith("#EVENT"):
            sent.append((timeline.day_of(item.at), json.loads(item.detail)["kind"]))
    return sorted(sent)


HEALTHY = [f"ok-{n:02d}" for n in range(3)]


@pytest.fixture
def fleet(stack, lambdas):
    """Three healthy connections and six that break on day 0, with default settings: far too few checks an
    hour for the fleet-wide outage guard, so each connection's own pause is what protects it."""
    stack.clock.set(stack.clock.now().replace(hour=0, minute=0))
    seeded = {name: seed_connection(stack, name, refreshed_days_ago=1) for name in HEALTHY}
    for name in ("fixed-day5", "readmin-day10", "broken-a", "broken-b", "broken-c", "broken-d"):
        seeded[name] = seed_connection(stack, name, refreshed_days_ago=1, contacts=(f"{name}@example.com",))
    return seeded


def break_fleet(stack, fleet):
    control = stack.intuit.control
    control.suspend(fleet["fixed-day5"].realm_id)
    control.set_admin(fleet["readmin-day10"].realm_id, fleet["readmin-day10"].user_id, False)
    control.set_admin(fleet["broken-a"].realm_id, fleet["broken-a"].user_id, False)
    control.suspend(fleet["broken-b"].realm_id)
    control.disconnect_app(fleet["broken-c"].realm_id)
    control.set_admin(fleet["broken-d"].realm_id, fleet["broken-d"].user_id, False)


def test_twenty_days_with_a_two_day_outage(stack, lambdas, fleet):
    control = stack.intuit.control
    read_events = product_events(stack)
    timeline = Timeline(lambdas, fleet)
    timeline.run(
        20,
        {
            0: lambda: break_fleet(stack, fleet),
            5: lambda: control.reactivate(fleet["fixed-day5"].realm_id),
            8: lambda: control.set_faults(rate=1.0, kinds=["503"], seed=1),
            10: lambda: (
                control.clear_faults(),
                control.set_admin(fleet["readmin-day10"].realm_id, fleet["readmin-day10"].user_id, True),
            ),
        },
    )

    # "Restored" once the connection stayed healthy for a day (flapping damping).
    assert notices_by_day(timeline, "fixed-day5") == [(0, "NOTICE"), (3, "REMINDER_1"), (6, "RESTORED")]
    assert notices_by_day(timeline, "readmin-day10") == [
        (0, "NOTICE"),
        (3, "REMINDER_1"),
        (7, "REMINDER_2"),
        (11, "RESTORED"),
    ]
    never_fixed = ["broken-a", "broken-b", "broken-c", "broken-d"]
    for name in never_fixed:
        # The outage on days 8-9 paused escalation for two days: final warning on 14, disconnect on 16.
        assert notices_by_day(timeline, name) == [
            (0, "NOTICE"),
            (3, "REMINDER_1"),
            (7, "REMINDER_2"),
            (14, "FINAL_WARNING"),
            (16, "DISCONNECTED"),
        ], name
        connection = wiring.connection_store().get(name)
        assert connection.state is ConnectionState.DISCONNECTED
        assert connection.disconnect_reason is DisconnectReason.GRACE_PERIOD_EXPIRED
        assert connection.sealed_tokens is None
        assert control.grants_of(fleet[name].realm_id)[0]["revoked"] is True
    assert [record.day for record in timeline.days if record.disconnected] == [16]
    assert sorted(name for record in timeline.days for name in record.disconnected) == never_fixed
    for name in ("fixed-day5", "readmin-day10", *HEALTHY):
        assert wiring.connection_store().get(name).state is ConnectionState.HEALTHY, name
    # Each broken connection's escalation stood still while Intuit did not answer it (days 8 and 9).
    paused = {record.day for record in timeline.days if record.blocked["PAUSED"]}
    assert paused <= {8, 9, 10} and {8, 9} <= paused, paused

    received = read_events()
    schemas = {path.stem: json.loads(path.read_text()) for path in SCHEMAS.glob("*.json")}
    for event in received:
        jsonschema.validate(event["detail"], schemas[event["detail-type"]])
    ids = [event["detail"]["event_id"] for event in received]
    assert len(ids) == len(set(ids))
    kinds = defaultdict(int)
    for event in received:
        kinds[event["detail-type"]] += 1
    assert kinds == {
        "ConnectionNeedsAttention": 6,
        "ConnectionReminder": 2 + 1 + 4 * 2,
        "ConnectionFinalWarning": 4,
        "ConnectionDisconnected": 4,
        "ConnectionRestored": 2,
    }


def open_issue_on(stack, lambdas, name="broken"):
    seeded = seed_connection(stack, name, refreshed_days_ago=1, contacts=("owner@example.com",))
    stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, False)
    stack.clock.advance(timedelta(hours=1))
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(timedelta(minutes=15))
    lambdas.drain_checks()
    assert wiring.connection_store().get(name).issue is not None
    return seeded


def escalate(lambdas):
    return lambdas.invoke("escalator", schedule_event(lambdas.stack.clock.now(), {}))


def test_overlapping_runs_send_each_notice_once(stack, lambdas):
    open_issue_on(stack, lambdas)
    results = []
    threads = [threading.Thread(target=lambda: results.append(escalate(lambdas))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(result["notices"].get("NOTICE", 0) for result in results) == 1
    assert len(sent_emails_for("owner@example.com")) == 1


def sent_emails_for(address):
    return [message for message in sent_emails() if address in message.destinations["ToAddresses"]]


def test_a_crash_after_the_claim_is_retried_and_sent_once(stack, lambdas, monkeypatch):
    open_issue_on(stack, lambdas)
    notices = wiring.notices()
    original = notices.email.send

    def crash(*args, **kwargs):
        raise SystemExit("worker killed after the claim")

    monkeypatch.setattr(notices.email, "send", crash)
    with pytest.raises(SystemExit):
        escalate(lambdas)
    monkeypatch.setattr(notices.email, "send", original)
    assert sent_emails_for("owner@example.com") == []

    escalate(lambdas)  # the claim is fresh: an overlapping run must not send
    assert sent_emails_for("owner@example.com") == []
    stack.clock.advance(timedelta(minutes=20))  # the claim went stale: the next run retries
    escalate(lambdas)
    escalate(lambdas)
    assert len(sent_emails_for("owner@example.com")) == 1


def test_intuit_outage_for_72_hours_sends_nothing_and_shifts_deadlines(stack, lambdas, fleet):
    """Figures: 0 notices and 0 disconnects in a 72-hour outage; each deadline moves by the time its connection
    was paused (from the first check Intuit left unanswered to the first answered one); 870 requests
    reach Intuit in those 3 days for 14 connections: the daily checks with their retries, plus one re-check
    an hour (a token refresh and a read) for each of the 6 paused open issues."""
    timeline = Timeline(lambdas, fleet)
    control = stack.intuit.control
    timeline.run(1, {0: lambda: break_fleet(stack, fleet)})
    deadline_before = wiring.connection_store().get("broken-a").issue.deadline
    control.set_faults(rate=1.0, kinds=["500", "503", "reset"], seed=3)
    outage_start = stack.clock.now()
    outage = timeline.run(3)
    outage_end = stack.clock.now()
    requests_during_outage = sum(control.stats()["faults"].values())
    control.clear_faults()
    after = timeline.run(1)[-1]

    assert all(not record.notices and not record.disconnected for record in outage[1:])
    print(f"requests to Intuit during the 72-hour outage: {requests_during_outage}")
    open_issues, hours = 6, 72
    daily_checks = 2 * len(fleet) * 3
    assert requests_during_outage <= daily_checks + 2 * open_issues * hours, requests_during_outage
    assert after.blocked["PAUSED"] <= 6  # the first answered re-check ends each connection's pause
    issue = wiring.connection_store().get("broken-a").issue
    (pause,) = issue.pauses
    # Paused from its first unanswered check (its daily slot, or a stage's re-check) until the first
    # answered re-check, an hour after the outage at most; the deadline moves by exactly that.
    assert outage_start <= pause.start <= outage_start + timedelta(days=1)
    assert outage_end <= pause.end <= outage_end + timedelta(hours=1)
    assert issue.deadline - deadline_before == pause.end - pause.start


def test_checker_down_for_three_days_blocks_disconnects_until_a_check_run_succeeds(stack, lambdas):
    seeded = open_issue_on(stack, lambdas)
    for _ in range(13):  # days 0..12 with the escalator, no more checks after the issue opened
        escalate(lambdas)
        stack.clock.advance(timedelta(days=1))
    stack.clock.advance(timedelta(days=3))  # day 16: past the deadline, last check 16 days ago
    result = escalate(lambdas)
    assert result["disconnected"] == [] and result["blocked"].get("CHECKS_STALE") == 1
    assert wiring.connection_store().get("broken").state is ConnectionState.NEEDS_ATTENTION

    healthy = seed_connection(stack, "healthy")  # a check run completes again
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    assert healthy and escalate(lambdas)["disconnected"] == ["broken"]
    assert stack.intuit.control.grants_of(seeded.realm_id)[0]["revoked"] is True


def test_the_escalator_reads_only_open_issues(stack, lambdas):
    """1,000 connections of which 20 have open issues: the escalator reads those 20 items and no other
    (`make bench-escalator` shows the same at 50,000)."""
    for n in range(20):
        open_issue_on(stack, lambdas, name=f"broken-{n:02d}")
    with ConnectionModel.batch_write() as batch:
        for n in range(1000 - 20):
            batch.save(
                ConnectionModel(
                    f"c-{n:05d}", tenant_id="t", realm_id=f"r{n}", state="HEALTHY", check_slot=n % 24
                )
            )
    read = {"items": 0, "scans": 0}
    events = ConnectionModel._get_connection().connection.client.meta.events

    def count(parsed, model, **_):
        if model.name in ("Query", "Scan"):
            read["items"] += parsed.get("ScannedCount", 0)
        read["scans"] += model.name == "Scan"

    events.register("after-call.dynamodb.*", count)
    try:
        escalate(lambdas)
    finally:
        events.unregister("after-call.dynamodb.*", count)
    assert read == {"items": 20, "scans": 0}


def test_notices_carry_no_token_or_secret(stack, lambdas):
    open_issue_on(stack, lambdas)
    escalate(lambdas)

    [email] = sent_emails_for("owner@example.com")
    state = stack.intuit.state  # every token and code the simulator ever issued
    secrets = {*state.refresh_index, *state.access_index, *state.codes, "sim-client-secret"}
    secrets.add(os.environ["LINK_SIGNING_KEY"])
    assert open_tokens(wiring.connection_store().get("broken")).refresh_token in secrets
    for secret in secrets:
        assert secret not in email.body and secret not in email.subject
    assert "/reconnect/" in email.body


def test_a_revoke_that_fails_briefly_is_retried_and_never_blocks_the_disconnect(stack, lambdas):
    seeded = seed_connection(stack, "conn-1", refreshed_days_ago=1)
    stack.intuit.control.set_faults(rate=1.0, kinds=["503"], endpoints=["revoke"], seed=2)
    from qbo_health.service.disconnect import disconnect_connection

    disconnected = disconnect_connection(
        "conn-1", DisconnectReason.CUSTOMER_REQUEST, wiring.check_deps(), stack.clock.now()
    )

    assert disconnected.state is ConnectionState.DISCONNECTED and disconnected.sealed_tokens is None
    assert stack.intuit.control.stats()["calls"]["revoke"] == 3  # the first try and two retries
    kinds = [entry["kind"] for entry in wiring.history_log().entries("conn-1")]
    assert "REVOKE_FAILED" in kinds and "DISCONNECTED" in kinds
    assert seeded.realm_id


def test_an_issue_fixed_before_anyone_was_told_sends_no_restored_notice(stack, lambdas):
    seeded = open_issue_on(stack, lambdas)  # confirmed, but the hourly escalator has not run yet
    stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, True)  # fixed at once

    stack.clock.advance(timedelta(days=1))
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    escalate(lambdas)

    assert wiring.connection_store().get("broken").issue is None
    assert sent_emails_for("owner@example.com") == []  # neither "broken" nor "restored"
    assert "ISSUE_CLOSED" in [entry["kind"] for entry in wiring.history_log().entries("broken")]


def due_for_disconnect(stack, name, opened):
    """A connection whose admin left, told at every stage, and past its deadline."""
    seeded = seed_connection(stack, name, refreshed_days_ago=1)
    stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, False)
    store = wiring.connection_store()
    connection = store.get(name)
    told = ((Stage.NOTICE, 0), (Stage.REMINDER_1, 3), (Stage.REMINDER_2, 7), (Stage.FINAL_WARNING, 12))
    issue = OpenIssue(
        type=IssueType.ADMIN_ACCESS_LOST,
        episode_id=f"episode-{name}",
        first_seen_at=opened,
        opened_at=opened,
        deadline=opened + timedelta(days=14),
        notices=tuple((stage.value, opened + timedelta(days=day)) for stage, day in told),
    )
    store.save(
        replace(connection, issue=issue, state=ConnectionState.NEEDS_ATTENTION), changed_from=connection
    )


def test_a_slow_intuit_never_keeps_the_escalator_past_its_timeout(stack, lambdas):
    """Figures: 6 connections due for disconnect, every Intuit call taking 150 ms of simulated time and the
    escalator's timeout cut to 2 s: no run went past 2 s on the invocation's (simulated) clock; each run took
    the soonest deadlines first and left the rest for the next run; 6 of 6 disconnected in 2 runs."""
    now = stack.clock.now()
    names = [f"due-{n}" for n in range(6)]
    for n, name in enumerate(names):
        due_for_disconnect(stack, name, opened=now - timedelta(days=15, hours=n))
    wiring.control_store().beat(now)  # checks are running
    lambdas.timeouts["escalator"] = 2.0
    # A re-check and a revoke at 150 ms a call, with margin (121 s for the deployed 10 s Intuit timeout).
    wiring.escalation_deps().time_per_connection = timedelta(seconds=0.8)
    wiring.check_deps().refresh_time_needed = timedelta(seconds=0.3)  # a refresh's call and its write
    lambdas.use_simulated_invocation_time()
    stack.intuit.control.set_latency(150, simulated=True)

    runs = [escalate(lambdas) for _ in range(3)]

    assert lambdas.longest_invocation["escalator"] < 2.0, lambdas.longest_invocation
    assert runs[0]["left_for_next_run"] and runs[0]["disconnected"]
    in_order = [name for run in runs for name in run["disconnected"]]
    assert in_order == names[::-1]  # soonest deadline first


def test_lost_admin_access_is_also_told_to_the_user_who_set_up_the_integration(stack, lambdas):
    seeded = {
        name: seed_connection(
            stack, name, refreshed_days_ago=1, contacts=("books@firm.example",), company_name="Firm & Co"
        )
        for name in ("admin-gone", "unpaid")
    }
    control = stack.intuit.control

    def break_both() -> None:
        control.set_admin(seeded["admin-gone"].realm_id, seeded["admin-gone"].user_id, False)
        control.suspend(seeded["unpaid"].realm_id)

    Timeline(lambdas, seeded).run(1, {0: break_both})

    authorizer = seeded["admin-gone"].email
    bodies: dict[str, list[str]] = defaultdict(list)
    for message in sent_emails():
        for address in message.destinations["ToAddresses"]:
            bodies[address].append(str(message.body))
    # The contacts get both first notices; the admin who set up "admin-gone" gets its notice, addressed to
    # them; nobody writes to the user who set up "unpaid" (billing, not signing in, fixes a lapse).
    assert sorted(bodies) == sorted(["books@firm.example", authorizer])
    assert len(bodies["books@firm.example"]) == 2 and len(bodies[authorizer]) == 1
    (personal,) = bodies[authorizer]
    assert "the steps below are for you" in personal and "Firm &amp; Co" in personal
    assert str(escape(guidance_for(IssueType.ADMIN_ACCESS_LOST).remedy)) in personal
    assert sum(f"We also wrote to {authorizer}" in body for body in bodies["books@firm.example"]) == 1
