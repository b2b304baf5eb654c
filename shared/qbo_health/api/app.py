"""Builds the resolver: both routers, and every expected exception mapped to a response in one place.

Browser routes answer with an HTML page, internal routes with JSON ``{"error": code, "message": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from qbo_health import clock
from qbo_health.api.internal import internal_router
from qbo_health.api.pages import PageStatus, result_page
from qbo_health.api.public import EXPIRE_COOKIES, public_router
from qbo_health.api.tile import SECURITY_SCHEME, TILE_PREFIX, cors_headers, tile_router
from qbo_health.errors import (
    ApiError,
    AuthorizationDenied,
    ConnectionNeedsAttention,
    ConnectionNotFound,
)
from qbo_health.observability import logger
from qbo_health.service.api_deps import ApiDeps

API_TITLE = "QBO Connection Health API"
API_VERSION = "1.0.0"
BROWSER_PREFIXES = ("/reconnect", "/oauth/", "/intuit/")

_PAGE_TITLES = {
    "reconnect_link_invalid": "This link cannot be used",
    "oauth_state_invalid": "This sign-in has expired",
    "authorization_denied": "QuickBooks was not connected",
    "realm_mismatch": "Wrong QuickBooks company",
    "not_an_admin": "An Admin needs to sign in",
    "identity_mismatch": "Another QuickBooks user signed in",
    "subscription_inactive": "QuickBooks subscription not active",
    "authorization_code_rejected": "QuickBooks did not accept the sign-in",
    "intuit_unavailable": "QuickBooks could not be reached",
    "busy": "Please try again",
    "sign_in_timed_out": "QuickBooks was not connected",
    "invalid_request": "Something is missing",
    "not_found": "This link cannot be used",
}
_NEXT_STEP = {
    "reconnect_link_invalid": "Open the app and click the Reauthorize button to get a new link.",
    "oauth_state_invalid": "Open the app and click the Reauthorize button to start again.",
    "authorization_denied": "Nothing was changed. To connect, open the app and click Reauthorize again.",
    "realm_mismatch": (
        "Nothing was changed. Use the link again and choose the QuickBooks company this integration is "
        "connected to."
    ),
    "not_an_admin": "Nothing was changed.",
    "identity_mismatch": "Only the QuickBooks user the app invited can finish this connection.",
    "subscription_inactive": "Nothing was changed.",
    "authorization_code_rejected": "Nothing was changed. Use the Reauthorize button in the app to start again.",
    "intuit_unavailable": "Nothing was changed. Please try again in a few minutes.",
    "busy": "Nothing was changed. Please try again in a minute.",
    "sign_in_timed_out": "Nothing was changed. Please use the link again, or the Reauthorize button in the app.",
    "invalid_request": "Nothing was changed. Use the Reauthorize button in the app to start again.",
    "not_found": "Open the app and click the Reauthorize button to get a new link.",
}


def build_app(deps: Callable[[], ApiDeps], now: Callable[[], datetime]) -> APIGatewayHttpResolver:
    """A new resolver (one per Lambda container: the resolver keeps the current event on itself).

    ``deps`` is called per request (the composition root caches what it builds); ``now`` is the clock.
    """
    app = APIGatewayHttpResolver(enable_validation=True)
    app.include_router(internal_router(deps, now))
    app.include_router(public_router(deps, now))
    app.include_router(tile_router(deps, now))

    def is_browser() -> bool:
        path = app.current_event.raw_path or ""
        return path.startswith(BROWSER_PREFIXES)

    def product_origin() -> str | None:
        try:
            return deps().product_origin
        except Exception:  # a page must still answer when the dependencies cannot be built
            logger.exception("dependencies unavailable for an error page")
            return None

    def answer(status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> Response[str]:
        if is_browser():
            connection_id = extra.get("connection_id") if extra else None
            page_status: PageStatus = "cancelled" if code == "authorization_denied" else "failed"
            return result_page(
                status,
                page_id=code,
                status=page_status,
                title=_PAGE_TITLES.get(code, "Something went wrong"),
                paragraphs=[message, _NEXT_STEP.get(code, "Nothing was changed.")],
                connection_id=connection_id if isinstance(connection_id, str) else None,
                target_origin=product_origin(),
            )
        body: dict[str, Any] = {"error": code, "message": message}
        body.update({k: v for k, v in (extra or {}).items() if k != "connection_id"})
        headers: dict[str, str] = {}
        if (app.current_event.raw_path or "").startswith(TILE_PREFIX):
            # The tile reads its errors from another origin (a 401 tells it to ask for a new token).
            origin = app.current_event.headers.get("origin")
            headers = {"Cache-Control": "no-store", **cors_headers(origin, product_origin())}
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return Response(status, "application/json", json.dumps(body), headers=headers)

    @app.exception_handler(ApiError)
    def api_error(error: ApiError) -> Response[str]:
        extra: dict[str, Any] = {}
        if isinstance(error, ConnectionNeedsAttention):
            extra = {"state": error.state, "issue": error.issue}
        if isinstance(error, AuthorizationDenied):
            extra = {"connection_id": error.connection_id}
        reason = getattr(error, "reason", None)  # which check refused a link or a token (never its value)
        logger.info("request refused", extra={"error": error.code, "status": error.status, "reason": reason})
        response = answer(error.status, error.code, error.message, extra)
        response.cookies.extend(app.context.get(EXPIRE_COOKIES, []))
        if error.status == 503:
            response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(ConnectionNotFound)
    def not_found(error: ConnectionNotFound) -> Response[str]:
        return answer(404, "not_found", "No such connection.")

    @app.exception_handler(RequestValidationError)
    def invalid(error: RequestValidationError) -> Response[str]:
        # Names of the offending fields only: values (tokens, codes) never echo back.
        fields = sorted({".".join(str(part) for part in item.get("loc", ())[1:]) for item in error.errors()})
        named = ", ".join(field for field in fields if field) or "the request"
        return answer(400, "invalid_request", f"Invalid or missing: {named}.")

    @app.not_found
    def no_route(error: Exception) -> Response[str]:
        return answer(404, "no_route", "No such route.")

    return app


def _no_deps() -> ApiDeps:
    raise RuntimeError("the OpenAPI document is built without dependencies; no route runs")


def openapi_json(app: APIGatewayHttpResolver | None = None) -> str:
    """The OpenAPI document, generated from the routes (committed as ``openapi.json``)."""
    resolver = app or build_app(_no_deps, clock.now)
    document = resolver.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        security_schemes={
            SECURITY_SCHEME: HTTPBearer(
                description="A tile token from POST /connections/{connection_id}/tile-token (minutes, "
                "read-only, one connection)."
            )
        },
        description=(
            "Keeps QuickBooks Online connections alive. Internal routes need AWS IAM (SigV4) auth; "
            "the public routes are opened by a browser (the QBO tile's read takes a tile token)."
        ),
    )
    return json.dumps(json.loads(document), indent=2, sort_keys=True) + "\n"
