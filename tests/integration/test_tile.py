"""The QBO tile's routes on the local HTTP front: the internal route that mints tile tokens, the public read
that takes one (its answer, its refusals, its CORS), the read-only rule, and the script with its SRI hash."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.client import QboHealthApiError
from qbo_health.domain.issues import guidance_for, headline
from qbo_health.service.links import LinkSigner
from tests.integration.test_api import break_admin, stored

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = "https://app.example.com"
SCRIPT = "/tile/v1/qbo-connection-tile.js"


@pytest.fixture
def product_origin(monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("PRODUCT_ORIGIN", PRODUCT)
    wiring.reset()
    yield PRODUCT
    monkeypatch.undo()
    wiring.reset()


def read(api_url, connection_id, token, origin=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if origin:
        headers["Origin"] = origin
    return requests.get(f"{api_url}/tile/connections/{connection_id}", headers=headers, timeout=10)


def as_french(connection_id):
    before = stored(connection_id)
    wiring.connection_store().save(replace(before, locale="fr-CA"), changed_from=before)


# ------------------------------------------------------------------ minting and reading


def test_a_tile_token_reads_its_connections_health(stack, api_url, api_client):
    seed_connection(stack, "conn-1", company_name="Acme Books Ltd")

    minted = api_client.tile_token("conn-1")
    answer = read(api_url, "conn-1", minted.token)

    assert minted.connection_id == "conn-1"
    assert minted.expires_at == stack.clock.now().replace(microsecond=0) + timedelta(minutes=10)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["design"] == "healthy" and body["state"] == "HEALTHY" and body["lang"] == "en-US"
    assert body["company_name"] == "Acme Books Ltd"
    assert body["heading"] == "Connected to QuickBooks" and body["message"] == "Updates sync with QBO."
    assert body["reauthorize"] is False and body["reconnect_url"] is None
    assert body["labels"]["reauthorize"] == "Reauthorize"
    # What the tile does not need, it does not get: no tenant, realm, contacts, authorizer or token.
    for absent in ("tenant_id", "realm_id", "contacts", "authorized_by", "access_token", "refresh_token"):
        assert absent not in body


def test_the_token_route_is_internal_no_store_and_knows_its_connections(
    stack, api_url, api_client, monkeypatch
):
    seed_connection(stack, "conn-1")
    unsigned = requests.post(f"{api_url}/connections/conn-1/tile-token", timeout=10)
    assert unsigned.status_code == 403

    with pytest.raises(QboHealthApiError) as unknown:
        api_client.tile_token("nobody")
    assert unknown.value.status == 404

    monkeypatch.setenv("TILE_TOKEN_MINUTES", "3")
    wiring.reset()
    minted = api_client.tile_token("conn-1")
    assert minted.expires_at == stack.clock.now().replace(microsecond=0) + timedelta(minutes=3)
    stack.clock.advance(timedelta(minutes=3))
    assert read(api_url, "conn-1", minted.token).status_code == 401


def test_a_broken_connection_reads_in_its_language_with_a_working_reconnect_link(stack, api_url, api_client):
    seeded = seed_connection(stack, "conn-1")
    break_admin(stack, api_client, seeded)
    as_french("conn-1")

    body = read(api_url, "conn-1", api_client.tile_token("conn-1").token).json()

    guidance = guidance_for("ADMIN_ACCESS_LOST", "fr-CA")
    assert body["design"] == "attention" and body["lang"] == "fr-CA"
    assert body["heading"] == headline("fr-CA")
    assert body["title"] == guidance.title and body["message"] == guidance.user_message
    assert body["remedy"] == guidance.remedy and body["who_can_fix"] == guidance.who_can_fix
    assert (
        body["days_left"] == 14 and body["days_left_text"] == "14 jours restants, jusqu'au 20 janvier 2026."
    )
    assert body["consequence"].startswith("Si le problème")
    assert (
        body["labels"]["reauthorize"] == "Réautoriser" and body["labels"]["region"] == "Connexion QuickBooks"
    )
    assert body["reauthorize"] is True
    start = requests.get(body["reconnect_url"], allow_redirects=False, timeout=10)
    assert start.status_code == 302 and start.headers["Location"].startswith(stack.intuit.base_url)


def test_a_lapsed_subscription_offers_no_button_and_no_link(stack, api_url, api_client):
    seeded = seed_connection(stack, "conn-1")
    stack.intuit.control.set_subscription_status(seeded.realm_id, "SUSPENDED")
    stack.clock.advance(timedelta(days=1))
    api_client.check_now("conn-1")
    stack.clock.advance(timedelta(minutes=15))
    api_client.check_now("conn-1")
    assert stored("conn-1").issue is not None

    body = read(api_url, "conn-1", api_client.tile_token("conn-1").token).json()

    assert body["design"] == "attention" and body["title"] == "QBO account suspended"
    assert body["reauthorize"] is False and body["reconnect_url"] is None


def test_pending_and_disconnected_designs(stack, api_url, api_client):
    api_client.register(tenant_id="t-1", connection_id="new-1")
    control = stack.intuit.control
    realm = control.create_company()
    granted = control.issue_tokens(realm, control.add_user(realm, admin=True))
    api_client.import_connection(
        tenant_id="t-1", realm_id=realm, refresh_token=granted["refresh_token"], connection_id="imp-1"
    )
    seed_connection(stack, "gone-1")
    api_client.disconnect("gone-1")

    new, imported, gone = (
        read(api_url, cid, api_client.tile_token(cid).token).json() for cid in ("new-1", "imp-1", "gone-1")
    )

    assert (new["design"], new["heading"], new["reconnect_url"]) == (
        "pending",
        "QuickBooks not connected yet",
        None,
    )
    assert (imported["design"], imported["heading"]) == ("pending", "Checking the QuickBooks connection")
    assert imported["reauthorize"] is False and imported["reconnect_url"] is None
    assert gone["design"] == "disconnected" and "on request" in gone["message"]
    assert gone["reauthorize"] is True and "/reconnect/" in gone["reconnect_url"]


# ------------------------------------------------------------------ refusals


def test_every_bad_token_gets_the_same_401(stack, api_url, api_client):
    seed_connection(stack, "conn-1")
    seed_connection(stack, "conn-2")
    good = api_client.tile_token("conn-1").token
    payload, _ = good.split(".")
    forged_mac = base64.urlsafe_b64encode(hashlib.sha256(b"guess").digest()).rstrip(b"=").decode()
    link = LinkSigner(lambda: wiring.api_settings().link_signing_key.get_secret_value().encode(), api_url)
    expired = api_client.tile_token("conn-2").token

    stack.clock.advance(timedelta(minutes=10))
    answers = {
        "missing": read(api_url, "conn-1", None),
        "basic": requests.get(
            f"{api_url}/tile/connections/conn-1", headers={"Authorization": "Basic Zm9vOmJhcg=="}, timeout=10
        ),
        "garbage": read(api_url, "conn-1", "garbage"),
        "forged": read(api_url, "conn-1", f"{payload}.{forged_mac}"),
        "other connection": read(api_url, "conn-2", api_client.tile_token("conn-1").token),
        "expired": read(api_url, "conn-2", expired),
        "reconnect link": read(api_url, "conn-1", link.token("conn-1", stack.clock.now())),
    }

    for case, answer in answers.items():
        assert answer.status_code == 401, case
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', case
        assert answer.headers["Cache-Control"] == "no-store", case
        assert answer.json() == {
            "error": "tile_token_invalid",
            "message": "The tile's token is missing, not valid or expired: ask the product for a new one.",
        }, case
    # An unknown connection reads the same as a refused token: no probing for ids without a token.
    assert read(api_url, "nobody", good).json()["error"] == "tile_token_invalid"


def test_a_tile_token_is_read_only(stack, api_url, api_client):
    seeded = seed_connection(stack, "conn-1")
    token = api_client.tile_token("conn-1").token
    before = stored("conn-1")
    stack.intuit.control.reset_stats()
    bearer = {"Authorization": f"Bearer {token}"}

    # The internal routes need IAM: API Gateway refuses a bearer token before the function runs.
    for method, path in [
        ("POST", "/connections/conn-1/access-token"),
        ("POST", "/connections/conn-1/tile-token"),
        ("POST", "/connections/conn-1/checks"),
        ("POST", "/connections/conn-1/hold"),
        ("DELETE", "/connections/conn-1"),
        ("GET", "/connections/conn-1"),
    ]:
        answer = requests.request(method, f"{api_url}{path}", headers=bearer, timeout=10)
        assert answer.status_code == 403, path
    # No other method on the tile's path; and a tile token is no reconnect link.
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert (
            requests.request(
                method, f"{api_url}/tile/connections/conn-1", headers=bearer, timeout=10
            ).status_code
            == 404
        )
    page = requests.get(f"{api_url}/reconnect/{token}", allow_redirects=False, timeout=10)
    assert page.status_code == 400 and 'id="reconnect_link_invalid"' in page.text

    for _ in range(5):
        assert read(api_url, "conn-1", token).status_code == 200
    assert stored("conn-1") == before  # reading writes nothing
    assert sum(stack.intuit.control.stats()["calls"].values()) == 0  # and calls Intuit for nothing
    assert seeded.realm_id not in read(api_url, "conn-1", token).text


def test_the_token_never_reaches_a_log_line(stack, api_url, api_client, _log_capture):
    seed_connection(stack, "conn-1")
    since = len(_log_capture.lines)
    token = api_client.tile_token("conn-1").token
    read(api_url, "conn-1", token)
    read(api_url, "conn-2", token)  # refused: logged with its reason
    read(api_url, "conn-1", token + "x")

    lines = _log_capture.lines[since:]
    assert any("tile_token_invalid" in line for line in lines)
    assert not [line for line in lines if token in line or token.split(".")[1] in line]


# ------------------------------------------------------------------ CORS


def test_cors_is_granted_to_the_product_origin_only(stack, api_url, api_client, product_origin):
    seed_connection(stack, "conn-1")
    token = api_client.tile_token("conn-1").token
    url = f"{api_url}/tile/connections/conn-1"

    allowed = read(api_url, "conn-1", token, origin=PRODUCT)
    other = read(api_url, "conn-1", token, origin="https://evil.example")
    refused = read(api_url, "conn-1", "garbage", origin=PRODUCT)
    preflight = requests.options(
        url,
        headers={
            "Origin": PRODUCT,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=10,
    )
    evil_preflight = requests.options(url, headers={"Origin": "https://evil.example"}, timeout=10)

    assert allowed.headers["Access-Control-Allow-Origin"] == PRODUCT and "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    assert "Access-Control-Allow-Origin" not in other.headers
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == PRODUCT
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == PRODUCT
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization"
    assert evil_preflight.status_code == 204 and "Access-Control-Allow-Origin" not in evil_preflight.headers


def test_without_a_product_origin_no_origin_is_granted(stack, api_url, api_client):
    seed_connection(stack, "conn-1")
    answer = read(api_url, "conn-1", api_client.tile_token("conn-1").token, origin=PRODUCT)
    assert answer.status_code == 200 and "Access-Control-Allow-Origin" not in answer.headers


# ------------------------------------------------------------------ the script


def test_the_script_is_served_immutable_with_the_documented_sri_hash(stack, api_url):
    plain = requests.get(f"{api_url}{SCRIPT}", headers={"Accept-Encoding": "identity"}, timeout=10)
    zipped = requests.get(f"{api_url}{SCRIPT}", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    raw = zipped.raw.read()

    shipped = (ROOT / "shared/qbo_health/tile/v1/qbo-connection-tile.js").read_bytes()
    assert plain.status_code == 200 and plain.content == shipped
    assert plain.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert plain.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert plain.headers["Access-Control-Allow-Origin"] == "*"
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(raw) == shipped
    served = "sha384-" + base64.b64encode(hashlib.sha384(plain.content).digest()).decode()
    documented = re.findall(r'integrity="(sha384-[A-Za-z0-9+/=]+)"', (ROOT / "docs/tile.md").read_text())
    assert documented == [served], (
        "docs/tile.md's SRI hash is not the served file's: a changed tile ships as v2"
    )
