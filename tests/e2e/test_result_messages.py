"""The result page tells the product's window the outcome only when the product's origin is configured
(ProductOrigin): a message to ``*`` would reach whatever page opened the link. Real Chromium: the product's
page is served at its own origin (Playwright answers for it), opens the reconnect link in a popup, and
records every message it receives."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from local.seed import seed_connection
from qbo_health import wiring

pytestmark = pytest.mark.e2e

PRODUCT = "http://product.example.test"
PRODUCT_PAGE = """<!doctype html><title>Product</title><script>
window.received = [];
window.addEventListener("message", function (event) {
  window.received.push({origin: event.origin, data: event.data});
});
</script>"""


@pytest.fixture
def product_origin(monkeypatch) -> Iterator[Callable[[str | None], None]]:
    def configure(origin: str | None) -> None:
        if origin is None:
            monkeypatch.delenv("PRODUCT_ORIGIN", raising=False)
        else:
            monkeypatch.setenv("PRODUCT_ORIGIN", origin)
        wiring.reset()

    yield configure
    monkeypatch.undo()
    wiring.reset()


def reconnect_in_popup(page, link, realm_id, user_id):
    page.route(
        f"{PRODUCT}/**", lambda route: route.fulfill(status=200, content_type="text/html", body=PRODUCT_PAGE)
    )
    page.goto(f"{PRODUCT}/settings")
    with page.context.expect_page() as opened:
        page.evaluate("link => window.open(link, 'qbo')", link)
    popup = opened.value
    popup.wait_for_selector("#connect")  # the simulator's consent page
    popup.select_option("#company", realm_id)
    popup.select_option("#user", user_id)
    popup.click("#connect")
    popup.wait_for_selector("main#connected")
    return popup


def test_without_a_product_origin_the_page_posts_nothing(stack, api_client, page, product_origin):
    product_origin(None)
    seeded = seed_connection(stack, "conn-1")

    popup = reconnect_in_popup(
        page, api_client.status("conn-1").reconnect_url, seeded.realm_id, seeded.user_id
    )

    assert "QuickBooks connected" in popup.inner_text("h1")
    assert popup.locator("script").count() == 0
    # Read after one more task turn in the product's window, so a message already queued would be counted.
    assert page.evaluate("() => new Promise(done => setTimeout(() => done(window.received)))") == []


def test_with_a_product_origin_only_that_origin_hears_the_outcome(stack, api_client, page, product_origin):
    product_origin(PRODUCT)
    seeded = seed_connection(stack, "conn-1")

    reconnect_in_popup(page, api_client.status("conn-1").reconnect_url, seeded.realm_id, seeded.user_id)

    page.wait_for_function("window.received.length > 0")
    assert page.evaluate("window.received") == [
        {
            "origin": api_client.base_url,
            "data": {"type": "qbo-connection", "connectionId": "conn-1", "status": "connected"},
        }
    ]


def test_a_reload_after_success_still_says_connected(stack, api_client, page, product_origin):
    """The user reloads the result page (the callback URL again): the sign-in is over and its state used, but
    the connection holds the grant it produced, so the page says connected and tells the product so again."""
    product_origin(PRODUCT)
    seeded = seed_connection(stack, "conn-1")
    popup = reconnect_in_popup(
        page, api_client.status("conn-1").reconnect_url, seeded.realm_id, seeded.user_id
    )
    page.wait_for_function("window.received.length > 0")

    popup.reload()
    popup.wait_for_selector("main[data-status]")

    assert popup.locator("main").get_attribute("id") == "connected"
    assert "QuickBooks connected" in popup.inner_text("h1")
    page.wait_for_function("window.received.length > 1")
    statuses = [message["data"]["status"] for message in page.evaluate("window.received")]
    assert statuses == ["connected", "connected"]
    assert stack.intuit.control.stats()["code_grants"] == 1
