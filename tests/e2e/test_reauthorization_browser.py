"""Reauthorization in a real browser: Debian's headless Chromium, driven by Playwright, against the local front
and the Intuit simulator's consent page. `make e2e-deps` installs Chromium; without it these tests skip with
the reason shown in the summary (never silently)."""

from __future__ import annotations

import pytest

from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.domain.model import ConnectionState
from tests.e2e.scenarios import confirm_admin_issue

pytestmark = pytest.mark.e2e


def test_a_different_admin_reconnects_in_the_browser(stack, api_client, page):
    seeded = seed_connection(stack, "conn-1")
    confirm_admin_issue(stack, api_client, seeded)
    other = stack.intuit.control.add_user(seeded.realm_id, email="new.admin@example.com", admin=True)
    link = api_client.status("conn-1").reconnect_url

    page.goto(link)
    page.wait_for_selector("#connect")  # the simulator's consent page
    page.select_option("#company", seeded.realm_id)
    page.select_option("#user", other)
    page.click("#connect")
    page.wait_for_selector("main#connected")

    assert "QuickBooks connected" in page.inner_text("h1")
    assert "new.admin@example.com" in page.inner_text("main")
    connection = wiring.connection_store().get("conn-1")
    assert connection.state is ConnectionState.HEALTHY and connection.issue is None
    assert connection.authorized_by is not None and connection.authorized_by.user_id == other
    assert connection.authorized_by.email == "new.admin@example.com"


def test_cancel_at_intuit_shows_the_failure_page_and_changes_nothing(stack, api_client, page):
    seed_connection(stack, "conn-1")
    before = wiring.connection_store().get("conn-1")

    page.goto(api_client.status("conn-1").reconnect_url)
    page.wait_for_selector("#cancel")
    page.click("#cancel")
    page.wait_for_selector("main#authorization_denied")

    assert "QuickBooks was not connected" in page.inner_text("h1")
    assert "Nothing was changed" in page.inner_text("main")
    assert wiring.connection_store().get("conn-1") == before
