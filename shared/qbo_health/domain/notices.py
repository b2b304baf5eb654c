"""What each notice says, in e-mail (HTML and text) and as an event for the host product. Pure.

The e-mails come from Jinja2 templates (autoescaped HTML, plain text) in the connection's language; their
wording about the issue is the status API's (``domain.issues``). Every value that came from outside (names,
e-mail addresses, ids) is escaped in the HTML part.
Notices never carry a token or a secret: they are built from the connection's public fields only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache, partial
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from qbo_health.domain.issues import IssueGuidance, format_date, guidance_for, headline, reauth_due_for
from qbo_health.domain.model import IssueType
from qbo_health.i18n import N_, SOURCE_LOCALE, gettext, translations

NOTICE_NAMESPACE = uuid.UUID("5b0c3c4e-2f7a-4d5e-9a61-0f3f2b8d7c11")
EVENT_SOURCE = "qbo-connection-health"


class ClaimResult(StrEnum):
    CLAIMED = "CLAIMED"  # ours to send now
    ALREADY_SENT = "ALREADY_SENT"  # someone sent it: the stage is done
    IN_FLIGHT = "IN_FLIGHT"  # someone claimed it moments ago: leave it to them, look again next run


class Channel(StrEnum):
    """Each channel of a notice is claimed and recorded on its own: a failure on one never repeats the other."""

    EVENT = "EVENT"
    EMAIL = "EMAIL"


class ChannelStatus(StrEnum):
    SENT = "SENT"
    # The e-mail service refused the recipients for good (or none was deliverable): nothing to retry.
    UNDELIVERABLE = "UNDELIVERABLE"


# What a contact address must look like to be stored or sent to. One rule for the API and the sender: an
# address SES would refuse (``owner-at-example.com``) is refused at the door, and one stored before this rule
# is skipped at send time instead of failing the whole notice.
EMAIL_PATTERN = r"^[^@\s<>\"',;]{1,64}@[^@\s<>\"',;]+\.[^@\s<>\"',;]{1,63}$"
EMAIL_MAX_LENGTH = 254  # RFC 5321's limit on a path
_EMAIL = re.compile(EMAIL_PATTERN)


def deliverable(contacts: tuple[str, ...] | list[str]) -> list[str]:
    """The contacts an e-mail can go to (well-formed addresses only)."""
    return [address for address in contacts if len(address) <= EMAIL_MAX_LENGTH and _EMAIL.match(address)]


class SendResult(StrEnum):
    SENT = "SENT"
    ALREADY_SENT = "ALREADY_SENT"
    IN_FLIGHT = "IN_FLIGHT"
    DRY_RUN = "DRY_RUN"


class NoticeKind(StrEnum):
    NOTICE = "NOTICE"
    REMINDER_1 = "REMINDER_1"
    REMINDER_2 = "REMINDER_2"
    FINAL_WARNING = "FINAL_WARNING"
    DISCONNECTED = "DISCONNECTED"
    RESTORED = "RESTORED"
    REAUTH_DUE = "REAUTH_DUE"


DETAIL_TYPES: dict[NoticeKind, str] = {
    NoticeKind.NOTICE: "ConnectionNeedsAttention",
    NoticeKind.REMINDER_1: "ConnectionReminder",
    NoticeKind.REMINDER_2: "ConnectionReminder",
    NoticeKind.FINAL_WARNING: "ConnectionFinalWarning",
    NoticeKind.DISCONNECTED: "ConnectionDisconnected",
    NoticeKind.RESTORED: "ConnectionRestored",
    NoticeKind.REAUTH_DUE: "ReauthDue",
}


@dataclass(frozen=True)
class Brand:
    """How the product presents itself in notices (``BrandingSettings`` at cold start, per-tenant overrides)."""

    product_name: str = "QBO Connection Health"
    support_url: str | None = None
    support_email: str | None = None
    logo_url: str | None = None
    accent_color: str = "#2E7D32"  # validated as #RRGGBB: it lands in style attributes
    sender_name: str | None = None


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    connection_id: str
    tenant_id: str
    episode_id: str
    time: datetime
    issue: IssueType | None = None
    deadline: datetime | None = None
    days_left: int | None = None
    reconnect_url: str | None = None
    hard_expires_at: datetime | None = None
    note: str | None = None  # a per-issue addition from the escalation policy
    company_name: str | None = None  # QuickBooks' CompanyName (text from outside: escaped when rendered)
    locale: str = SOURCE_LOCALE
    brand: Brand = field(default_factory=Brand)
    # The QuickBooks user who authorized the connection, when this notice goes to them too (text from outside).
    authorizer_email: str | None = None

    @property
    def notice_id(self) -> str:
        """Stable per (connection, episode, kind): a consumer drops repeats by this id."""
        return str(uuid.uuid5(NOTICE_NAMESPACE, f"{self.connection_id}|{self.episode_id}|{self.kind}"))


@dataclass(frozen=True)
class Email:
    subject: str
    html: str
    text: str


def event_detail(notice: Notice) -> dict[str, Any]:
    return {
        "event_id": notice.notice_id,
        "time": _iso(notice.time),
        "kind": notice.kind.value,
        "connection_id": notice.connection_id,
        "tenant_id": notice.tenant_id,
        "company_name": notice.company_name,
        "episode_id": notice.episode_id,
        "issue": notice.issue.value if notice.issue else None,
        "deadline": _iso(notice.deadline) if notice.deadline else None,
        "days_left": notice.days_left,
        "reconnect_url": notice.reconnect_url,
    }


def render_email(notice: Notice, *, to_authorizer: bool = False) -> Email:
    """The notice as an e-mail in the connection's language and the product's brand (HTML and text from the
    templates in ``qbo_health/templates/email``; every value from outside is escaped in the HTML part).

    ``to_authorizer``: the copy for the QuickBooks user who authorized the connection, greeted as the one who
    set it up (the article's remedy for lost Admin access speaks to exactly them)."""
    context = _context(notice, to_authorizer)
    name = f"email/{notice.kind.value.lower()}"
    html_part = _environment(notice.locale).get_template(f"{name}.html").render(context)
    text_part = _environment(notice.locale).get_template(f"{name}.txt").render(context)
    return Email(subject=context["subject"], html=html_part, text=_tidy(text_part))


def offers_reconnect(kind: NoticeKind, issue: IssueType | None) -> bool:
    """Whether a notice carries the reconnect link: only where reauthorizing fixes something (never for a
    lapsed or ended subscription: paying, not signing in, fixes those), as the status API's ``reauthorize``."""
    if kind is NoticeKind.REAUTH_DUE:
        return True
    if kind in (NoticeKind.RESTORED, NoticeKind.DISCONNECTED) or issue is None:
        return False
    return guidance_for(issue).reauthorize


def _context(notice: Notice, to_authorizer: bool = False) -> dict[str, Any]:
    locale = notice.locale
    text = partial(gettext, locale=locale)
    brand = notice.brand
    company = notice.company_name or text(N_("your QuickBooks company"))
    guidance = guidance_for(notice.issue, locale) if notice.issue else None
    reauth = reauth_due_for(locale)
    deadline = notice.deadline or notice.time
    subject, heading = _subject_and_heading(notice, company, guidance, text)
    who_can_fix = reauth.who_can_fix if notice.kind is NoticeKind.REAUTH_DUE else None
    if guidance is not None:
        who_can_fix = guidance.who_can_fix
    support_href, support_label = _support(brand)
    why = N_("You receive this e-mail because your address is a contact for %(company)s in %(product)s.")
    if to_authorizer:
        why = N_(
            "You receive this e-mail because you connected %(company)s to %(product)s as %(authorizer)s: "
            "QuickBooks knows you as the person who set up the integration."
        )
    return {
        "lang": locale,
        "subject": subject,
        "heading": heading,
        "preheader": guidance.user_message if guidance else heading,
        "greeting": text(N_("Hello,")),
        "brand": brand,
        "company": company,
        "guidance": guidance,
        "reauth": reauth,
        "who_can_fix": who_can_fix,
        "note": notice.note,
        "consequence": guidance.consequence_for(notice.deadline) if guidance else None,
        "days_left": notice.days_left,
        "deadline_on": format_date(deadline, locale),
        "sent_on": format_date(notice.time, locale),
        "hard_expires_at": notice.hard_expires_at or notice.time,
        "reconnect_url": notice.reconnect_url if offers_reconnect(notice.kind, notice.issue) else None,
        "why_you_get_this": text(why)
        % {"company": company, "product": brand.product_name, "authorizer": notice.authorizer_email or ""},
        "authorizer": notice.authorizer_email,
        "to_authorizer": to_authorizer,
        "support_href": support_href,
        "support_label": support_label,
    }


_ISSUE_SUBJECTS = {
    NoticeKind.NOTICE: N_("Action needed: QBO updates for %(company)s are not syncing (%(title)s)"),
    NoticeKind.REMINDER_1: N_("Reminder: QBO updates for %(company)s are not syncing (%(title)s)"),
    NoticeKind.REMINDER_2: N_("Reminder: QBO updates for %(company)s are not syncing (%(title)s)"),
    NoticeKind.FINAL_WARNING: N_("Final warning: QBO updates for %(company)s are not syncing (%(title)s)"),
}
_OTHER_SUBJECTS = {
    NoticeKind.RESTORED: N_("QBO connection restored for %(company)s"),
    NoticeKind.DISCONNECTED: N_("QBO integration disconnected for %(company)s"),
    NoticeKind.REAUTH_DUE: N_("Please reauthorize the QBO connection for %(company)s soon"),
}


def _subject_and_heading(
    notice: Notice, company: str, guidance: IssueGuidance | None, text: Callable[[str], str]
) -> tuple[str, str]:
    """Subjects keep "QBO" as written and name the company; the heading says the same in the mail."""
    if notice.kind in _ISSUE_SUBJECTS:
        if guidance is None:
            raise ValueError(f"{notice.kind} needs an issue")
        subject = text(_ISSUE_SUBJECTS[notice.kind]) % {"company": company, "title": guidance.title}
        return subject, headline(notice.locale)
    subject = text(_OTHER_SUBJECTS[notice.kind]) % {"company": company}
    return subject, subject


def _support(brand: Brand) -> tuple[str | None, str | None]:
    if brand.support_url:
        return brand.support_url, brand.support_url
    if brand.support_email:
        return f"mailto:{brand.support_email}", brand.support_email
    return None, None


def _tidy(text: str) -> str:
    """At most one blank line in a row, and one line break at the end."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy) + "\n"


@cache
def _environment(locale: str) -> Environment:
    """One template environment per language (templates compile once per container, on first use)."""
    environment = Environment(
        loader=PackageLoader("qbo_health", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    catalogue = translations(locale)
    install = getattr(environment, "install_gettext_callables")  # noqa: B009 - added by the i18n extension
    install(gettext=catalogue.ugettext, ngettext=catalogue.ungettext, newstyle=True)
    return environment


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
