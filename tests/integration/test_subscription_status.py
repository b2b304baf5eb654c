"""Each SubscriptionStatus through the real stack, in both simulator styles.

By default the simulator serves a read-only company's reads (CompanyInfo included) with 200 and its
``SubscriptionStatus``, as Intuit documents, and refuses its writes with 6190. The opt-in ``refuse`` style
answers the read with 6190, as has been reported too. Either way the right issue opens; a 6190 the product
reports on a write opens ``SUBSCRIPTION_LAPSED``; a healed company closes the issue as restored.
"""

from __future__ import annotations

import json
from datetime import timedelta

import jsonschema
import pytest
import requests

from local.runner import schedule_event
from local.scenario import emails_sent
from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.adapters.intuit import IntuitClient
from qbo_health.domain.check import EventKind
from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import ConnectionState, IssueType, SubscriptionStatus

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

CONFIRM_DELAY = timedelta(seconds=900)
LAPSED = IssueType.SUBSCRIPTION_LAPSED
ENDED = IssueType.SUBSCRIPTION_ENDED
HEALTHY_STATUSES = ["TRIAL", "TRIALOPTIN", "SUBSCRIBED", "PAID"]
READ_ONLY = {"RESTRICTED": LAPSED, "SUSPENDED": LAPSED, "CANCELED": ENDED, "EXPIRED": ENDED}


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


def check_and_confirm(stack, lambdas):
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()


def escalate(lambdas):
    return lambdas.invoke("escalator", schedule_event(lambdas.stack.clock.now(), {}))


def history_kinds(connection_id):
    return [entry["kind"] for entry in wiring.history_log().entries(connection_id)]


@pytest.fixture
def seeded(stack):
    connection = seed_connection(stack, "conn-1")
    seed_connection(stack, "conn-2")  # a healthy neighbour, checked in the same runs
    stack.clock.advance(timedelta(days=1))
    return connection


@pytest.mark.parametrize("style", ["serve", "refuse"])
@pytest.mark.parametrize("status", HEALTHY_STATUSES)
def test_a_healthy_status_stays_healthy_in_either_style(stack, lambdas, seeded, style, status):
    control = stack.intuit.control
    control.set_company_fault_style(seeded.realm_id, lapsed_reads=style)
    control.set_subscription_status(seeded.realm_id, status)

    check_and_confirm(stack, lambdas)

    connection = stored("conn-1")
    assert connection.state is ConnectionState.HEALTHY
    assert connection.issue is None and connection.suspect is None
    assert connection.subscription_status is SubscriptionStatus(status)
    assert lambdas.counts["SubscriptionStatusUnknown"] == 0


@pytest.mark.parametrize("status", sorted(READ_ONLY))
def test_a_read_only_company_reads_fine_and_its_status_opens_the_issue(stack, lambdas, seeded, status):
    """Default style: the probe's read answers 200 with the status; the status alone finds the problem."""
    stack.intuit.control.set_subscription_status(seeded.realm_id, status)
    before = stack.intuit.control.stats()

    check_and_confirm(stack, lambdas)

    connection = stored("conn-1")
    assert connection.state is ConnectionState.NEEDS_ATTENTION
    assert connection.issue is not None and connection.issue.type is READ_ONLY[status]
    assert connection.subscription_status is SubscriptionStatus(status)
    assert stored("conn-2").state is ConnectionState.HEALTHY
    assert lambdas.counts["CheckProblem"] >= 2 and lambdas.counts["IssueOpened"] == 1
    assert stack.intuit.control.stats() != before  # the reads really went to the simulator


@pytest.mark.parametrize("status", sorted(READ_ONLY))
def test_in_the_refusing_style_any_read_only_status_is_a_6190_and_lapsed(stack, lambdas, seeded, status):
    """Old style: the read itself is refused with 6190, which cannot tell ended from suspended."""
    control = stack.intuit.control
    control.set_company_fault_style(seeded.realm_id, lapsed_reads="refuse")
    control.set_subscription_status(seeded.realm_id, status)

    check_and_confirm(stack, lambdas)

    connection = stored("conn-1")
    assert connection.issue is not None and connection.issue.type is LAPSED
    assert connection.state is ConnectionState.NEEDS_ATTENTION


