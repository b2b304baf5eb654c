"""Each notice kind rendered in headless Chromium at phone and desktop widths: the button shows, nothing runs
off the side, names from outside stay text. With NOTICE_SCREENSHOTS=1, screenshots land in
.artifacts/notice-screenshots/ for a look (a full-page screenshot each is most of a case's time).
`make e2e-deps` installs Chromium; without it these tests skip."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qbo_health.domain.model import IssueType
from qbo_health.domain.notices import Brand, NoticeKind, offers_reconnect, render_email
from qbo_health.ops.preview import SAMPLE_RECONNECT_URL, sample_notice

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "notice-screenshots"
WIDTHS = {"phone": 375, "desktop": 1024}
OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BRAND = Brand(product_name="Acme Books", support_email="help@acme-books.example", accent_color="#0B6BCB")
# The longest company name a customer might have, with markup in it that must stay text.
COMPANY = "Établissements Brière-Vandersteenhoven & Fils <script>window.ran=1</script> Inc."
CASES = [(kind, IssueType.ADMIN_ACCESS_LOST, "en-US") for kind in NoticeKind] + [
    (NoticeKind.FINAL_WARNING, IssueType.ADMIN_ACCESS_LOST, "fr-CA"),
    (NoticeKind.REMINDER_1, IssueType.SUBSCRIPTION_LAPSED, "es"),
]


@pytest.mark.parametrize("width_name", list(WIDTHS))
@pytest.mark.parametrize(("kind", "issue", "locale"), CASES, ids=lambda value: str(value))
def test_a_notice_fits_the_screen_and_its_button_shows(browser, kind, issue, locale, width_name):
    notice = sample_notice(kind, issue, locale, BRAND, OPENED, company=COMPANY)
    email = render_email(notice)
    context = browser.new_context(viewport={"width": WIDTHS[width_name], "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.set_content(email.html, wait_until="load")
        if os.environ.get("NOTICE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(
                    SCREENSHOTS / f"{kind.value.lower()}-{issue.value.lower()}-{locale}-{width_name}.png"
                ),
                full_page=True,
            )

        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px run off the side"
        assert page.evaluate("window.ran === undefined") and not dialogs  # the name stayed text
        assert page.get_by_text("Établissements Brière-Vandersteenhoven", exact=False).first.is_visible()
        button = page.locator("a.button")
        if offers_reconnect(kind, issue):
            assert button.count() == 1 and button.is_visible()
            assert button.get_attribute("href") == SAMPLE_RECONNECT_URL
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTHS[width_name]
            assert box["height"] >= 40  # a thumb-sized target
            assert page.get_by_text(SAMPLE_RECONNECT_URL).is_visible()  # the URL written out below it
        else:
            assert button.count() == 0 and SAMPLE_RECONNECT_URL not in email.html
    finally:
        context.close()
