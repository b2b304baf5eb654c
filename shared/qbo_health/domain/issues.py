"""What to tell the customer about each issue. Pure: wording only, no I/O.

The wording follows the host product's help article "QBO Integration Error Codes", which customers
already know; where our cause is broader than the article's (a lapsed subscription, an authorization that
expired *or was revoked*) the sentence is adapted, not replaced. A subscription that ended (canceled or
expired, which the article does not cover) has its own wording: resubscribe, before Intuit deletes the data.

Each guidance carries the sentence about the automatic disconnect in its own field, ``consequence``, as a
template: notices fill in the deadline date with :meth:`IssueGuidance.consequence_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from qbo_health.domain.model import IssueType

HEADLINE = "Updates are not syncing with QBO"

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_REAUTHORIZE_STEPS = (
    "Click the Reauthorize button. This will open a new window or tab. Sign in to QBO there. "
    "You don't need to repeat the whole integration process. Just sign in and confirm!"
)

_DISCONNECT_GENERIC = (
    "If the issue is not fixed within about 2 weeks of the first error message, the integration "
    "automatically disconnects and you'll have to restart the integration to keep using it."
)
_DISCONNECT_DATED = (
    "If the issue is not fixed by {deadline}, the integration automatically disconnects and you'll have "
    "to restart the integration to keep using it."
)


def format_date(moment: date | datetime) -> str:
    """``2026-01-19`` -> ``"January 19, 2026"`` (locale-independent)."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


@dataclass(frozen=True)
class IssueGuidance:
    issue: IssueType
    title: str
    user_message: str  # what is wrong, in the article's words
    remedy: str  # what to do
    who_can_fix: str
    reauthorize: bool  # whether the notice should offer the Reauthorize button
    consequence: str  # template with ``{deadline}``; use consequence_for()

    def consequence_for(self, deadline: date | datetime | None) -> str:
        """The automatic-disconnect sentence, with the date when one is known."""
        if deadline is None:
            return _DISCONNECT_GENERIC
        return self.consequence.format(deadline=format_date(deadline))


@dataclass(frozen=True)
class ReauthDueGuidance:
    """A warning, not an issue: the 5-year authorization limit is near. Nothing is broken yet."""

    key: str
    title: str
    user_message: str  # template with ``{hard_expiry}``; use message_for()
    remedy: str
    who_can_fix: str
    reauthorize: bool
    consequence: str

    def message_for(self, hard_expiry: date | datetime) -> str:
        return self.user_message.format(hard_expiry=format_date(hard_expiry))


_GUIDANCE: dict[IssueType, IssueGuidance] = {
    IssueType.ADMIN_ACCESS_LOST: IssueGuidance(
        issue=IssueType.ADMIN_ACCESS_LOST,
        title="QBO Admin access lost",
        user_message="The QBO account used to set up the QBO integration is no longer an Admin in QBO.",
        remedy=(
            "Have a team member add you again as an Admin in QBO (you may need to go through the "
            "Reauthorization process afterward). Or, to have another Admin take over the integration: "
            "click the Reauthorize button. This will open a new window or tab. Sign in to QBO there. This is "
            "a specific flow that allows you to change the Admin for the integration. You don't need to "
            "repeat the whole integration process. Just sign in and confirm!"
        ),
        who_can_fix=(
            "The person who set up the integration, once a QBO Admin has made them an Admin again, or any "
            "QBO Admin of the company through Reauthorize."
        ),
        reauthorize=True,
        consequence=_DISCONNECT_DATED,
    ),
    IssueType.SUBSCRIPTION_LAPSED: IssueGuidance(
        issue=IssueType.SUBSCRIPTION_LAPSED,
        title="QBO account suspended",
        user_message=(
            "You missed a payment for your QBO account and QBO has suspended your account (or restricted "
            "it): QBO now only lets the integration read your data, not update it."
        ),
        remedy=(
            "Make a payment on your QBO account. Once the QBO subscription is active again, updates "
            "resume on their own: there is nothing to reauthorize."
        ),
        who_can_fix="Whoever manages billing for the QBO subscription (usually the company's primary Admin).",
        reauthorize=False,
        consequence=_DISCONNECT_DATED,
    ),
    IssueType.SUBSCRIPTION_ENDED: IssueGuidance(
        issue=IssueType.SUBSCRIPTION_ENDED,
        title="QBO subscription ended",
        user_message=(
            "Your QBO subscription has ended or was canceled: QBO now only lets the integration read your "
            "data, not update it."
        ),
        remedy=(
            "Resubscribe to QBO (sign in to QBO and follow its prompts to resubscribe). Don't wait: Intuit "
            "deletes a company's data some time after its subscription ends. Once the QBO subscription is "
            "active again, updates resume on their own: there is nothing to reauthorize."
        ),
        who_can_fix="Whoever manages billing for the QBO subscription (usually the company's primary Admin).",
        reauthorize=False,
        consequence=_DISCONNECT_DATED,
    ),
    IssueType.AUTHORIZATION_EXPIRED: IssueGuidance(
        issue=IssueType.AUTHORIZATION_EXPIRED,
        title="QBO authorization expired",
        user_message=(
            "The authorization QBO gave the integration has expired or was revoked in QBO: for example, "
            "the integration went 100+ days without being used, or someone disconnected the app in QBO."
        ),
        remedy=_REAUTHORIZE_STEPS,
        who_can_fix="The person who set up the integration, or any QBO Admin of the company.",
        reauthorize=True,
        consequence=_DISCONNECT_DATED,
    ),
}

REAUTH_DUE = ReauthDueGuidance(
    key="REAUTH_DUE",
    title="QBO reauthorization due",
    user_message=(
        "QBO allows an integration's authorization to last at most 5 years. The authorization for this "
        "integration ends on {hard_expiry}."
    ),
    remedy="Reauthorize before that date. " + _REAUTHORIZE_STEPS,
    who_can_fix="The person who set up the integration, or any QBO Admin of the company.",
    reauthorize=True,
    consequence=(
        "If it is not reauthorized by then, updates stop syncing with QBO until someone reauthorizes."
    ),
)


def guidance_for(issue_type: IssueType) -> IssueGuidance:
    """The guidance for an issue type (every IssueType has one)."""
    return _GUIDANCE[IssueType(issue_type)]


def all_guidance() -> tuple[IssueGuidance, ...]:
    return tuple(_GUIDANCE[issue] for issue in IssueType)
