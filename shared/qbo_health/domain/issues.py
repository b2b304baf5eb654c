"""What to tell the customer about each issue. Pure: wording only, no I/O.

The wording follows the host product's help article "QBO Integration Error Codes", which customers
already know; where our cause is broader than the article's (a lapsed subscription, an authorization that
expired *or was revoked*) the sentence is adapted, not replaced. A subscription that ended (canceled or
expired, which the article does not cover) has its own wording: resubscribe, before Intuit deletes the data.

Each guidance carries the sentence about the automatic disconnect in its own field, ``consequence``, as a
template: notices fill in the deadline date with :meth:`IssueGuidance.consequence_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

from qbo_health.domain.model import IssueType
from qbo_health.i18n import N_, SOURCE_LOCALE, gettext, long_date

HEADLINE = N_("Updates are not syncing with QBO")

_REAUTHORIZE_STEPS = N_(
    "Click the Reauthorize button. This will open a new window or tab. Sign in to QBO there. "
    "You don't need to repeat the whole integration process. Just sign in and confirm!"
)

_DISCONNECT_GENERIC = N_(
    "If the issue is not fixed within about 2 weeks of the first error message, the integration "
    "automatically disconnects and you'll have to restart the integration to keep using it."
)
_DISCONNECT_DATED = N_(
    "If the issue is not fixed by {deadline}, the integration automatically disconnects and you'll have "
    "to restart the integration to keep using it."
)


def format_date(moment: date | datetime, locale: str = SOURCE_LOCALE) -> str:
    """``2026-01-19`` -> ``"January 19, 2026"`` in en-US; each locale's own long date otherwise."""
    return long_date(moment, locale)


def headline(locale: str = SOURCE_LOCALE) -> str:
    return gettext(HEADLINE, locale)


@dataclass(frozen=True)
class IssueGuidance:
    issue: IssueType
    title: str
    user_message: str  # what is wrong, in the article's words
    remedy: str  # what to do
    who_can_fix: str
    reauthorize: bool  # whether the notice should offer the Reauthorize button
    consequence: str  # template with ``{deadline}``; use consequence_for()
    locale: str = SOURCE_LOCALE  # the language of the texts above

    def consequence_for(self, deadline: date | datetime | None) -> str:
        """The automatic-disconnect sentence, with the date when one is known."""
        if deadline is None:
            return gettext(_DISCONNECT_GENERIC, self.locale)
        return self.consequence.format(deadline=format_date(deadline, self.locale))


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
    locale: str = SOURCE_LOCALE

    def message_for(self, hard_expiry: date | datetime) -> str:
        return self.user_message.format(hard_expiry=format_date(hard_expiry, self.locale))


