"""Pure decisions of escalation: the one deadline function, flapping damping, the lease/check budget."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from qbo_health.domain.check import lease_too_short, longest_check
from qbo_health.domain.escalation import (
    EscalationPolicy,
    Schedule,
    continues,
    disconnect_deadline,
    healing,
)
from qbo_health.domain.model import IssueType, OpenIssue, PauseWindow

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LAPSED_21 = EscalationPolicy(overrides={IssueType.SUBSCRIPTION_LAPSED: Schedule(disconnect_day=21)})


def issue(kind=IssueType.ADMIN_ACCESS_LOST, **changes) -> OpenIssue:
    base = OpenIssue(kind, "e1", NOW, NOW, NOW, notices=(("NOTICE", NOW),))
    return replace(base, **changes)


def test_the_deadline_follows_the_issue_types_schedule():
    assert disconnect_deadline(issue(), LAPSED_21, NOW) == NOW + timedelta(days=14)
    assert disconnect_deadline(issue(IssueType.SUBSCRIPTION_LAPSED), LAPSED_21, NOW) == NOW + timedelta(
        days=21
    )


def test_the_deadline_moves_by_paused_time_counted_once():
    own = (PauseWindow(NOW + timedelta(hours=1), NOW + timedelta(hours=4)),)
    fleet = [PauseWindow(NOW + timedelta(hours=3), NOW + timedelta(hours=6))]
    later = NOW + timedelta(days=1)
    deadline = disconnect_deadline(issue(pauses=own), EscalationPolicy(), later, fleet)
    assert deadline == NOW + timedelta(days=14, hours=5)


def test_a_healed_episode_is_restored_after_a_healthy_day_and_closed_after_the_window():
    healed = issue(healed_at=NOW)
    policy = EscalationPolicy()
    assert healing(healed, NOW + timedelta(hours=23), policy).send_restored is False
    assert healing(healed, NOW + timedelta(hours=24), policy).send_restored is True
    told = replace(healed, notices=(*healed.notices, ("RESTORED", NOW + timedelta(hours=24))))
    assert healing(told, NOW + timedelta(days=2), policy).send_restored is False
    assert healing(told, NOW + timedelta(days=7), policy).close is True
    assert continues(healed, NOW + timedelta(days=6), policy)
    assert not continues(healed, NOW + timedelta(days=7), policy)


def test_nobody_hears_restored_of_an_issue_they_were_never_told_of():
    assert (
        healing(issue(notices=(), healed_at=NOW), NOW + timedelta(days=2), EscalationPolicy()).send_restored
        is False
    )


def test_a_lease_must_outlast_the_longest_check():
    timeout = timedelta(seconds=10)
    assert longest_check(timeout) == timedelta(seconds=60)
    assert lease_too_short(timedelta(seconds=120), timeout) is None
    assert "LEASE_SECONDS=10" in (lease_too_short(timedelta(seconds=10), timeout) or "")
