"""CompanyInfo's SubscriptionStatus: what each value means, and how a reported 6190 weighs in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qbo_health.domain.check import CheckOutcome, CheckPolicy, EventKind, OutcomeKind, apply_outcome
from qbo_health.domain.classification import Classification, FailureKind
from qbo_health.domain.issues import all_guidance, guidance_for
from qbo_health.domain.model import (
    Connection,
    ConnectionState,
    IssueType,
    OpenIssue,
    SubscriptionStatus,
    SuspectedIssue,
)
from qbo_health.domain.subscription import (
    classify_subscription,
    issue_with_report,
    read_status,
    reported_evidence,
)

LAPSED = IssueType.SUBSCRIPTION_LAPSED
ENDED = IssueType.SUBSCRIPTION_ENDED
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = CheckPolicy()


@pytest.mark.parametrize(
    ("value", "status", "issue"),
    [
        ("TRIAL", SubscriptionStatus.TRIAL, None),
        ("TRIALOPTIN", SubscriptionStatus.TRIALOPTIN, None),
        ("SUBSCRIBED", SubscriptionStatus.SUBSCRIBED, None),
        ("PAID", SubscriptionStatus.PAID, None),
        ("RESTRICTED", SubscriptionStatus.RESTRICTED, LAPSED),
        ("SUSPENDED", SubscriptionStatus.SUSPENDED, LAPSED),
        ("CANCELED", SubscriptionStatus.CANCELED, ENDED),
        ("EXPIRED", SubscriptionStatus.EXPIRED, ENDED),
        # Case and spacing are not Intuit's to vary, but costs nothing to forgive.
        (" suspended ", SubscriptionStatus.SUSPENDED, LAPSED),
        ("Canceled", SubscriptionStatus.CANCELED, ENDED),
        ("CANCELLED", SubscriptionStatus.CANCELED, ENDED),
    ],
)
def test_each_documented_status(value, status, issue):
    verdict = classify_subscription(value)
    assert verdict.status is status
    assert verdict.issue is issue
    assert not verdict.unknown


@pytest.mark.parametrize("value", [None, "", "   ", 42, ["SUSPENDED"], {"Value": "SUSPENDED"}])
def test_no_status_is_healthy_and_unknown(value):
    verdict = classify_subscription(value)
    assert verdict.status is None and verdict.issue is None and verdict.unknown


@pytest.mark.parametrize("value", ["FROZEN", "ACTIVE", "SUSPENDED_PENDING", "X" * 500])
def test_an_unknown_value_is_healthy_and_recorded_as_unknown(value):
    verdict = classify_subscription(value)
    assert verdict.status is SubscriptionStatus.UNKNOWN
    assert verdict.issue is None and verdict.unknown
    assert read_status(value) is SubscriptionStatus.UNKNOWN


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SUBSCRIBED", LAPSED),  # a 6190 seen on a write stands: a read-only company reads fine
        ("PAID", LAPSED),
        (None, LAPSED),
        ("FROZEN", LAPSED),
        ("SUSPENDED", LAPSED),
        ("CANCELED", ENDED),  # the read names the problem more precisely than a bare 6190
        ("EXPIRED", ENDED),
    ],
)
def test_a_reported_6190_opens_subscription_lapsed_unless_the_read_is_more_precise(value, expected):
    assert issue_with_report(classify_subscription(value), LAPSED) is expected


@pytest.mark.parametrize("value", ["SUBSCRIBED", "TRIAL", None, "FROZEN"])
def test_without_a_report_a_healthy_read_is_healthy(value):
    assert issue_with_report(classify_subscription(value), None) is None


def test_only_a_6190_report_is_evidence_on_its_own():
    assert reported_evidence(Classification(FailureKind.ISSUE, LAPSED, "subscription_lapsed")) is LAPSED
    assert reported_evidence(Classification(FailureKind.ISSUE, IssueType.ADMIN_ACCESS_LOST, "x")) is None
    assert reported_evidence(Classification(FailureKind.ISSUE, IssueType.AUTHORIZATION_EXPIRED, "x")) is None
    assert reported_evidence(Classification(FailureKind.TRANSIENT, None, "throttled")) is None
    assert reported_evidence(Classification(FailureKind.METERED, None, "metered_limit_exceeded")) is None
    assert reported_evidence(None) is None


# --- wording -----------------------------------------------------------------------------------------------


def test_an_ended_subscription_has_its_own_wording():
    ended = guidance_for(ENDED)
    lapsed = guidance_for(LAPSED)
    assert "resubscribe" in ended.remedy.lower()
    assert "deletes" in ended.remedy and "data" in ended.remedy
    assert "ended or was canceled" in ended.user_message
    assert "payment" in lapsed.remedy.lower() and "resubscribe" not in lapsed.remedy.lower()
    assert "missed a payment" in lapsed.user_message
    assert not ended.reauthorize and not lapsed.reauthorize
    assert ended.title != lapsed.title and ended.user_message != lapsed.user_message
    assert {guidance.issue for guidance in all_guidance()} == set(IssueType)


# --- what a read's outcome does to the connection ----------------------------------------------------------


def connection(**changes) -> Connection:
    base = Connection("conn-1", "tenant-1", "123", ConnectionState.HEALTHY, last_success_at=NOW)
    return replace(base, **changes)


def problem(issue: IssueType, status: SubscriptionStatus) -> CheckOutcome:
    return CheckOutcome(
        OutcomeKind.PROBLEM, issue, "subscription_status", probed=True, subscription_status=status
    )


def test_a_suspended_read_is_suspected_then_confirmed_and_the_status_is_kept():
    first = apply_outcome(
        connection(), problem(LAPSED, SubscriptionStatus.SUSPENDED), NOW, POLICY, new_episode_id="e1"
    )
    assert first.new_suspect and first.connection.suspect is not None
    assert first.connection.subscription_status is SubscriptionStatus.SUSPENDED

    later = NOW + POLICY.confirm_delay
    second = apply_outcome(
        first.connection, problem(LAPSED, SubscriptionStatus.SUSPENDED), later, POLICY, new_episode_id="e1"
    )
    assert second.connection.issue is not None and second.connection.issue.type is LAPSED
    assert [event.kind for event in second.events] == [EventKind.ISSUE_OPENED]


def test_a_lapsed_company_that_pays_is_restored_by_a_healthy_read():
    issue = OpenIssue(LAPSED, "e1", NOW, NOW, NOW + timedelta(days=14), notices=(("NOTICE", NOW),))
    broken = connection(
        state=ConnectionState.NEEDS_ATTENTION, issue=issue, subscription_status=SubscriptionStatus.SUSPENDED
    )
    healthy = CheckOutcome.healthy(probed=True, subscription_status=SubscriptionStatus.SUBSCRIBED)

    transition = apply_outcome(broken, healthy, NOW + timedelta(days=1), POLICY, new_episode_id="e2")

    assert transition.connection.issue is None and transition.connection.state is ConnectionState.HEALTHY
    assert transition.connection.subscription_status is SubscriptionStatus.SUBSCRIBED
    healed = [event for event in transition.events if event.kind is EventKind.ISSUE_HEALED]
    assert healed and healed[0].issue is LAPSED  # the restored notice follows a healthy day later


def test_a_suspended_company_whose_subscription_then_ends_changes_issue():
    issue = OpenIssue(LAPSED, "e1", NOW, NOW, NOW + timedelta(days=14))
    broken = connection(state=ConnectionState.NEEDS_ATTENTION, issue=issue)

    transition = apply_outcome(
        broken,
        problem(ENDED, SubscriptionStatus.CANCELED),
        NOW + timedelta(days=1),
        POLICY,
        new_episode_id="x",
    )

    assert transition.connection.issue is not None and transition.connection.issue.type is ENDED
    assert transition.connection.issue.episode_id == "e1"
    assert [event.kind for event in transition.events] == [EventKind.ISSUE_CHANGED]


def test_a_refresh_only_check_keeps_the_last_seen_status():
    kept = connection(subscription_status=SubscriptionStatus.TRIAL)
    transition = apply_outcome(kept, CheckOutcome.healthy(probed=False), NOW, POLICY, new_episode_id="x")
    assert transition.connection.subscription_status is SubscriptionStatus.TRIAL


# --- metering ----------------------------------------------------------------------------------------------

METERED = CheckOutcome(OutcomeKind.METERED_OUT, reason="metered_limit_exceeded")


def test_a_metering_refusal_is_never_an_issue_a_suspicion_a_retry_or_a_transient_count():
    healthy = connection(transient_failures=2)

    transition = apply_outcome(healthy, METERED, NOW, POLICY, new_episode_id="x", attempt=0)

    assert transition.connection.issue is None and transition.connection.suspect is None
    assert transition.connection.state is ConnectionState.HEALTHY
    assert transition.connection.transient_failures == 2
    assert transition.recheck_after is None and not transition.retry_transient
    assert not transition.new_suspect and transition.events == ()
    assert transition.connection.last_success_at == NOW  # nothing verified, nothing lost
    assert transition.connection.last_check_at == NOW


def test_a_metering_refusal_keeps_a_suspicion_waiting_and_pauses_an_open_issue():
    suspect = SuspectedIssue(LAPSED, NOW - timedelta(hours=1))
    suspected = apply_outcome(connection(suspect=suspect), METERED, NOW, POLICY, new_episode_id="x")
    assert suspected.connection.suspect == suspect and suspected.connection.issue is None

    issue = OpenIssue(LAPSED, "e1", NOW, NOW, NOW + timedelta(days=14))
    broken = connection(state=ConnectionState.NEEDS_ATTENTION, issue=issue)
    paused = apply_outcome(broken, METERED, NOW, POLICY, new_episode_id="x")
    assert paused.connection.issue is not None and paused.connection.issue.paused_now
    assert paused.connection.issue.type is LAPSED and paused.events == ()


def test_the_subscription_module_is_pure():
    import qbo_health.domain.subscription as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    for forbidden in ("boto3", "botocore", "pynamodb", "requests", "import os", "datetime.now"):
        assert forbidden not in source
