"""Public routes a real browser reaches: the reconnect link, Intuit's callback, Intuit's Disconnect URL."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from qbo_health import clock, wiring
from qbo_health.api.pages import SECURITY_HEADERS, result_page
from qbo_health.i18n import N_, gettext, supported
from qbo_health.messages import CheckRequest
from qbo_health.observability import logger
from qbo_health.service.links import MAX_TOKEN_LENGTH
from qbo_health.service.reauthorization import (
    MAX_CODE_LENGTH,
    MAX_REALM_LENGTH,
    MAX_STATE_LENGTH,
    CallbackParams,
    complete_reauthorization,
    start_reauthorization,
)

MAX_DISCONNECT_RECHECKS = 25


def _html(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _browser_cookie(name: str, value: str, max_age: int, router: Router) -> Cookie:
    # Secure wherever the browser came over https (always, behind API Gateway); the local front is http.
    https = router.current_event.headers.get("x-forwarded-proto", "https") == "https"
    return Cookie(
        name, value, path="/", secure=https, http_only=True, max_age=max_age, same_site=SameSite.LAX_MODE
    )


def _request_cookies(pairs: list[str]) -> dict[str, str]:
    """HTTP API v2 events carry the request's cookies as ``name=value`` strings."""
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def deps_branding_locale() -> str:
    return wiring.branding_settings().default_locale


def public_router() -> Router:
    router = Router()

    @router.get(
        "/reconnect/<token>",
        summary="Reconnect link: verifies it and redirects to Intuit's consent page",
        responses={302: {"description": "To Intuit"}, 400: _html("Invalid link")},
        tags=["public"],
    )
    def reconnect(token: Annotated[str, Path(max_length=MAX_TOKEN_LENGTH)]) -> Response[str]:
        start = start_reauthorization(token, wiring.api_deps(), clock.now())
        cookie = _browser_cookie(start.browser_cookie, "1", start.cookie_max_age, router)
        return Response(
            302, "text/plain", "", headers={**SECURITY_HEADERS, "Location": start.location}, cookies=[cookie]
        )

    @router.get(
        "/oauth/callback",
        summary="Intuit's redirect back: stores the new authorization and shows the result",
        responses={200: _html("Connected"), 400: _html("Refused")},
        tags=["public"],
    )
    def callback(
        code: Annotated[str | None, Query(max_length=MAX_CODE_LENGTH)] = None,
        state: Annotated[str | None, Query(max_length=MAX_STATE_LENGTH)] = None,
        realm_id: Annotated[str | None, Query(alias="realmId", max_length=MAX_REALM_LENGTH)] = None,
        error: Annotated[str | None, Query(max_length=100)] = None,
        error_description: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> Response[str]:
        deps = wiring.api_deps()
        cookies = _request_cookies(router.current_event.raw_event.get("cookies") or [])
        result = complete_reauthorization(
            CallbackParams(code, state, realm_id, error, error_description), cookies, deps, clock.now()
        )
        connection = result.connection
        who = connection.authorized_by
        # In the connection's language, from the notices' catalogues.
        locale = supported(connection.locale, deps_branding_locale())
        text = partial(gettext, locale=locale)
        company = connection.company_name
        paragraphs = [
            text(N_("QuickBooks is connected again for %(company)s. Updates will sync with QBO from now on."))
            % {"company": company}
            if company
            else text(N_("QuickBooks is connected again. Updates will sync with QBO from now on."))
        ]
        if who is not None and result.admin_changed:
            paragraphs.append(
                text(N_("The integration now uses the QuickBooks account %(account)s as its Admin."))
                % {"account": who.email or who.user_id}
            )
        paragraphs.append(text(N_("You can close this window and return to the app.")))
        return result_page(
            200,
            page_id="connected",
            status="connected",
            title=text(N_("QuickBooks connected")),
            paragraphs=paragraphs,
            lang=locale,
            connection_id=connection.connection_id,
            target_origin=deps.product_origin,
        )

    @router.get(
        "/intuit/disconnected",
        summary="Intuit's Disconnect URL: queues a re-check of that company's connections",
        responses={200: _html("Acknowledged")},
        tags=["public"],
    )
    def disconnected(
        realm_id: Annotated[str | None, Query(alias="realmId", max_length=MAX_REALM_LENGTH)] = None,
    ) -> Response[str]:
        # Never proof of anything: anyone can open this URL. It only asks the worker to look.
        if realm_id and realm_id.isdigit():
            deps = wiring.api_deps()
            ids = deps.store.ids_for_realm(realm_id)[:MAX_DISCONNECT_RECHECKS]
            if ids:
                deps.check.queue.send(
                    [CheckRequest(connection_id=cid, reason="disconnect_url") for cid in ids]
                )
            logger.info("disconnect landing", extra={"rechecks": len(ids)})
        return result_page(
            200,
            page_id="disconnected",
            status="neutral",
            title="QuickBooks disconnected",
            paragraphs=[
                "If you disconnected the app in QuickBooks, updates no longer sync with QBO.",
                "To connect again, use the Reauthorize button in the app.",
            ],
        )

    return router
