"""The verification snippets of docs/webhooks.md, run as written: they accept what the service sends and
refuse a replayed (old) timestamp and an altered body. The Python one runs here; the Node one in Node with the
official npm library (tests/webhooks_node, installed by `make webhook-node-deps`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from qbo_health.domain.webhooks import payload_body, retry_schedule, webhook_payload
from qbo_health.service.webhooks import signed_headers

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
NODE_DIR = ROOT / "tests" / "webhooks_node"
SECRET = "TestWebhookSigningKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"  # 64 letters and digits


def snippet(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)
    assert len(blocks) == 1, f"docs/webhooks.md should have one {language} block"
    return str(blocks[0])


def sent(event_id: str, *, signed_at: datetime) -> tuple[bytes, dict[str, str]]:
    """A request as the delivery function builds it, signed at ``signed_at``."""
    event = {
        "id": "eb-1",
        "detail-type": "ConnectionReminder",
        "time": "2026-01-05T06:35:00Z",
        "detail": {"event_id": event_id, "time": "2026-01-05T06:35:00Z", "connection_id": "conn-1"},
    }
    payload = webhook_payload(event)
    body = payload_body(payload)
    return body.encode(), signed_headers(payload, body, SECRET, signed_at)


def altered(body: bytes) -> bytes:
    return body.replace(b"conn-1", b"conn-2")


def test_the_python_snippet_accepts_a_fresh_request_and_refuses_replays_and_alterations(monkeypatch):
    monkeypatch.setenv("QBO_HEALTH_WEBHOOK_SECRET", SECRET)
    handled: list[tuple[str, dict[str, Any]]] = []
    namespace: dict[str, Any] = {
        "already_handled": lambda event_id: any(data["event_id"] == event_id for _, data in handled),
        "handle_event": lambda kind, data: handled.append((kind, data)),
    }
    exec(compile(snippet("python"), "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - our own doc
    handle = namespace["handle"]
    now = datetime.now(UTC)  # the snippet checks against the receiver's real clock

    body, headers = sent("ev-1", signed_at=now)
    assert handle(body, headers) == 204
    assert handle(body, headers) == 204  # a repeat: answered, not handled twice
    assert handled == [("ConnectionReminder", json.loads(body)["data"])]

    old_body, old_headers = sent("ev-2", signed_at=now - timedelta(minutes=10))
    assert handle(old_body, old_headers) == 400  # a captured request replayed ten minutes later
    assert handle(altered(body), headers) == 400
    assert len(handled) == 1


NODE_HARNESS = """
const handled = new Set();
function alreadyHandled(id) { return handled.has(id); }
function handleEvent(type, data) { handled.add(data.event_id); console.log(JSON.stringify({ handled: type })); }
const server = app.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: server.address().port })));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed")
def test_the_node_snippet_accepts_a_fresh_request_and_refuses_replays_and_alterations():
    if not (NODE_DIR / "node_modules" / "standardwebhooks").is_dir():
        pytest.fail("run `make webhook-node-deps` (npm ci in tests/webhooks_node) first")
    with tempfile.NamedTemporaryFile("w", suffix=".mjs", dir=NODE_DIR, delete=False) as script:
        script.write(snippet("js") + NODE_HARNESS)
    env = {**os.environ, "QBO_HEALTH_WEBHOOK_SECRET": SECRET}
    node = subprocess.Popen(  # noqa: S603 - our own script
        [str(shutil.which("node")), script.name], cwd=NODE_DIR, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        port = json.loads(node.stdout.readline())["port"]
        url = f"http://127.0.0.1:{port}/hooks/qbo-health"
        now = datetime.now(UTC)

        body, headers = sent("ev-1", signed_at=now)
        assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 204
        assert json.loads(node.stdout.readline()) == {"handled": "ConnectionReminder"}
        old_body, old_headers = sent("ev-2", signed_at=now - timedelta(minutes=10))
        assert requests.post(url, data=old_body, headers=old_headers, timeout=10).status_code == 400
        assert requests.post(url, data=altered(body), headers=headers, timeout=10).status_code == 400
    finally:
        node.terminate()
        node.wait(timeout=10)
        Path(script.name).unlink()


def _elapsed(offset: timedelta) -> str:
    hours, minutes = divmod(int(offset.total_seconds()) // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def test_the_documented_retry_schedule_is_the_one_the_code_runs():
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|$", DOC, flags=re.MULTILINE)
    assert [(int(n), text.strip()) for n, text in rows] == [
        (n, _elapsed(offset)) for n, offset in enumerate(retry_schedule(), start=1)
    ]
