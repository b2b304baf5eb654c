"""The QBO tile's demo page on the local stack: a stand-in for the product's web app, at an origin of its own.

It does what docs/tile.md asks of a product: its backend mints a tile token with the Python client
(``POST /connections/{id}/tile-token``, SigV4-signed), its page loads the tile's script from the API with its
Subresource Integrity hash, under a strict Content-Security-Policy, and gives the tile a new token whenever
the tile says its token expired. The tile then calls the API from this other origin (CORS) and hears the
reconnect window's result: both only for the configured ``ProductOrigin``, so start the stack with
``ProductOrigin`` set to :attr:`TileDemo.origin` (``stack.reset(parameters={"ProductOrigin": demo.origin})``,
or ``PRODUCT_ORIGIN`` in the environment before the API's dependencies are built).

``GET /?connection=ID`` shows the tile of that connection; ``GET /tile-token?connection=ID`` is the product's
own backend route the page calls for a fresh token.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from qbo_health.api.tile import SCRIPT_ROUTE, script_integrity
from qbo_health.client import QboHealthApiError, QboHealthClient

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1f2328}
header{background:#24292f;color:#fff;padding:.75rem 1.25rem}header p{margin:0;font-weight:600}
main{max-width:44rem;margin:0 auto;padding:1.5rem 1.25rem}
h1{font-size:1.5rem;margin:0 0 .25rem}.lead{margin:0 0 1.5rem;color:#57606a}
.theme{margin:1.5rem 0 0}
body.dark{background:#0d1117;color:#e6edf3}body.dark .lead{color:#9da7b3}
body.dark qbo-connection-tile{--qbo-tile-background:#161b22;--qbo-tile-color:#e6edf3;
--qbo-tile-muted:#9da7b3;--qbo-tile-border:#30363d;--qbo-tile-healthy:#3fb950;--qbo-tile-attention:#d29922;
--qbo-tile-disconnected:#f85149;--qbo-tile-pending:#8b949e;--qbo-tile-accent:#238636;--qbo-tile-focus:#58a6ff}
"""

_SCRIPT = """
(function () {
  var tile = document.querySelector("qbo-connection-tile");
  // The product's backend mints a new token whenever the tile says its token expired.
  tile.addEventListener("qbo-tile-token-expired", function () {
    fetch("/tile-token?connection=" + encodeURIComponent(tile.getAttribute("connection")))
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) { if (body) tile.token = body.token; });
  });
  document.getElementById("dark").addEventListener("change", function (event) {
    document.body.classList.toggle("dark", event.target.checked);
  });
})();
"""


class TileDemo:
    """A werkzeug server on loopback playing the product: one page with the tile, one token route."""

    def __init__(
        self, api_base_url: str, client: QboHealthClient, *, port: int, host: str = "127.0.0.1"
    ) -> None:
        self.api_base_url = api_base_url.rstrip("/")
        self.client = client
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, connection_id: str) -> str:
        return f"{self.origin}/?connection={quote(connection_id, safe='')}"

    def start(self) -> TileDemo:
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="tile-demo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        connection_id = request.args.get("connection", "")
        if request.method != "GET" or request.path not in ("/", "/tile-token"):
            return Response("Not found", status=404, content_type="text/plain")
        if not connection_id:
            return self._page(None, "")
        try:
            minted = self.client.tile_token(connection_id)
        except QboHealthApiError as error:
            if request.path == "/tile-token":
                return _json(error.status or 502, {"error": error.error})
            return self._page(connection_id, "", error=error.message)
        if request.path == "/tile-token":
            return _json(200, {"token": minted.token, "expires_at": minted.expires_at.isoformat()})
        return self._page(connection_id, minted.token)

    def _page(self, connection_id: str | None, token: str, *, error: str | None = None) -> Response:
        nonce = secrets.token_urlsafe(16)
        esc = html.escape
        api_origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.api_base_url))
        if connection_id is None or error:
            body = (
                "<p>Open this page with <code>?connection=ID</code>, an id of a connection on the local stack.</p>"
                if error is None
                else f"<p role='alert'>{esc(error)}</p>"
            )
            tile = ""
        else:
            body = ""
            tile = (
                f'<qbo-connection-tile connection="{esc(connection_id)}" token="{esc(token)}" '
                f'api="{esc(self.api_base_url)}"></qbo-connection-tile>'
                '<p class="theme"><label><input type="checkbox" id="dark"> Dark theme (CSS custom properties)'
                "</label></p>"
                f'<script src="{esc(self.api_base_url + SCRIPT_ROUTE)}" integrity="{script_integrity()}" '
                f'crossorigin="anonymous" nonce="{nonce}"></script>'
                f'<script nonce="{nonce}">{_SCRIPT}</script>'
            )
        document = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>QuickBooks settings - Example product</title><style nonce="{nonce}">{_STYLE}</style></head>'
            "<body><header><p>Example product</p></header><main>"
            "<h1>QuickBooks</h1>"
            '<p class="lead">The QBO tile of the QBO Connection Health service, embedded as docs/tile.md shows.</p>'
            f"{body}{tile}</main></body></html>"
        )
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}' {api_origin}; style-src 'nonce-{nonce}'; "
            f"connect-src 'self' {api_origin}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return Response(
            document,
            status=200,
            content_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": csp,
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
