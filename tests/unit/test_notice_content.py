"""What notices say: the article's wording, the deadline, the link, and nothing unescaped."""

from datetime import UTC, datetime, timedelta

import pytest

from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import IssueType
from qbo_health.domain.notices import Notice, NoticeKind, event_detail, render_email

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>&"\''


def notice(kind=NoticeKind.NOTICE, **overrides):
    values = {
        "kind": kind,
        "connection_id": "conn-1",
        "tenant_id": "firm-1",
        "episode_id": "ep-1",
        "time": NOW,
        "issue": IssueType.SUBSCRIPTION_LAPSED,
        "deadline": NOW + timedelta(days=14),
        "days_left": 14,
        "reconnect_url": "https://health.example.com/reconnect/abc",
    }
    return Notice(**(values | overrides))


def test_a_first_notice_says_what_is_wrong_what_to_do_and_by_when():
    email = render_email(notice())
    guidance = guidance_for(IssueType.SUBSCRIPTION_LAPSED)
    assert guidance.user_message in email.text
    assert guidance.remedy in email.text
    assert "March 16, 2026" in email.text
    assert "14 days left, until March 16, 2026." in email.text
    assert email.subject.startswith("Action needed")
    assert "reconnect" not in email.html + email.text  # paying, not reauthorizing, fixes a lapse
    admin = render_email(notice(issue=IssueType.ADMIN_ACCESS_LOST))
    assert 'href="https://health.example.com/reconnect/abc"' in admin.html


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_every_value_from_outside_is_escaped_in_html(kind):
    hostile = notice(
        kind,
        connection_id=HOSTILE,
        tenant_id=HOSTILE,
        reconnect_url=f"https://x.example/{HOSTILE}",
        note=HOSTILE,
        hard_expires_at=NOW + timedelta(days=20),
    )
    email = render_email(hostile)
    assert "<script>" not in email.html
    assert 'alert("x")' not in email.html
    assert "\"'" not in email.html


def test_the_final_warning_names_the_disconnect_date():
    email = render_email(notice(NoticeKind.FINAL_WARNING, days_left=2, deadline=NOW + timedelta(days=2)))
    assert email.subject.startswith("Final warning")
    assert "March 4, 2026" in email.text


def test_notice_ids_are_stable_per_connection_episode_and_kind():
    assert notice().notice_id == notice(time=NOW + timedelta(hours=3)).notice_id
    assert notice().notice_id != notice(NoticeKind.REMINDER_1).notice_id
    assert notice().notice_id != notice(episode_id="ep-2").notice_id
    assert event_detail(notice())["event_id"] == notice().notice_id
