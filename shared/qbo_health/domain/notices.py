"""What each notice says, in e-mail (HTML and text) and as an event for the host product. Pure.

Every value that came from outside (names, e-mail addresses, ids) is HTML-escaped in the HTML part.
Notices never carry a token or a secret: they are built from the connection's public fields only.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from qbo_health.domain.issues import HEADLINE, REAUTH_DUE, format_date, guidance_for
from qbo_health.domain.model import IssueType

NOTICE_NAMESPACE = uuid.UUID("5b0c3c4e-2f7a-4d5e-9a61-0f3f2b8d7c11")
EVENT_SOURCE = "qbo-connection-health"


class ClaimResult(StrEnum):
    CLAIMED = "CLAIMED"  # ours to send now
    ALREADY_SENT = "ALREADY_SENT"  # someone sent it: the stage is done
    IN_FLIGHT = "IN_FLIGHT"  # someone claimed it moments ago: leave it to them, look again next run


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


def render_email(notice: Notice) -> Email:
    paragraphs, subject = _wording(notice)
    if notice.reconnect_url:
        paragraphs.append(("Reauthorize: ", notice.reconnect_url))
    text_lines = [f"{lead}{body}" for lead, body in paragraphs]
    text_lines.append(f"Notice id: {notice.notice_id}")
    html_lines = [_html_paragraph(lead, body, notice.reconnect_url) for lead, body in paragraphs]
    html_lines.append(f'<p style="color:#666;font-size:small">Notice id: {html.escape(notice.notice_id)}</p>')
    return Email(
        subject=subject,
        html="<html><body>" + "".join(html_lines) + "</body></html>",
        text="\n\n".join(text_lines) + "\n",
    )


def _wording(notice: Notice) -> tuple[list[tuple[str, str]], str]:
    company = f"connection {notice.connection_id}"
    if notice.kind is NoticeKind.RESTORED:
        return [("", f"Good news: QBO updates for {company} are syncing again. Nothing more to do.")], (
            "QBO connection restored"
        )
    if notice.kind is NoticeKind.REAUTH_DUE:
        expiry = notice.hard_expires_at or notice.time
        return [("", REAUTH_DUE.message_for(expiry))], "Please reauthorize your QBO connection soon"
    if notice.kind is NoticeKind.DISCONNECTED:
        lines = [
            (
                "",
                f"The QBO integration for {company} was disconnected because the problem was not fixed in time.",
            ),
            ("", "To keep using it, restart the integration and sign in to QBO again."),
        ]
        return lines, "QBO integration disconnected"
    if notice.issue is None:
        raise ValueError(f"{notice.kind} needs an issue")
    guidance = guidance_for(notice.issue)
    lines = [
        ("", f"{HEADLINE}: {guidance.user_message}"),
        ("What to do: ", guidance.remedy),
        ("Who can fix it: ", guidance.who_can_fix),
    ]
    if notice.note:
        lines.append(("", notice.note))
    lines.append(("", guidance.consequence_for(notice.deadline)))
    if notice.days_left is not None:
        lines.append(
            ("Days left: ", f"{notice.days_left} (until {format_date(notice.deadline or notice.time)})")
        )
    prefix = {
        NoticeKind.NOTICE: "Action needed",
        NoticeKind.REMINDER_1: "Reminder",
        NoticeKind.REMINDER_2: "Reminder",
        NoticeKind.FINAL_WARNING: "Final warning",
    }[notice.kind]
    return lines, f"{prefix}: {HEADLINE.lower()} ({guidance.title})"


def _html_paragraph(lead: str, body: str, link: str | None) -> str:
    if link and body == link:
        safe = html.escape(link, quote=True)
        return f'<p><strong>{html.escape(lead)}</strong><a href="{safe}">{safe}</a></p>'
    strong = f"<strong>{html.escape(lead)}</strong>" if lead else ""
    return f"<p>{strong}{html.escape(body)}</p>"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