@pytest.mark.parametrize("style", ["serve", "refuse"])
def test_a_suspended_company_that_pays_is_restored(stack, lambdas, seeded, style, api_client):
    control = stack.intuit.control
    control.set_company_fault_style(seeded.realm_id, lapsed_reads=style)
    control.suspend(seeded.realm_id)
    check_and_confirm(stack, lambdas)
    escalate(lambdas)  # the day-0 notice goes out, so the fix is worth a restored notice
    assert stored("conn-1").issue is not None

    status = api_client.status("conn-1")
    assert status.issue == "SUBSCRIPTION_LAPSED" and status.remedy == guidance_for(LAPSED).remedy
    assert status.reauthorize is False

    control.set_subscription_status(seeded.realm_id, "SUBSCRIBED")
    stack.clock.advance(timedelta(days=1))
    check_and_confirm(stack, lambdas)

    connection = stored("conn-1")
    assert connection.issue is None and connection.state is ConnectionState.HEALTHY
    assert connection.subscription_status is SubscriptionStatus.SUBSCRIBED
    assert EventKind.ISSUE_HEALED.value in history_kinds("conn-1")
    stack.clock.advance(timedelta(hours=25))  # healthy for a day: the restored notice goes out
    escalate(lambdas)
    subjects = [email.subject for email in emails_sent()]
    assert any("restored" in subject.lower() for subject in subjects), subjects
    assert api_client.status("conn-1").subscription_status == "SUBSCRIBED"


def test_a_suspended_company_whose_subscription_ends_changes_to_subscription_ended(stack, lambdas, seeded):
    control = stack.intuit.control
    control.suspend(seeded.realm_id)
    check_and_confirm(stack, lambdas)
    episode = stored("conn-1").issue.episode_id

    control.set_subscription_status(seeded.realm_id, "CANCELED")
    stack.clock.advance(timedelta(days=1))
    check_and_confirm(stack, lambdas)

    issue = stored("conn-1").issue
    assert issue is not None and issue.type is ENDED and issue.episode_id == episode


def test_an_ended_subscription_speaks_its_own_words_in_status_notice_and_event(
    stack, lambdas, seeded, api_client
):
    from local.scenario import ProductEvents
    from tests.integration.test_escalation import SCHEMAS

    events = ProductEvents(stack)
    stack.intuit.control.set_subscription_status(seeded.realm_id, "EXPIRED")
    check_and_confirm(stack, lambdas)
    escalate(lambdas)

    status = api_client.status("conn-1")
    guidance = guidance_for(ENDED)
    assert status.issue == "SUBSCRIPTION_ENDED" and status.subscription_status == "EXPIRED"
    assert status.title == guidance.title and status.remedy == guidance.remedy
    assert "Resubscribe" in status.remedy and status.reauthorize is False

    notice = [email for email in emails_sent() if "owner@example.com" in email.to]
    assert notice, "the day-0 notice went out"
    assert "Resubscribe" in notice[-1].body and guidance.title in (notice[-1].subject + notice[-1].body)

    delivered = events.read()
    assert delivered, "the notice is an event too"
    for event in delivered:
        schema = json.loads((SCHEMAS / f"{event['detail-type']}.json").read_text())
        jsonschema.validate(event["detail"], schema)
    assert any(event["detail"]["issue"] == "SUBSCRIPTION_ENDED" for event in delivered)


# --- a 6190 the product reports ----------------------------------------------------------------------------


