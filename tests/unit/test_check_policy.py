"""The health check's pure decisions: when to refresh, when to probe, and what each outcome changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from qbo_health.domain.check import (
    ACCESS_TOKEN_MARGIN,
    CLOSED_UNNOTIFIED,
    CheckOutcome,
    CheckPolicy,
    EventKind,
    OutcomeKind,
    apply_outcome,
    needs_probe,
    plan_check,
    track_pause,
)
from qbo_health.domain.model import (
    Connection,
    ConnectionState,
    IssueType,
    OpenIssue,
    PauseWindow,
    SuspectedIssue,
    TokenTimes,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = CheckPolicy()
HEALTHY_PROBE = CheckOutcome.healthy(probed=True)
REFRESHED_ONLY = CheckOutcome.healthy(probed=False)
TRANSIENT = CheckOutcome(OutcomeKind.TRANSIENT, reason="http_503")
MISCONFIGURED = CheckOutcome(OutcomeKind.MISCONFIGURED, reason="invalid_client")
FIVE_YEARS = timedelta(days=5 * 365)


def problem(issue: IssueType = IssueType.ADMIN_ACCESS_LOST, tid: str | None = "tid-1") -> CheckOutcome:
    return CheckOutcome(OutcomeKind.PROBLEM, issue=issue, reason=issue.value.lower(), intuit_tid=tid)


def connection(**changes) -> Connection:
    """A healthy connection refreshed and verified an hour ago, far from its hard expiry."""
    base = Connection(
        connection_id="conn-1",
        tenant_id="tenant-1",
        realm_id="realm-1",
        state=ConnectionState.HEALTHY,
        tokens=TokenTimes(
            access_expires_at=NOW + timedelta(minutes=50),
            refresh_expires_at=NOW + timedelta(days=100),
            hard_expires_at=NOW + FIVE_YEARS,
            refreshed_at=NOW - timedelta(hours=1),
            rotated_at=NOW - timedelta(hours=1),
        ),
        last_success_at=NOW - timedelta(hours=1),
    )
    return replace(base, **changes)


def with_tokens(**times) -> Connection:
    base = connection()
    return replace(base, tokens=replace(base.tokens, **times))


def open_issue(issue: IssueType = IssueType.ADMIN_ACCESS_LOST, *, opened: datetime = NOW) -> OpenIssue:
    return OpenIssue(
        type=issue,
        episode_id="episode-1",
        first_seen_at=opened - timedelta(minutes=15),
        opened_at=opened,
        deadline=opened + timedelta(days=14),
    )


def broken(issue: IssueType = IssueType.ADMIN_ACCESS_LOST) -> Connection:
    return connection(
        state=ConnectionState.NEEDS_ATTENTION, issue=open_issue(issue, opened=NOW - timedelta(days=2))
    )


def suspected(issue: IssueType = IssueType.ADMIN_ACCESS_LOST, *, seen: datetime) -> Connection:
    return connection(suspect=SuspectedIssue(type=issue, first_seen_at=seen, intuit_tid="tid-0"))


def apply(
    conn: Connection, outcome: CheckOutcome, now: datetime = NOW, *, attempt: int = 0, episode="ep-new"
):
    return apply_outcome(conn, outcome, now, POLICY, new_episode_id=episode, attempt=attempt)


def kinds(transition) -> list[EventKind]:
    return [event.kind for event in transition.events]


# ---------------------------------------------------------------------------------------------- plan_check


def test_a_recently_refreshed_and_verified_connection_needs_nothing():
    plan = plan_check(connection(), NOW, POLICY)

    assert plan.refresh is False
    assert plan.probe is False
    assert plan.reasons == ()


def probe_due(**times) -> Connection:
    """Refreshed an hour ago, but last verified a day ago: a CompanyInfo probe is due."""
    return replace(with_tokens(**times), last_success_at=NOW - timedelta(days=1))


@pytest.mark.parametrize(
    "access_expires_at",
    [
        None,
        NOW - timedelta(hours=3),
        NOW,
        NOW + ACCESS_TOKEN_MARGIN,
        NOW + timedelta(minutes=4),
    ],
    ids=["none-kept", "long-expired", "expiring-now", "at-the-margin", "inside-the-margin"],
)
def test_a_probe_without_a_usable_access_token_refreshes_first(access_expires_at):
    plan = plan_check(probe_due(access_expires_at=access_expires_at), NOW, POLICY)

    assert plan.probe is True
    assert plan.refresh is True
    assert plan.reasons == ("access_token_expired",)


def test_a_probe_with_an_access_token_just_outside_the_margin_uses_it():
    conn = probe_due(access_expires_at=NOW + ACCESS_TOKEN_MARGIN + timedelta(seconds=1))

    plan = plan_check(conn, NOW, POLICY)
    assert plan.probe is True
    assert plan.refresh is False


def test_without_a_probe_a_missing_access_token_is_no_reason_to_refresh():
    # The connection keeps no access token; refreshing only for one would rotate the refresh token for nothing.
    plan = plan_check(with_tokens(access_expires_at=None), NOW, POLICY)

    assert plan.probe is False
    assert plan.refresh is False


@pytest.mark.parametrize(
    ("refreshed_ago", "refresh"),
    [
        (timedelta(hours=19, minutes=59), False),
        (timedelta(hours=20), True),
        (timedelta(days=99), True),
    ],
)
def test_the_refresh_token_is_rolled_once_the_last_refresh_is_older_than_refresh_after(
    refreshed_ago, refresh
):
    plan = plan_check(with_tokens(refreshed_at=NOW - refreshed_ago), NOW, POLICY)

    assert plan.refresh is refresh
    assert ("refresh_due" in plan.reasons) is refresh


def test_a_connection_never_refreshed_is_refreshed():
    plan = plan_check(with_tokens(refreshed_at=None), NOW, POLICY)

    assert plan.refresh is True
    assert plan.reasons == ("refresh_due",)


def test_both_reasons_are_reported_together():
    conn = probe_due(access_expires_at=NOW - timedelta(days=2), refreshed_at=NOW - timedelta(days=2))

    assert plan_check(conn, NOW, POLICY).reasons == ("access_token_expired", "refresh_due")


def test_refresh_after_comes_from_the_policy():
    conn = with_tokens(refreshed_at=NOW - timedelta(hours=2))

    assert plan_check(conn, NOW, replace(POLICY, refresh_after=timedelta(hours=2))).refresh is True
    assert plan_check(conn, NOW, replace(POLICY, refresh_after=timedelta(hours=3))).refresh is False


# ---------------------------------------------------------------------------------------------- needs_probe


@pytest.mark.parametrize(
    ("last_success_at", "probe"),
    [
        (NOW - timedelta(hours=19, minutes=59), False),
        (NOW - timedelta(hours=20), True),
        (NOW - timedelta(days=3), True),
        (None, True),
    ],
    ids=["recent", "exactly-interval", "stale", "never"],
)
def test_the_metered_probe_runs_only_when_no_recent_success_is_known(last_success_at, probe):
    conn = connection(last_success_at=last_success_at)

    assert needs_probe(conn, NOW, POLICY) is probe
    assert plan_check(conn, NOW, POLICY).probe is probe


@pytest.mark.parametrize(
    "conn",
    [
        broken(),
        suspected(seen=NOW - timedelta(minutes=15)),
        connection(state=ConnectionState.PENDING),
    ],
    ids=["open-issue", "suspect", "pending"],
)
def test_a_connection_with_something_to_verify_is_always_probed(conn):
    assert conn.last_success_at == NOW - timedelta(hours=1)  # recent success would otherwise skip it

    assert needs_probe(conn, NOW, POLICY) is True
    assert plan_check(conn, NOW, POLICY).probe is True


# ---------------------------------------------------------------------------------------------- healthy


def test_a_healthy_probe_closes_the_open_issue_and_names_its_episode():
    conn = replace(broken(IssueType.SUBSCRIPTION_LAPSED), transient_failures=3)

    transition = apply(conn, HEALTHY_PROBE)

    healed = transition.connection
    assert healed.state is ConnectionState.HEALTHY
    assert healed.issue is None and healed.suspect is None
    assert healed.last_success_at == NOW and healed.last_check_at == NOW
    assert healed.transient_failures == 0
    (closed,) = transition.events
    assert closed.kind is EventKind.ISSUE_CLOSED
    assert closed.issue is IssueType.SUBSCRIPTION_LAPSED
    assert closed.episode_id == "episode-1"
    assert closed.at == NOW
    assert closed.detail == CLOSED_UNNOTIFIED  # no notice had gone out: none says "restored" either
    assert transition.recheck_after is None


def test_a_notified_issue_that_checks_healthy_heals_and_waits_out_the_damping_window():
    issue = replace(
        broken(IssueType.SUBSCRIPTION_LAPSED).issue, notices=(("NOTICE", NOW - timedelta(days=1)),)
    )
    conn = replace(broken(IssueType.SUBSCRIPTION_LAPSED), issue=issue)

    transition = apply(conn, HEALTHY_PROBE)

    (healed,) = transition.events
    assert healed.kind is EventKind.ISSUE_HEALED  # no restored notice yet: it waits a healthy day
    assert transition.connection.state is ConnectionState.HEALTHY and transition.connection.issue is None
    assert transition.connection.recovering == replace(issue, healed_at=NOW)


def test_a_problem_back_within_the_window_continues_the_episode_and_its_clock():
    healed = replace(
        broken(IssueType.ADMIN_ACCESS_LOST).issue,
        notices=(("NOTICE", NOW - timedelta(days=2)),),
        healed_at=NOW - timedelta(days=1),
    )
    seen = NOW - timedelta(minutes=15)
    conn = replace(
        suspected(IssueType.ADMIN_ACCESS_LOST, seen=seen), recovering=healed, state=ConnectionState.HEALTHY
    )

    transition = apply(conn, problem(IssueType.ADMIN_ACCESS_LOST))

    assert kinds(transition) == [EventKind.ISSUE_RETURNED]
    resumed = transition.connection.issue
    assert resumed == replace(healed, healed_at=None)  # same episode, deadline and notices
    assert transition.connection.recovering is None
    assert transition.connection.state is ConnectionState.NEEDS_ATTENTION


def test_a_healthy_probe_clears_a_suspect_without_any_issue_event():
    conn = suspected(IssueType.ADMIN_ACCESS_LOST, seen=NOW - timedelta(minutes=15))

    transition = apply(conn, HEALTHY_PROBE)

    assert transition.connection.suspect is None
    assert transition.connection.state is ConnectionState.HEALTHY
    assert kinds(transition) == [EventKind.SUSPECT_CLEARED]
    assert transition.events[0].issue is IssueType.ADMIN_ACCESS_LOST


def test_a_healthy_probe_verifies_a_pending_connection():
    transition = apply(connection(state=ConnectionState.PENDING, last_success_at=None), HEALTHY_PROBE)

    assert transition.connection.state is ConnectionState.HEALTHY
    assert transition.connection.last_success_at == NOW
    assert kinds(transition) == [EventKind.VERIFIED]


def test_a_refresh_without_a_probe_proves_nothing_about_an_open_issue():
    conn = replace(broken(), transient_failures=2)

    transition = apply(conn, REFRESHED_ONLY)

    assert transition.connection.issue == conn.issue
    assert transition.connection.state is ConnectionState.NEEDS_ATTENTION
    assert transition.connection.last_success_at == conn.last_success_at
    assert transition.connection.transient_failures == 0
    assert transition.events == ()


# ---------------------------------------------------------------------------------------------- problems


def test_a_first_bad_answer_is_only_suspected_and_rechecked_after_the_confirm_delay():
    transition = apply(connection(), problem(IssueType.SUBSCRIPTION_LAPSED, tid="tid-42"))

    conn = transition.connection
    assert conn.state is ConnectionState.HEALTHY
    assert conn.issue is None
    assert conn.suspect == SuspectedIssue(
        IssueType.SUBSCRIPTION_LAPSED, first_seen_at=NOW, intuit_tid="tid-42"
    )
    assert transition.new_suspect is True
    assert transition.recheck_after == POLICY.confirm_delay
    assert kinds(transition) == [EventKind.ISSUE_SUSPECTED]
    assert EventKind.ISSUE_OPENED not in kinds(transition)


def test_a_second_bad_answer_after_the_confirm_delay_opens_the_issue_with_a_14_day_deadline():
    first_seen = NOW - POLICY.confirm_delay
    conn = suspected(IssueType.ADMIN_ACCESS_LOST, seen=first_seen)

    transition = apply(conn, problem(IssueType.ADMIN_ACCESS_LOST, tid="tid-2"), episode="ep-7")

    opened = transition.connection
    assert opened.state is ConnectionState.NEEDS_ATTENTION
    assert opened.suspect is None
    assert opened.issue == OpenIssue(
        type=IssueType.ADMIN_ACCESS_LOST,
        episode_id="ep-7",
        first_seen_at=first_seen,
        opened_at=NOW,
        deadline=NOW + timedelta(days=14),
    )
    (event,) = transition.events
    assert event.kind is EventKind.ISSUE_OPENED
    assert event.episode_id == "ep-7"
    assert event.issue is IssueType.ADMIN_ACCESS_LOST
    assert transition.new_suspect is False
    assert transition.recheck_after is None


def test_a_repeat_before_the_confirm_delay_keeps_waiting_for_the_rest_of_it():
    conn = suspected(seen=NOW - timedelta(minutes=5))

    transition = apply(conn, problem())

    assert transition.connection.issue is None
    assert transition.connection.suspect == conn.suspect
    assert transition.connection.state is ConnectionState.HEALTHY
    assert transition.events == ()
    assert transition.new_suspect is False
    assert transition.recheck_after == timedelta(minutes=10)


def test_the_same_issue_seen_again_changes_nothing():
    conn = broken(IssueType.ADMIN_ACCESS_LOST)

    transition = apply(conn, problem(IssueType.ADMIN_ACCESS_LOST), episode="must-not-be-used")

    assert transition.connection.issue == conn.issue
    assert transition.connection.state is ConnectionState.NEEDS_ATTENTION
    assert transition.events == ()
    assert transition.recheck_after is None
    assert transition.new_suspect is False


def test_a_different_issue_while_one_is_open_changes_its_type_but_not_its_episode_or_deadline():
    conn = broken(IssueType.ADMIN_ACCESS_LOST)

    transition = apply(conn, problem(IssueType.SUBSCRIPTION_LAPSED), episode="must-not-be-used")

    changed = transition.connection.issue
    assert changed is not None and conn.issue is not None
    assert changed.type is IssueType.SUBSCRIPTION_LAPSED
    assert changed.episode_id == conn.issue.episode_id
    assert changed.deadline == conn.issue.deadline
    assert changed.opened_at == conn.issue.opened_at
    assert transition.connection.state is ConnectionState.NEEDS_ATTENTION
    (event,) = transition.events
    assert event.kind is EventKind.ISSUE_CHANGED
    assert event.issue is IssueType.SUBSCRIPTION_LAPSED
    assert event.episode_id == "episode-1"


def test_the_whole_episode_suspect_confirm_then_heal():
    start = connection()

    first = apply(start, problem(), NOW, episode="ep-a")
    confirmed = apply(first.connection, problem(), NOW + first.recheck_after, episode="ep-b")
    healed = apply(confirmed.connection, HEALTHY_PROBE, NOW + timedelta(days=1))

    assert kinds(first) + kinds(confirmed) + kinds(healed) == [
        EventKind.ISSUE_SUSPECTED,
        EventKind.ISSUE_OPENED,
        EventKind.ISSUE_CLOSED,
    ]
    assert confirmed.connection.issue is not None
    assert confirmed.connection.issue.first_seen_at == NOW
    assert healed.events[0].episode_id == confirmed.events[0].episode_id == "ep-b"
    assert healed.connection.state is ConnectionState.HEALTHY


# ---------------------------------------------------------------------------------------------- transient


def test_transient_trouble_counts_but_never_changes_state_issue_or_suspect():
    conn = replace(broken(), suspect=None, transient_failures=4)

    transition = apply(conn, TRANSIENT)

    assert transition.connection.transient_failures == 5
    assert transition.connection.state is ConnectionState.NEEDS_ATTENTION
    # The issue stands, and its escalation stands still from now until Intuit answers again.
    assert transition.connection.issue == replace(conn.issue, pauses=(PauseWindow(NOW, None),))
    assert transition.connection.last_check_at == NOW
    assert transition.connection.last_success_at == conn.last_success_at
    assert transition.events == ()
    assert transition.retry_transient is True


def test_transient_trouble_never_suspects_a_healthy_connection():
    transition = apply(connection(), TRANSIENT)

    assert transition.connection.state is ConnectionState.HEALTHY
    assert transition.connection.suspect is None
    assert transition.new_suspect is False


def test_transient_retries_back_off_15_30_60_minutes_then_stop_after_max_retries():
    conn = connection()
    delays: list[timedelta] = []
    attempt = 0
    while True:
        transition = apply(conn, TRANSIENT, attempt=attempt)
        conn = transition.connection
        if not transition.retry_transient:
            assert transition.recheck_after is None
            break
        delays.append(transition.recheck_after)
        attempt += 1
        assert attempt <= 100, "retries never stop"

    minutes = [delay / timedelta(minutes=1) for delay in delays]
    assert len(delays) == POLICY.max_transient_retries
    assert minutes[:4] == [15, 30, 60, 60]
    assert set(minutes[2:]) == {60}
    assert conn.transient_failures == POLICY.max_transient_retries + 1
    assert conn.state is ConnectionState.HEALTHY


def test_the_retry_budget_follows_the_policy():
    policy = replace(POLICY, max_transient_retries=2)

    retries = [
        apply_outcome(connection(), TRANSIENT, NOW, policy, new_episode_id="x", attempt=n).retry_transient
        for n in range(4)
    ]

    assert retries == [True, True, False, False]


def test_during_a_suspected_outage_a_transient_failure_waits_for_the_next_run():
    during = apply_outcome(connection(), TRANSIENT, NOW, POLICY, new_episode_id="x", outage_suspected=True)
    normal = apply_outcome(connection(), TRANSIENT, NOW, POLICY, new_episode_id="x", outage_suspected=False)

    assert (during.retry_transient, during.recheck_after) == (False, None)
    assert during.connection.transient_failures == 1 and during.connection.issue is None
    assert normal.retry_transient and normal.recheck_after == POLICY.transient_retry_delay


def test_a_suspected_outage_does_not_delay_confirming_a_real_problem():
    transition = apply_outcome(
        connection(), problem(), NOW, POLICY, new_episode_id="x", outage_suspected=True
    )

    assert transition.recheck_after == POLICY.confirm_delay


def test_misconfiguration_is_never_retried_and_never_becomes_a_customer_issue():
    conn = connection()
    for attempt in range(3):
        transition = apply(conn, MISCONFIGURED, NOW + timedelta(minutes=attempt), attempt=attempt)
        conn = transition.connection

        assert transition.retry_transient is False
        assert transition.recheck_after is None
        assert transition.events == ()
        assert transition.new_suspect is False
    assert conn.state is ConnectionState.HEALTHY
    assert conn.issue is None and conn.suspect is None
    assert conn.transient_failures == 3


# ---------------------------------------------------------------------------------------------- reauth warning


def daily_checks(conn: Connection, start: datetime, days: int):
    events = []
    for day in range(days):
        transition = apply(conn, HEALTHY_PROBE, start + timedelta(days=day))
        conn = transition.connection
        events.extend(event for event in transition.events if event.kind is EventKind.REAUTH_DUE)
    return conn, events


def test_reauthorization_is_due_warned_exactly_once_within_30_days_of_the_hard_expiry():
    hard = NOW + timedelta(days=45)
    conn = with_tokens(hard_expires_at=hard)

    conn, warnings = daily_checks(conn, NOW, 45)

    assert len(warnings) == 1
    (warning,) = warnings
    assert warning.at == hard - timedelta(days=30)
    assert warning.detail == hard.isoformat()
    assert conn.reauth_due_warned_at == hard - timedelta(days=30)


def test_no_reauth_warning_more_than_30_days_ahead_or_without_a_known_hard_expiry():
    far = apply(with_tokens(hard_expires_at=NOW + timedelta(days=30, seconds=1)), HEALTHY_PROBE)
    unknown = apply(with_tokens(hard_expires_at=None), HEALTHY_PROBE)

    assert far.events == () and far.connection.reauth_due_warned_at is None
    assert unknown.events == () and unknown.connection.reauth_due_warned_at is None


def test_a_reauthorized_connection_is_warned_again_only_for_its_new_hard_expiry():
    first_hard = NOW + timedelta(days=20)
    conn, first = daily_checks(with_tokens(hard_expires_at=first_hard), NOW, 5)
    assert len(first) == 1

    reauthorized_at = NOW + timedelta(days=5)
    second_hard = reauthorized_at + FIVE_YEARS
    conn = replace(conn, tokens=replace(conn.tokens, hard_expires_at=second_hard))
    conn, quiet = daily_checks(conn, reauthorized_at, 30)
    assert quiet == []

    conn, second = daily_checks(conn, second_hard - timedelta(days=31), 10)
    assert len(second) == 1
    assert second[0].detail == second_hard.isoformat()
    assert second[0].at == second_hard - timedelta(days=30)


def test_a_refresh_without_probe_also_warns_about_the_hard_expiry():
    transition = apply(with_tokens(hard_expires_at=NOW + timedelta(days=10)), REFRESHED_ONLY)

    assert kinds(transition) == [EventKind.REAUTH_DUE]
    assert transition.connection.reauth_due_warned_at == NOW


# ---------------------------------------------------------------------------------------------- own pause


def test_an_unanswered_check_pauses_an_open_issue_and_the_next_answer_ends_the_pause():
    conn = broken()
    later = NOW + timedelta(hours=5)

    paused = track_pause(conn, answered=False, now=NOW)
    still = track_pause(paused, answered=False, now=NOW + timedelta(hours=1))
    resumed = track_pause(still, answered=True, now=later)

    assert paused.issue.paused_now and still.issue.pauses == paused.issue.pauses
    assert resumed.issue.pauses == (PauseWindow(NOW, later),)
    assert not resumed.issue.paused_now


def test_an_answer_without_a_running_pause_or_an_issue_changes_nothing():
    assert track_pause(broken(), answered=True, now=NOW) == broken()
    healthy = connection()
    assert track_pause(healthy, answered=False, now=NOW) is healthy


def test_a_company_name_is_kept_current_trimmed_bounded_and_never_blanked():
    from qbo_health.domain.check import COMPANY_NAME_MAX, known_company_name

    known = Connection("c", "t", "1", ConnectionState.HEALTHY, company_name="Old Name")
    assert known_company_name("  New\n\tName ", known) == "New Name"
    assert known_company_name("\x1b[2J", known) == "[2J"
    assert known_company_name("", known) == "Old Name"
    assert known_company_name(None, known) == "Old Name"
    assert len(known_company_name("x" * 5000, known) or "") == COMPANY_NAME_MAX
