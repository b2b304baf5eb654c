"""HTML result pages for the browser window the user opened. Every value is escaped; scripts need a nonce."""

from __future__ import annotations

import html
import json
import secrets
from typing import Literal

from aws_lambda_powertools.event_handler import Response

PageStatus = Literal["connected", "cancelled", "failed", "neutral"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.4rem}.connected h1{color:#2e7d32}.failed h1,.cancelled h1{color:#b71c1c}"
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the callback URL carries code and state
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _json_for_script(value: object) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return (
        json.dumps(value, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def result_page(
    status_code: int,
    *,
    page_id: str,
    status: PageStatus,
    title: str,
    paragraphs: list[str],
    connection_id: str | None = None,
    target_origin: str | None = None,
    action: tuple[str, str] | None = None,
    lang: str = "en",
) -> Response[str]:
    """A page that says what happened and what to do next; tells ``window.opener`` the outcome, and only
    when the product's origin is known: a message posted to ``*`` would reach whatever page opened this one."""
    nonce = secrets.token_urlsafe(16)
    esc = html.escape
    body = "".join(f"<p>{esc(text)}</p>" for text in paragraphs)
    if action is not None:
        label, href = action
        body += f'<p><a class="action" id="action" rel="noreferrer" href="{esc(href)}">{esc(label)}</a></p>'
    script = ""
    if status != "neutral" and target_origin:
        message = {"type": "qbo-connection", "connectionId": connection_id, "status": status}
        data = _json_for_script({"message": message, "origin": target_origin})
        script = (
            f'<script type="application/json" id="result">{data}</script>'
            f'<script nonce="{nonce}">(function(){{'
            'var d=JSON.parse(document.getElementById("result").textContent);'
            "if(window.opener){window.opener.postMessage(d.message,d.origin);}"
            "})();</script>"
        )
    document = (
        "<!doctype html>"
        f'<html lang="{esc(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)}</title><style nonce="{nonce}">{_STYLE}</style></head>'
        f'<body class="{esc(status)}"><main id="{esc(page_id)}" data-status="{esc(status)}">'
        f"<h1>{esc(title)}</h1>{body}</main>{script}</body></html>"
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return Response(
        status_code=status_code,
        content_type="text/html; charset=utf-8",
        body=document,
        headers={**SECURITY_HEADERS, "Content-Security-Policy": csp},
    )