def product_write(stack, api_client, realm_id):
    """The product's own sync: create a customer, as its backend would, with the token we hand out."""
    token = api_client.access_token("conn-1").access_token
    return requests.post(
        f"{stack.intuit.base_url}/v3/company/{realm_id}/customer",
        params={"minorversion": "75"},
        json={"DisplayName": "A customer"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=10,
    )


@pytest.mark.parametrize("status_6190", [400, 200])
def test_a_6190_the_product_reports_on_a_write_opens_subscription_lapsed(
    stack, lambdas, seeded, api_client, status_6190
):
    control = stack.intuit.control
    control.set_company_fault_style(seeded.realm_id, status_6190=status_6190)
    control.suspend(seeded.realm_id)
    write = product_write(stack, api_client, seeded.realm_id)
    assert write.status_code == status_6190 and "6190" in write.text

    answer = api_client.report_problem("conn-1", write.status_code, write.text, write.headers["Content-Type"])

    assert answer.reported is not None and answer.reported.issue == "SUBSCRIPTION_LAPSED"
    assert answer.check.outcome == "PROBLEM"
    assert stored("conn-1").suspect is not None and stored("conn-1").suspect.type is LAPSED
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()
    assert stored("conn-1").issue is not None and stored("conn-1").issue.type is LAPSED


def test_a_reported_6190_stands_even_when_the_read_says_subscribed(
    stack, lambdas, seeded, api_client, monkeypatch
):
    """A 6190 seen anywhere opens SUBSCRIPTION_LAPSED: the write was refused, whatever the read says."""
    body = (
        '{"Fault":{"Error":[{"Message":"Invalid Company Status","Detail":"x","code":"6190"}],'
        '"type":"ValidationFault"},"time":"2026-03-02T01:00:00.000-08:00"}'
    )

    answer = api_client.report_problem("conn-1", 400, body, "application/json")

    assert answer.check.outcome == "PROBLEM" and answer.check.reason == "reported_6190"
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()  # the confirming re-check carries the report
    connection = stored("conn-1")
    assert connection.issue is not None and connection.issue.type is LAPSED
    assert connection.subscription_status is SubscriptionStatus.SUBSCRIBED

    # The next day's own check reads SUBSCRIBED with no new report: the episode closes.
    stack.clock.advance(timedelta(days=1))
    check_and_confirm(stack, lambdas)
    assert stored("conn-1").issue is None


def test_other_reports_are_still_checked_not_trusted(stack, lambdas, seeded, api_client):
    body = '{"Fault":{"Error":[{"Message":"x","code":"3100"}],"type":"ValidationFault"}}'
    answer = api_client.report_problem("conn-1", 403, body, "application/json")
    assert answer.check.outcome == "HEALTHY" and stored("conn-1").suspect is None


# --- an unknown or missing status --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "recorded"), [("FROZEN", SubscriptionStatus.UNKNOWN), (None, None)])
def test_an_unknown_or_missing_status_is_healthy_and_counted(
    stack, lambdas, seeded, monkeypatch, value, recorded
):
    real = IntuitClient.company_info

    def odd_company_info(self, realm_id, access_token):
        info = real(self, realm_id, access_token)
        if realm_id != seeded.realm_id:
            return info
        return type(info)(info.company_name, info.intuit_tid, value)

    monkeypatch.setattr(IntuitClient, "company_info", odd_company_info)

    check_and_confirm(stack, lambdas)

    connection = stored("conn-1")
    assert connection.state is ConnectionState.HEALTHY and connection.issue is None
    assert connection.suspect is None
    assert connection.subscription_status is recorded
    assert lambdas.counts["SubscriptionStatusUnknown"] == 1  # conn-2 read a known status


# --- metering ----------------------------------------------------------------------------------------------


def test_a_metering_refusal_is_its_own_outcome_never_an_issue(stack, lambdas, seeded):
    control = stack.intuit.control
    control.set_metering(control.metered_calls())  # the allowance is used up: every probe is refused

    check_and_confirm(stack, lambdas)

    for connection_id in ("conn-1", "conn-2"):
        connection = stored(connection_id)
        assert connection.state is ConnectionState.HEALTHY
        assert connection.issue is None and connection.suspect is None
        assert connection.transient_failures == 0
        assert connection.tokens.refreshed_at == stack.clock.now() - CONFIRM_DELAY  # OAuth is not metered
    assert lambdas.metrics["ProbeRefusedMetering"] == 2
    assert lambdas.counts["CheckTransient"] == 0 and lambdas.counts["IssueSuspected"] == 0
    assert lambdas.metrics["OutageSuspected"] == 0


def test_a_metering_refusal_pauses_an_open_issue_and_never_disconnects(stack, lambdas, seeded):
    control = stack.intuit.control
    control.suspend(seeded.realm_id)
    check_and_confirm(stack, lambdas)
    assert stored("conn-1").issue is not None
    control.set_metering(control.metered_calls())

    stack.clock.advance(timedelta(days=1))
    check_and_confirm(stack, lambdas)

    issue = stored("conn-1").issue
    assert issue is not None and issue.type is LAPSED and issue.paused_now


# --- reauthorizing a read-only company ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "style", "words"),
    [
        ("SUSPENDED", "serve", "Make a payment"),
        ("SUSPENDED", "refuse", "Make a payment"),
        ("CANCELED", "serve", "Resubscribe"),
    ],
)
def test_reauthorizing_a_read_only_company_is_refused_with_its_remedy(
    stack, api_client, status, style, words
):
    """As before with 6190: the new grant is revoked, the old tokens stay, the page says what to do."""
    from tests.integration.test_api import callback, deliver

    seeded = seed_connection(stack, "conn-1")
    before = stored("conn-1")
    stack.intuit.control.set_company_fault_style(seeded.realm_id, lapsed_reads=style)
    stack.intuit.control.set_subscription_status(seeded.realm_id, status)

    page = deliver(callback(stack, api_client.status("conn-1").reconnect_url))

    assert page.status_code == 409 and words in page.text, page.text
    assert 'id="subscription_inactive"' in page.text
    assert stored("conn-1").sealed_tokens == before.sealed_tokens
