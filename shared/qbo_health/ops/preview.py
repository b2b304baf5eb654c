"""A notice as a customer would get it, rendered from a sample connection: ``preview-notice`` writes it, the
browser test screenshots it. Nothing is sent and nothing is read from AWS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from qbo_health.domain.model import IssueType
from qbo_health.domain.notices import Brand, Email, Notice, NoticeKind, offers_reconnect, render_email

SAMPLE_COMPANY = "Craig's Design and Landscaping Services"
SAMPLE_RECONNECT_URL = "https://connect.example.com/reconnect/eyJjIjoiY29ubi00MiIsImkiOjE3Njc1OTI4MDB9.c2lnbmF0dXJlLW9mLXRoZS1saW5r"
# The day of the escalation each kind goes out on (the default schedule: 0, 3, 7, 12, 14).
_DAY = {
    NoticeKind.NOTICE: 0,
    NoticeKind.REMINDER_1: 3,
    NoticeKind.REMINDER_2: 7,
    NoticeKind.FINAL_WARNING: 12,
    NoticeKind.DISCONNECTED: 14,
    NoticeKind.RESTORED: 5,
    NoticeKind.REAUTH_DUE: 0,
}


@dataclass(frozen=True)
class Preview:
    email: Email
    html_path: Path
    text_path: Path


def sample_notice(
    kind: NoticeKind,
    issue: IssueType,
    locale: str,
    brand: Brand,
    opened_at: datetime,
    *,
    company: str = SAMPLE_COMPANY,
) -> Notice:
    deadline = opened_at + timedelta(days=14)
    sent = opened_at + timedelta(days=_DAY[kind])
    escalating = kind in (
        NoticeKind.NOTICE,
        NoticeKind.REMINDER_1,
        NoticeKind.REMINDER_2,
        NoticeKind.FINAL_WARNING,
    )
    return Notice(
        kind=kind,
        connection_id="conn-42",
        tenant_id="tenant-7",
        episode_id="preview",
        time=sent,
        issue=issue,
        deadline=deadline if escalating else None,
        days_left=(deadline - sent).days if escalating else None,
        reconnect_url=SAMPLE_RECONNECT_URL if offers_reconnect(kind, issue) else None,
        hard_expires_at=sent + timedelta(days=30),
        company_name=company,
        locale=locale,
        brand=brand,
    )


def write_preview(notice: Notice, folder: Path) -> Preview:
    """``<kind>-<issue>-<locale>.html`` and ``.txt`` (with its subject on top) in ``folder``."""
    email = render_email(notice)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{notice.kind.value.lower()}-{(notice.issue or 'none').lower()}-{notice.locale}"
    html_path, text_path = folder / f"{stem}.html", folder / f"{stem}.txt"
    html_path.write_text(email.html, encoding="utf-8")
    text_path.write_text(f"Subject: {email.subject}\n\n{email.text}", encoding="utf-8")
    return Preview(email, html_path, text_path)
