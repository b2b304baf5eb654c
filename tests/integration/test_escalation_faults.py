"""The escalator under per-connection faults, on production's schedules with default settings.

Figure (README, "Fault injection"): 13 connections for 17 simulated days, 408 hourly escalator runs, with
faults drawn from a seeded random source, so every run of this test plays the same faults:
- SES refusing an e-mail, as a throttle (429 ``TooManyRequestsException``, which the SDK retries) or for
  good (400 ``BadRequestException``), and a contact address SES never accepts;
- lease contention (a worker holding a connection's lease when the escalator comes to it);
- a decryption failure (the connection's tokens cannot be opened during that run);
- EventBridge refusing an event (``FailedEntryCount`` 1 in a 200 answer).
Found: 0 connections left without a stage, 0 duplicate e-mails, 0 disconnects of a connection that was
healthy at its deadline, 0 failed escalator invocations.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta

from botocore.awsrequest import AWSResponse
from moto.ses.models import ses_backends

from local.production import ProductionSchedule
from local.seed import seed_connection
from local.stack import ACCOUNT_ID, REGION
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import HistoryModel
from qbo_health.domain.model import ConnectionState, DisconnectReason
from qbo_health.errors import TokenDecryptionFailed

STAGES = ["NOTICE", "REMINDER_1", "REMINDER_2", "FINAL_WARNING", "DISCONNECTED"]
STAGE_DAYS = {"NOTICE": 0, "REMINDER_1": 3, "REMINDER_2": 7, "FINAL_WARNING": 12, "DISCONNECTED": 14}


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


def _answer(request, status: int, error_type: str | None, body: dict) -> AWSResponse:
    headers = {"x-amzn-RequestId": "injected", "Content-Type": "application/json"}
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))


class EscalatorFaults:
    """Per-connection faults, drawn afresh for each escalator invocation from one seeded source."""

    def __init__(self, stack, names, seed: int) -> None:
        self.stack, self.names, self.random = stack, names, random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.lease_held: list[str] = []
        self.unreadable: set[str] = set()
        self.active = False
        self._ses = wiring.aws_client("sesv2").meta.events
        self._events = wiring.aws_client("events").meta.events
        self._vault = wiring.token_vault()
        self._open = self._vault.open

    def install(self, lambdas) -> None:
        self._ses.register("before-send.sesv2.SendEmail", self._ses_answer)
        self._events.register("before-send.events.PutEvents", self._events_answer)
        self._vault.open = self._open_or_fail
        invoke = lambdas.invoke

        def invoke_with_faults(function, event):
            if function != "escalator":
                return invoke(function, event)
            self._draw()
            try:
                return invoke(function, event)
            finally:
                self._clear()

        lambdas.invoke = invoke_with_faults

    def uninstall(self) -> None:
        self._ses.unregister("before-send.sesv2.SendEmail", self._ses_answer)
        self._events.unregister("before-send.events.PutEvents", self._events_answer)
        self._vault.open = self._open

    def _draw(self) -> None:
        store, now = wiring.connection_store(), self.stack.clock.now()
        self.active = True
        for name in self.names:
            roll = self.random.random()
            if roll < 0.04:  # a worker holds the lease (its check runs far longer than the escalator waits)
                store.acquire_lease(name, "check:someone-else", now, 120)
                self.lease_held.append(name)
                self.injected["lease contention"] += 1
            elif roll < 0.06:
                self.unreadable.add(name)
                self.injected["decryption failure"] += 1

    def _clear(self) -> None:
        store = wiring.connection_store()
        for name in self.lease_held:
            store.release_lease(name, "check:someone-else")
        self.lease_held, self.unreadable, self.active = [], set(), False

    def _open_or_fail(self, sealed, *, connection_id, realm_id):
        if self.active and connection_id in self.unreadable:
            raise TokenDecryptionFailed("injected: the data key could not be decrypted")
        return self._open(sealed, connection_id=connection_id, realm_id=realm_id)

    def _ses_answer(self, request, **_):
        if not self.active:
            return None
        roll = self.random.random()
        if roll < 0.20:
            self.injected["SES throttled"] += 1
            return _answer(request, 429, "TooManyRequestsException", {"message": "Too many requests"})
        if roll < 0.30:
            self.injected["SES refused"] += 1
            return _answer(request, 400, "BadRequestException", {"message": "Illegal address"})
        return None

    def _events_answer(self, request, **_):
        if not self.active or self.random.random() >= 0.25:
            return None
        self.injected["EventBridge failure"] += 1
        failed = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}]}
        return _answer(request, 200, None, failed)


def events_sent(name):
    """(kind, when) of each notice whose event went out, from the per-channel records."""
    return [
        (json.loads(item.detail)["kind"], item.at)
        for item in HistoryModel.query(name)
        if item.kind == "NOTICE_CLAIM" and item.status == "SENT" and item.entry.endswith("#EVENT")
    ]


def test_escalator_runs_with_random_per_connection_faults(stack, lambdas):
    control = stack.intuit.control
    never_fixed = [f"broken-{n:02d}" for n in range(5)]
    fixed_early = [f"fixed-day5-{n}" for n in range(2)]
    fixed_at_deadline = [f"fixed-day13-{n}" for n in range(2)]  # healthy again a day before their deadline
    bad_contact = ["bad-contact-0"]
    healthy = [f"ok-{n}" for n in range(3)]
    broken = never_fixed + fixed_early + fixed_at_deadline + bad_contact
    stack.clock.set(stack.clock.now().replace(hour=0, minute=0))
    seeded = {}
    for name in broken + healthy:
        contacts = ("owner-at-example.com",) if name in bad_contact else (f"{name}@example.com",)
        seeded[name] = seed_connection(stack, name, refreshed_days_ago=1, contacts=contacts)
    faults = EscalatorFaults(stack, broken + healthy, seed=12)
    faults.install(lambdas)
    schedule = ProductionSchedule(lambdas)
    try:
        for name in broken:
            control.set_admin(seeded[name].realm_id, seeded[name].user_id, False)
        schedule.run_for(timedelta(days=5))
        for name in fixed_early:
            control.set_admin(seeded[name].realm_id, seeded[name].user_id, True)
        schedule.run_for(timedelta(days=8))
        for name in fixed_at_deadline:
            control.set_admin(seeded[name].realm_id, seeded[name].user_id, True)
        schedule.run_for(timedelta(days=4))
    finally:
        faults.uninstall()

    runs = schedule.of("escalator")
    store = wiring.connection_store()
    opened = {
        name: next(e["at"] for e in wiring.history_log().entries(name) if e["kind"] == "ISSUE_OPENED")
        for name in broken
    }
    missing, late = [], timedelta(0)
    for name in never_fixed + bad_contact:
        sent = dict(events_sent(name))
        for stage in STAGES:
            if stage not in sent:
                missing.append((name, stage))
                continue
            late = max(late, sent[stage] - opened[name] - timedelta(days=STAGE_DAYS[stage]))
        connection = store.get(name)
        assert connection.state is ConnectionState.DISCONNECTED, name
        assert connection.disconnect_reason is DisconnectReason.GRACE_PERIOD_EXPIRED
    emails = Counter(
        (address, message.subject, message.body)  # reminders share a subject; the body names the days left
        for message in ses_backends[ACCOUNT_ID][REGION].sent_messages
        for address in message.destinations["ToAddresses"]
    )
    duplicates = {key: count for key, count in emails.items() if count > 1}
    wrongly_disconnected = [
        name
        for name in fixed_early + fixed_at_deadline + healthy
        if store.get(name).state is not ConnectionState.HEALTHY
    ]
    print(
        f"{len(runs)} escalator runs, {len(broken + healthy)} connections, faults injected: {dict(faults.injected)}; "
        f"stages missing: {len(missing)}, latest stage {late} after its day; duplicate e-mails: {len(duplicates)}; "
        f"disconnects of connections healthy at their deadline: {len(wrongly_disconnected)}; "
        f"failed invocations: {len(schedule.errors)}; e-mails sent: {sum(emails.values())}"
    )
    assert len(runs) == 17 * 24
    assert min(faults.injected.values()) >= 3 and len(faults.injected) == 5, faults.injected
    assert missing == []
    assert late <= timedelta(hours=6), late
    assert duplicates == {}
    assert wrongly_disconnected == []
    assert schedule.errors == []
    assert not any(address == "owner-at-example.com" for address, _, _ in emails)
    assert lambdas.metrics["EscalationFailed"] > 0  # the failed ones were counted (and alarmed)
