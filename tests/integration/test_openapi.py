"""The committed openapi.json is what the code generates (regenerate with `make openapi`)."""

from __future__ import annotations

from pathlib import Path

from qbo_health.api.app import openapi_json

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"


def test_committed_openapi_document_matches_the_code(stack):
    generated = openapi_json()
    assert COMMITTED.exists(), "openapi.json is missing: run `make openapi`"
    assert COMMITTED.read_text(encoding="utf-8") == generated, "openapi.json is stale: run `make openapi`"


def test_every_template_route_is_in_the_document(stack):
    import json

    from local.http_front import routes_from_template

    paths = json.loads(openapi_json())["paths"]
    for route in routes_from_template(stack.template):
        path = route.path.replace("{id}", "{connection_id}")
        assert route.method.lower() in paths.get(path, {}), route.route_key
