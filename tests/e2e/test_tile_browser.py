"""The QBO tile in a real browser: Debian's headless Chromium, driven by Playwright, on the demo page of the
local stack (local/tile_demo.py: the product's page at an origin of its own, a strict CSP, the script loaded
from the API with its SRI hash, tokens minted by the product's backend with the Python client).

The full loop: a connection that lost its admin shows the problem, the remedy and the days left; Reauthorize
opens the simulator's consent page in a new window; the window closes and the tile shows healthy. Then each
design, axe-core's verdict (0 violations; axe-core from npm, `make tile-node-deps`), escaping, the token's
renewal and the messages the tile must ignore. `TILE_SCREENSHOTS=docs` (`make tile-screenshots`) saves the
designs' screenshots into docs/ (docs/tile.md shows them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from botocore.credentials import Credentials

from local.seed import seed_connection
from local.stack import free_port
from local.tile_demo import TileDemo
from qbo_health import wiring
from qbo_health.client import QboHealthClient
from qbo_health.domain.model import ConnectionState
from tests.e2e.scenarios import confirm_admin_issue

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "tile_node" / "node_modules" / "axe-core" / "axe.min.js"
TILE = "qbo-connection-tile"
DESKTOP = {"width": 1000, "height": 900}
PHONE = {"width": 390, "height": 844}
HOSTILE_NAME = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">Acme & Sons'


@pytest.fixture(scope="session")
def _tile_demo(_api_front) -> Iterator[TileDemo]:
    client = QboHealthClient(
        _api_front.base_url, region="us-east-1", credentials=Credentials("testing", "testing", "testing")
    )
    demo = TileDemo(_api_front.base_url, client, port=free_port()).start()
    yield demo
    demo.stop()


@pytest.fixture
def demo(stack, api_front, _tile_demo, monkeypatch) -> Iterator[TileDemo]:
    """The demo page, its origin the stack's ProductOrigin (CORS and the result pages' messages)."""
    monkeypatch.setenv("PRODUCT_ORIGIN", _tile_demo.origin)
    wiring.reset()
    yield _tile_demo
    monkeypatch.undo()
    wiring.reset()


@pytest.fixture
def context_options():
    return {"viewport": DESKTOP}


@pytest.fixture
def page(browser, context_options):
    context = browser.new_context(**context_options)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    # Any Content-Security-Policy violation on the product's page is recorded (the page has a strict one).
    tab.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.cspViolations.push(e.violatedDirective));"
    )
    yield tab
    context.close()


def seed_design(stack, api_client, design, connection_id=None, company="Acme Books Ltd"):
    """A connection in the state each design shows."""
    connection_id = connection_id or f"{design}-1"
    if design == "pending":
        api_client.register(tenant_id="tenant-1", connection_id=connection_id)
        return connection_id
    seeded = seed_connection(stack, connection_id, company_name=company)
    if design == "attention":
        confirm_admin_issue(stack, api_client, seeded)
    elif design == "disconnected":
        api_client.disconnect(connection_id)
    return connection_id


def open_tile(page, demo, connection_id, design):
    page.goto(demo.url_for(connection_id))
    page.wait_for_selector(f'{TILE}[design="{design}"]')
    return page.locator(TILE)


def shadow_text(page, selector):
    return page.evaluate(
        "([tag, selector]) => { const node = document.querySelector(tag).shadowRoot.querySelector(selector);"
        " return node ? node.textContent : null; }",
        [TILE, selector],
    )


def live_region(page):
    return shadow_text(page, "[role=status]")


def screenshot(tile, name, tmp_path):
    tile.screenshot(path=str(tmp_path / name))
    if os.environ.get("TILE_SCREENSHOTS"):
        tile.screenshot(path=str(ROOT / os.environ["TILE_SCREENSHOTS"] / name))


def axe_violations(page):
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run `make tile-node-deps` (npm ci in tests/tile_node)")
    # Evaluated by the driver, which the page's strict CSP does not govern (a <script> tag would be refused).
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    return page.evaluate(
        "async () => (await axe.run(document)).violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))"
    )


# ------------------------------------------------------------------ the full loop


def test_the_tile_shows_the_problem_and_a_reauthorization_makes_it_healthy(stack, api_client, demo, page):
    seeded = seed_connection(stack, "conn-1", company_name="Acme Books Ltd")
    confirm_admin_issue(stack, api_client, seeded)
    other = stack.intuit.control.add_user(seeded.realm_id, email="new.admin@example.com", admin=True)

    tile = open_tile(page, demo, "conn-1", "attention")
    assert tile.get_by_role("heading", name="Updates are not syncing with QBO").is_visible()
    text = tile.locator("section").inner_text()
    assert "Acme Books Ltd" in text and "QBO Admin access lost" in text
    assert "Have a team member add you again as an Admin in QBO" in text  # the remedy
    assert "Who can fix it" in text and "any QBO Admin of the company through Reauthorize" in text
    assert "14 days left, until January 20, 2026." in text

    # Keyboard only: focus the button, press Enter; the reconnect flow opens in a new window.
    button = tile.get_by_role("button", name="Reauthorize (opens a new window)")
    button.focus()
    with page.context.expect_page() as opened:
        page.keyboard.press("Enter")
    popup = opened.value
    popup.wait_for_selector("#connect")  # the Intuit simulator's consent page
    assert "Finish signing in to QuickBooks in the new window." in live_region(page)
    popup.select_option("#company", seeded.realm_id)
    popup.select_option("#user", other)
    popup.click("#connect")
    popup.wait_for_event("close")  # the tile heard the result page and closed the window

    page.wait_for_selector(f'{TILE}[design="healthy"]')
    assert tile.get_by_role("heading", name="Connected to QuickBooks").is_visible()
    assert "Acme Books Ltd" in tile.locator("section").inner_text()
    assert tile.get_by_role("button").count() == 0
    assert "Connected to QuickBooks" in live_region(page)  # announced to screen readers
    # The button the keyboard user pressed is gone: focus moved to the tile's heading, not to the page.
    assert page.evaluate(f"document.querySelector('{TILE}').shadowRoot.activeElement.tagName") == "H2"
    assert page.evaluate("window.cspViolations") == []
    assert wiring.connection_store().get("conn-1").state is ConnectionState.HEALTHY


# ------------------------------------------------------------------ designs, accessibility, escaping


@pytest.mark.parametrize("design", ["healthy", "attention", "disconnected", "pending"])
def test_each_design_renders_with_no_axe_violation(stack, api_client, demo, page, design, tmp_path):
    connection_id = seed_design(stack, api_client, design)

    tile = open_tile(page, demo, connection_id, design)
    screenshot(tile, f"tile-{design}.png", tmp_path)

    headings = {
        "healthy": "Connected to QuickBooks",
        "attention": "Updates are not syncing with QBO",
        "disconnected": "QuickBooks disconnected",
        "pending": "QuickBooks not connected yet",
    }
    assert tile.get_by_role("heading", name=headings[design]).is_visible()
    assert tile.get_by_role("region", name="QuickBooks connection").is_visible()
    reauthorize = tile.get_by_role("button", name="Reauthorize (opens a new window)")
    assert reauthorize.count() == (1 if design in ("attention", "disconnected") else 0)
    assert page.evaluate("window.cspViolations") == []
    assert axe_violations(page) == []


@pytest.mark.parametrize("context_options", [{"viewport": PHONE}])
def test_the_tile_at_phone_width_has_no_axe_violation(stack, api_client, demo, page, tmp_path):
    connection_id = seed_design(stack, api_client, "attention")

    tile = open_tile(page, demo, connection_id, "attention")
    screenshot(tile, "tile-phone.png", tmp_path)

    box = tile.bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    assert axe_violations(page) == []


def test_a_script_in_the_company_name_is_shown_as_text(stack, api_client, demo, page):
    seed_design(stack, api_client, "attention", "conn-1", company=HOSTILE_NAME)

    tile = open_tile(page, demo, "conn-1", "attention")

    assert shadow_text(page, ".company") == HOSTILE_NAME
    assert page.evaluate("window.pwned") is None
    assert (
        page.evaluate(f"document.querySelector('{TILE}').shadowRoot.querySelectorAll('script, img').length")
        == 0
    )
    assert HOSTILE_NAME in tile.locator("section").inner_text()


def test_the_tile_speaks_the_connections_language(stack, api_client, demo, page):
    connection_id = seed_design(stack, api_client, "attention", "conn-fr")
    store = wiring.connection_store()
    stored = store.get(connection_id)
    from dataclasses import replace

    store.save(replace(stored, locale="fr-CA"), changed_from=stored)

    tile = open_tile(page, demo, connection_id, "attention")

    assert page.get_attribute(TILE, "lang") == "fr-CA"
    text = tile.locator("section").inner_text()
    assert "Les mises à jour ne se synchronisent pas avec QBO" in text
    assert "14 jours restants, jusqu'au 20 janvier 2026." in text
    assert tile.get_by_role("region", name="Connexion QuickBooks").is_visible()


# ------------------------------------------------------------------ tokens and messages


def test_an_expired_token_is_replaced_by_the_products_backend(stack, api_client, demo, page):
    connection_id = seed_design(stack, api_client, "healthy")
    open_tile(page, demo, connection_id, "healthy")
    first = page.get_attribute(TILE, "token")
    page.evaluate(
        f"window.expired = 0; document.querySelector('{TILE}')"
        ".addEventListener('qbo-tile-token-expired', () => window.expired++)"
    )

    stack.clock.advance(timedelta(minutes=11))  # past TileTokenMinutes (10)
    page.evaluate(f"document.querySelector('{TILE}').refresh()")

    page.wait_for_function(
        "first => document.querySelector('qbo-connection-tile').token !== first", arg=first
    )
    page.wait_for_function("() => window.expired === 1")
    page.wait_for_function("() => document.querySelector('qbo-connection-tile').status.design === 'healthy'")
    assert page.evaluate("window.expired") == 1


def test_messages_from_another_origin_or_window_are_ignored(stack, api_client, demo, page):
    seeded = seed_connection(stack, "conn-1")
    confirm_admin_issue(stack, api_client, seeded)
    tile = open_tile(page, demo, "conn-1", "attention")
    reads = []
    page.on(
        "request", lambda request: reads.append(request.url) if "/tile/connections/" in request.url else None
    )

    # The product's own page (not the API's origin) posting a forged "connected" result.
    page.evaluate(
        "window.postMessage({type: 'qbo-connection', connectionId: 'conn-1', status: 'connected'}, '*')"
    )
    with page.context.expect_page() as opened:
        tile.get_by_role("button", name="Reauthorize (opens a new window)").click()
    popup = opened.value
    popup.wait_for_selector("#connect")
    # The consent page is at the simulator's origin, not the API's: its message does not count either.
    popup.evaluate(
        "window.opener.postMessage({type: 'qbo-connection', connectionId: 'conn-1', status: 'connected'}, '*')"
    )
    page.wait_for_timeout(300)

    assert not popup.is_closed()
    assert reads == []
    assert page.get_attribute(TILE, "design") == "attention"

    # Closing the window without finishing: the tile looks again, and says so.
    popup.close()
    page.wait_for_function(
        "() => document.querySelector('qbo-connection-tile').shadowRoot.querySelector('[role=status]')"
        ".textContent.startsWith('Updates are not syncing with QBO')"
    )
    assert len(reads) >= 1
    assert "Updates are not syncing with QBO" in live_region(page)


@pytest.mark.parametrize(
    ("page_lang", "label", "retry"),
    [("fr-CA", "Connexion QuickBooks", "Réessayer"), ("es", "Conexión con QuickBooks", "Reintentar")],
)
def test_before_any_answer_the_tile_speaks_the_language_of_the_page(api_url, page, page_lang, label, retry):
    """No answer yet (here: none will come, the API is unreachable): the tile's own texts follow the page."""
    script = f"{api_url}/tile/v1/{TILE}.js"
    page.set_content(
        f'<!doctype html><html lang="{page_lang}"><head><title>t</title></head><body><main>'
        f'<{TILE} connection="conn-1" token="t" api="http://127.0.0.1:9"></{TILE}>'
        f'<script src="{script}"></script></main></body></html>'
    )
    page.wait_for_function(
        f"() => document.querySelector('{TILE}')?.shadowRoot?.querySelector('button') != null"
    )
    assert shadow_text(page, ".eyebrow") == label
    assert shadow_text(page, "button") == retry
    assert "QuickBooks" in shadow_text(page, ".heading")
