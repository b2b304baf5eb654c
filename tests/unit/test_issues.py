"""Issue guidance: complete, in the help article's words, and with the disconnect sentence kept apart."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from qbo_health.domain.issues import (
    HEADLINE,
    REAUTH_DUE,
    IssueGuidance,
    all_guidance,
    format_date,
    guidance_for,
)
from qbo_health.domain.model import IssueType


@pytest.mark.parametrize("issue_type", list(IssueType))
def test_every_issue_type_has_complete_guidance(issue_type):
    guidance = guidance_for(issue_type)
    assert isinstance(guidance, IssueGuidance)
    assert guidance.issue is issue_type
    for text in (guidance.title, guidance.user_message, guidance.remedy, guidance.who_can_fix):
        assert text.strip() == text and len(text) > 10
    assert "{deadline}" in guidance.consequence


def test_guidance_for_accepts_the_plain_string_value():
    assert guidance_for("ADMIN_ACCESS_LOST").issue is IssueType.ADMIN_ACCESS_LOST  # type: ignore[arg-type]


def test_all_guidance_lists_each_type_once():
    assert [g.issue for g in all_guidance()] == list(IssueType)


def test_admin_access_lost_wording_comes_from_the_article():
    guidance = guidance_for(IssueType.ADMIN_ACCESS_LOST)
    assert guidance.user_message == (
        "The QBO account used to set up the QBO integration is no longer an Admin in QBO."
    )
    assert guidance.remedy.startswith(
        "Have a team member add you again as an Admin in QBO (you may need to go through the "
        "Reauthorization process afterward)."
    )
    assert "Just sign in and confirm!" in guidance.remedy
    assert guidance.reauthorize is True
    assert "the person who set up the integration" in guidance.who_can_fix.lower()


def test_subscription_lapsed_wording_comes_from_the_article():
    guidance = guidance_for(IssueType.SUBSCRIPTION_LAPSED)
    assert guidance.user_message.startswith(
        "You missed a payment for your QBO account and QBO has suspended your account"
    )
    assert guidance.remedy.startswith("Make a payment on your QBO account.")
    assert guidance.reauthorize is False  # paying fixes it; reauthorizing would not


def test_authorization_expired_wording():
    guidance = guidance_for(IssueType.AUTHORIZATION_EXPIRED)
    assert "expired or was revoked in QBO" in guidance.user_message
    assert "100+ days" in guidance.user_message
    assert guidance.remedy.startswith("Click the Reauthorize button.")
    assert "Sign in to QBO there." in guidance.remedy
    assert guidance.remedy.endswith("Just sign in and confirm!")
    assert guidance.reauthorize is True
    assert guidance.who_can_fix == "The person who set up the integration, or any QBO Admin of the company."


def test_consequence_names_the_date_when_known():
    guidance = guidance_for(IssueType.ADMIN_ACCESS_LOST)
    sentence = guidance.consequence_for(datetime(2026, 1, 19, 6, 0, tzinfo=UTC))
    assert sentence == (
        "If the issue is not fixed by January 19, 2026, the integration automatically disconnects and "
        "you'll have to restart the integration to keep using it."
    )
    assert "disconnect" not in guidance.user_message.lower()  # kept apart, so notices can date it


def test_consequence_without_a_date_follows_the_article():
    sentence = guidance_for(IssueType.SUBSCRIPTION_LAPSED).consequence_for(None)
    assert "about 2 weeks of the first error message" in sentence
    assert "automatically disconnects" in sentence


def test_reauth_due_warning():
    assert REAUTH_DUE.key == "REAUTH_DUE"
    assert REAUTH_DUE.reauthorize is True
    assert "5 years" in REAUTH_DUE.user_message
    assert REAUTH_DUE.message_for(date(2030, 11, 12)).endswith("ends on November 12, 2030.")
    assert REAUTH_DUE.remedy.startswith("Reauthorize before that date.")
    assert "Just sign in and confirm!" in REAUTH_DUE.remedy
    assert REAUTH_DUE.key not in {t.value for t in IssueType}  # a warning, not an issue


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (date(2026, 1, 5), "January 5, 2026"),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "December 31, 2026"),
    ],
)
def test_format_date(moment, text):
    assert format_date(moment) == text


def test_headline():
    assert HEADLINE == "Updates are not syncing with QBO"


def test_guidance_is_immutable():
    guidance = guidance_for(IssueType.AUTHORIZATION_EXPIRED)
    with pytest.raises(AttributeError):
        guidance.title = "x"  # type: ignore[misc]


def test_the_domain_module_is_pure():
    import qbo_health.domain.issues as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    for forbidden in ("boto3", "botocore", "pynamodb", "requests", "import os", "datetime.now"):
        assert forbidden not in source
