"""The QBO tile's public routes: its script (a versioned static asset) and its one read, with a tile token.

``GET /tile/connections/{id}`` takes ``Authorization: Bearer <tile token>`` (minted by the internal route
``POST /connections/{id}/tile-token`` for the product's backend) and answers what the tile shows, in the
connection's language. Browsers call it from the product's page, another origin: CORS is granted to
``ProductOrigin`` only (its preflight is ``OPTIONS`` on the same path), with no credentials (no cookies).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from qbo_health.api.internal import status_of
from qbo_health.api.models import ErrorResponse, TileLabels, TileStatus
from qbo_health.domain.connect_links import needs_first_connect
from qbo_health.domain.model import ConnectionState
from qbo_health.domain.tile import days_left_text, design_of, labels, last_success_text, state_texts
from qbo_health.i18n import supported
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.links import CONNECTION_ID_PATTERN
from qbo_health.service.tile_tokens import bearer_token

TILE_VERSION = "v1"
SCRIPT_NAME = "qbo-connection-tile.js"
SCRIPT_ROUTE = f"/tile/{TILE_VERSION}/{SCRIPT_NAME}"
SCRIPT_FILE = Path(__file__).resolve().parent.parent / "tile" / TILE_VERSION / SCRIPT_NAME
TILE_PREFIX = "/tile/"
# The OpenAPI security scheme of the tile's read.
SECURITY_SCHEME = "TileToken"
# Browsers cache a preflight at most this long (Chromium caps it at 2 hours).
PREFLIGHT_MAX_AGE = 600
TILE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

ConnectionIdPath = Annotated[str, PathParam(pattern=CONNECTION_ID_PATTERN, max_length=128)]


@cache
def script_bytes() -> bytes:
    return SCRIPT_FILE.read_bytes()


@cache
def script_integrity() -> str:
    """The script's Subresource Integrity value (``sha384-...``), as docs/tile.md gives it."""
    return "sha384-" + base64.b64encode(hashlib.sha384(script_bytes()).digest()).decode("ascii")


def cors_headers(request_origin: str | None, product_origin: str | None) -> dict[str, str]:
    """CORS for the product's origin and no other (an empty ``ProductOrigin`` grants none): any answer on a
    tile path carries them, errors included, so the tile can read a 401 and ask for a new token."""
    headers = {"Vary": "Origin"}
    if product_origin and request_origin == product_origin:
        headers["Access-Control-Allow-Origin"] = product_origin
    return headers


def _json(description: str, model: type) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


def tile_router(api_deps: Callable[[], ApiDeps], clock: Callable[[], datetime]) -> Router:
    router = Router()

    def request_origin() -> str | None:
        origin = router.current_event.headers.get("origin")
        return origin if isinstance(origin, str) else None

    @router.get(
        "/tile/connections/<connection_id>",
        summary="The QBO tile's read: one connection's health in its language (Bearer tile token)",
        responses={
            200: _json("What the tile shows", TileStatus),
            400: _json("Invalid connection id", ErrorResponse),
            401: _json("Missing, forged, expired or another connection's tile token", ErrorResponse),
            404: _json("No such connection", ErrorResponse),
        },
        security=[{SECURITY_SCHEME: []}],
        tags=["public"],
    )
    def tile_status(connection_id: ConnectionIdPath) -> Response[TileStatus]:
        now, deps = clock(), api_deps()
        deps.tile_tokens.verify(
            bearer_token(router.current_event.headers.get("authorization")), connection_id, now
        )
        body = tile_status_of(connection_id, deps, now)
        headers = {**TILE_HEADERS, **cors_headers(request_origin(), deps.product_origin)}
        return Response(200, "application/json", body, headers=headers)

    @router.route(
        "/tile/connections/<connection_id>",
        method="OPTIONS",
        summary="CORS preflight of the tile's read: allowed for ProductOrigin only",
        responses={
            204: {"description": "Preflight answer (CORS headers for ProductOrigin only)", "content": {}},
            400: _json("Invalid connection id", ErrorResponse),
        },
        tags=["public"],
    )
    def tile_preflight(connection_id: ConnectionIdPath) -> Response[str]:
        headers = {**TILE_HEADERS, **cors_headers(request_origin(), api_deps().product_origin)}
        if "Access-Control-Allow-Origin" in headers:
            headers |= {
                "Access-Control-Allow-Methods": "GET",
                "Access-Control-Allow-Headers": "authorization",
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            }
        return Response(204, "text/plain", "", headers=headers)

    @router.get(
        SCRIPT_ROUTE,
        summary="The <qbo-connection-tile> web component (versioned, immutable; SRI hash in docs/tile.md)",
        responses={
            200: {"description": "The script", "content": {"text/javascript": {"schema": {"type": "string"}}}}
        },
        tags=["public"],
    )
    def tile_script() -> Response[bytes]:
        return Response(
            200,
            "text/javascript; charset=utf-8",
            script_bytes(),
            headers={
                # Versioned: a change ships under a new version, so this one never changes (see docs/tile.md).
                "Cache-Control": "public, max-age=31536000, immutable",
                "Access-Control-Allow-Origin": "*",  # public code; <script crossorigin> needs it for SRI
                "Cross-Origin-Resource-Policy": "cross-origin",
                "X-Content-Type-Options": "nosniff",
                "ETag": f'W/"{script_integrity()}"',  # weak: served gzipped or not
                "Vary": "Accept-Encoding",
            },
            compress=True,
        )

    return router


def tile_status_of(connection_id: str, deps: ApiDeps, now: datetime) -> TileStatus:
    """The tile's view, from the status API's (``status_of``: the same wording, days left and reconnect link)
    plus the tile's own headings and labels."""
    connection = deps.store.get(connection_id)
    status = status_of(connection, deps, now)
    locale = supported(connection.locale, deps.default_locale)
    state = ConnectionState(status.state)
    texts = state_texts(
        state,
        locale,
        user_message=status.user_message,
        remedy=status.remedy,
        first_connect=needs_first_connect(connection),
        disconnect_reason=connection.disconnect_reason,
    )
    # The button only where reauthorizing fixes something (not a lapsed or ended subscription: paying does);
    # the link with it, and only then.
    offer = status.reconnect_url is not None and (
        (state is ConnectionState.NEEDS_ATTENTION and status.reauthorize)
        or state is ConnectionState.DISCONNECTED
    )
    days_text = None
    if status.days_left is not None and status.deadline is not None:
        days_text = days_left_text(status.days_left, status.deadline, locale)
    return TileStatus(
        connection_id=connection_id,
        design=design_of(state),
        state=status.state,
        lang=locale,
        company_name=status.company_name,
        heading=texts.heading,
        message=texts.message,
        title=status.title,
        remedy=texts.remedy,
        who_can_fix=status.who_can_fix,
        consequence=status.consequence,
        deadline=status.deadline,
        days_left=status.days_left,
        days_left_text=days_text,
        last_success_at=status.last_success_at if state is ConnectionState.HEALTHY else None,
        last_success_text=last_success_text(status.last_success_at, locale)
        if state is ConnectionState.HEALTHY and status.last_success_at
        else None,
        reauthorize=offer,
        reconnect_url=status.reconnect_url if offer else None,
        labels=TileLabels(**labels(locale)),
    )