_GUIDANCE: dict[IssueType, IssueGuidance] = {
    IssueType.ADMIN_ACCESS_LOST: IssueGuidance(
        issue=IssueType.ADMIN_ACCESS_LOST,
        title=N_("QBO Admin access lost"),
        user_message=N_("The QBO account used to set up the QBO integration is no longer an Admin in QBO."),
        remedy=N_(
            "Have a team member add you again as an Admin in QBO (you may need to go through the "
            "Reauthorization process afterward). Or, to have another Admin take over the integration: "
            "click the Reauthorize button. This will open a new window or tab. Sign in to QBO there. This is "
            "a specific flow that allows you to change the Admin for the integration. You don't need to "
            "repeat the whole integration process. Just sign in and confirm!"
        ),
        who_can_fix=N_(
            "The person who set up the integration, once a QBO Admin has made them an Admin again, or any "
            "QBO Admin of the company through Reauthorize."
        ),
        reauthorize=True,
        consequence=_DISCONNECT_DATED,
    ),
    IssueType.SUBSCRIPTION_LAPSED: IssueGuidance(
        issue=IssueType.SUBSCRIPTION_LAPSED,
        title=N_("QBO account suspended"),
        user_message=N_(
            "You missed a payment for your QBO account and QBO has suspended your account (or restricted "
            "it): QBO now only lets the integration read your data, not update it."
        ),
        remedy=N_(
            "Make a payment on your QBO account. Once the QBO subscription is active again, updates "
            "resume on their own: there is nothing to reauthorize."
        ),
        who_can_fix=N_(
            "Whoever manages billing for the QBO subscription (usually the company's primary Admin)."
        ),
        reauthorize=False,
        consequence=_DISCONNECT_DATED,
    ),
    IssueType.SUBSCRIPTION_ENDED: IssueGuidance(
        issue=IssueType.SUBSCRIPTION_ENDED,
        title=N_("QBO subscription ended"),
        user_message=N_(
            "Your QBO subscription has ended or was canceled: QBO now only lets the integration read your "
            "data, not update it."
        ),
        remedy=N_(
            "Resubscribe to QBO (sign in to QBO and follow its prompts to resubscribe). Don't wait: Intuit "
            "deletes a company's data some time after its subscription ends. Once the QBO subscription is "
            "active again, updates resume on their own: there is nothing to reauthorize."
        ),
        who_can_fix=N_(
            "Whoever manages billing for the QBO subscription (usually the company's primary Admin)."
        ),
        reauthorize=False,
        consequence=_DISCONNECT_DATED,
    ),
    IssueType.AUTHORIZATION_EXPIRED: IssueGuidance(
        issue=IssueType.AUTHORIZATION_EXPIRED,
        title=N_("QBO authorization expired"),
        user_message=N_(
            "The authorization QBO gave the integration has expired or was revoked in QBO: for example, "
            "the integration went 100+ days without being used, or someone disconnected the app in QBO."
        ),
        remedy=_REAUTHORIZE_STEPS,
        who_can_fix=N_("The person who set up the integration, or any QBO Admin of the company."),
        reauthorize=True,
        consequence=_DISCONNECT_DATED,
    ),
}

REAUTH_DUE = ReauthDueGuidance(
    key="REAUTH_DUE",
    title=N_("QBO reauthorization due"),
    user_message=N_(
        "QBO allows an integration's authorization to last at most 5 years. The authorization for this "
        "integration ends on {hard_expiry}."
    ),
    remedy=N_(
        "Reauthorize before that date. Click the Reauthorize button. This will open a new window or tab. "
        "Sign in to QBO there. You don't need to repeat the whole integration process. Just sign in and confirm!"
    ),
    who_can_fix=N_("The person who set up the integration, or any QBO Admin of the company."),
    reauthorize=True,
    consequence=N_(
        "If it is not reauthorized by then, updates stop syncing with QBO until someone reauthorizes."
    ),
)


def guidance_for(issue_type: IssueType, locale: str = SOURCE_LOCALE) -> IssueGuidance:
    """The guidance for an issue type (every IssueType has one), in ``locale``: the one source of wording
    for notices, the status API and ops."""
    guidance = _GUIDANCE[IssueType(issue_type)]
    if locale == SOURCE_LOCALE:
        return guidance
    text = _translator(locale)
    return replace(
        guidance,
        title=text(guidance.title),
        user_message=text(guidance.user_message),
        remedy=text(guidance.remedy),
        who_can_fix=text(guidance.who_can_fix),
        consequence=text(guidance.consequence),
        locale=locale,
    )


def reauth_due_for(locale: str = SOURCE_LOCALE) -> ReauthDueGuidance:
    """The 5-year warning's wording in ``locale``."""
    text = _translator(locale)
    return replace(
        REAUTH_DUE,
        title=text(REAUTH_DUE.title),
        user_message=text(REAUTH_DUE.user_message),
        remedy=text(REAUTH_DUE.remedy),
        who_can_fix=text(REAUTH_DUE.who_can_fix),
        consequence=text(REAUTH_DUE.consequence),
        locale=locale,
    )


def all_guidance(locale: str = SOURCE_LOCALE) -> tuple[IssueGuidance, ...]:
    return tuple(guidance_for(issue, locale) for issue in IssueType)


def _translator(locale: str) -> Callable[[str], str]:
    return lambda message: gettext(message, locale)
