"""What notices say: the article's wording, the deadline, the link, and nothing unescaped."""

from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import escape

from qbo_health.domain.issues import guidance_for, headline
from qbo_health.domain.model import IssueType
from qbo_health.domain.notices import Brand, Notice, NoticeKind, event_detail, render_email
from qbo_health.i18n import SUPPORTED_LOCALES

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


# --- every kind x issue x language (the issue's "done when") ---------------------------------------------

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
ISSUE_KINDS = (NoticeKind.NOTICE, NoticeKind.REMINDER_1, NoticeKind.REMINDER_2, NoticeKind.FINAL_WARNING)
MATRIX = [(kind, issue, locale) for kind in NoticeKind for issue in IssueType for locale in SUPPORTED_LOCALES]


def hostile_notice(kind, issue, locale):
    return notice(
        kind,
        issue=issue,
        locale=locale,
        company_name=f"Acme {SCRIPT} Ltd",
        brand=Brand(product_name=f"Books {SCRIPT}", support_email="help@acme.example"),
        note=f"Note {SCRIPT}",
        hard_expires_at=NOW + timedelta(days=20),
        authorizer_email=f"{SCRIPT}@quickbooks-user.example",  # the user's name as Intuit's userinfo gave it
    )


@pytest.mark.parametrize("to_authorizer", [False, True], ids=["contacts", "authorizer"])
@pytest.mark.parametrize(("kind", "issue", "locale"), MATRIX)
def test_names_from_outside_are_escaped_and_both_names_are_shown(kind, issue, locale, to_authorizer):
    email = render_email(hostile_notice(kind, issue, locale), to_authorizer=to_authorizer)

    assert "<script>" not in email.html
    assert f"Acme {ESCAPED_SCRIPT} Ltd" in email.html and f"Books {ESCAPED_SCRIPT}" in email.html
    assert f"Acme {SCRIPT} Ltd" in email.text and f"Books {SCRIPT}" in email.text  # plain text stays text
    assert f"Acme {SCRIPT} Ltd" in email.subject
    assert "QBO" in email.subject and "qbo" not in email.subject
    assert f'<html lang="{locale}">' in email.html


@pytest.mark.parametrize(("kind", "issue", "locale"), MATRIX)
def test_a_reconnect_link_only_where_reauthorizing_fixes_it(kind, issue, locale):
    email = render_email(hostile_notice(kind, issue, locale))
    offered = kind is NoticeKind.REAUTH_DUE or (kind in ISSUE_KINDS and guidance_for(issue).reauthorize)
    link = "https://health.example.com/reconnect/abc"

    assert (link in email.html) is offered and (link in email.text) is offered
    assert ('class="button"' in email.html) is offered
    if issue in (IssueType.SUBSCRIPTION_LAPSED, IssueType.SUBSCRIPTION_ENDED) and kind in ISSUE_KINDS:
        assert link not in email.html + email.text


@pytest.mark.parametrize(("kind", "issue", "locale"), [case for case in MATRIX if case[0] in ISSUE_KINDS])
def test_the_wording_is_the_status_apis_in_the_same_language(kind, issue, locale):
    email = render_email(hostile_notice(kind, issue, locale))
    guidance = guidance_for(issue, locale)  # what GET /connections/{id} answers for this connection

    for text in (guidance.user_message, guidance.remedy, guidance.who_can_fix):
        assert text in email.text
        assert str(escape(text)) in email.html
    assert guidance.title in email.subject
    assert guidance.consequence_for(NOW + timedelta(days=14)) in email.text
    assert headline(locale) in email.text


@pytest.mark.parametrize("locale", ["fr-CA", "es"])
def test_a_translated_notice_has_no_english_left_in_its_own_sentences(locale):
    email = render_email(notice(NoticeKind.NOTICE, issue=IssueType.ADMIN_ACCESS_LOST, locale=locale))
    for english in ("What to do", "Who can fix it", "Hello,", "days left", "Reauthorize:"):
        assert english not in email.text


def test_the_authorizer_is_written_to_for_the_configured_issues_unless_already_a_contact():
    from qbo_health.domain.model import Authorizer, Connection, ConnectionState
    from qbo_health.service.notices import Notices

    notices = Notices(
        claims=None,  # type: ignore[arg-type] - building a notice sends nothing
        email=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        reconnect_url=lambda connection_id, now: "https://health.example.com/reconnect/x",
        notify_authorizer=frozenset({"ADMIN_ACCESS_LOST", "REAUTH_DUE"}),
    )
    connection = Connection(
        "c",
        "t",
        "1",
        ConnectionState.NEEDS_ATTENTION,
        contacts=("books@firm.example",),
        authorized_by=Authorizer("u-1", "Admin@Firm.example"),
    )

    def to(kind, issue, conn=connection):
        return notices.notice_for(conn, kind, NOW, episode_id="e", issue=issue).authorizer_email

    assert to(NoticeKind.NOTICE, IssueType.ADMIN_ACCESS_LOST) == "Admin@Firm.example"
    assert to(NoticeKind.REAUTH_DUE, None) == "Admin@Firm.example"
    assert to(NoticeKind.NOTICE, IssueType.SUBSCRIPTION_LAPSED) is None
    already = Connection(**{**connection.__dict__, "contacts": ("admin@firm.example",)})
    assert to(NoticeKind.NOTICE, IssueType.ADMIN_ACCESS_LOST, already) is None
    nameless = Connection(**{**connection.__dict__, "authorized_by": Authorizer("u-1", None)})
    assert to(NoticeKind.NOTICE, IssueType.ADMIN_ACCESS_LOST, nameless) is None
