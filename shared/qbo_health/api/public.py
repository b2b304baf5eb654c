"""Public routes a real browser reaches: the reconnect link, Intuit's callback, Intuit's Disconnect URL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from qbo_health.api.pages import SECURITY_HEADERS, result_page
from qbo_health.i18n import N_, gettext, supported
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.disconnect_landing import recheck_after_landing
from qbo_health.service.links import MAX_TOKEN_LENGTH
from qbo_health.service.reauthorization import (
    MAX_CODE_LENGTH,
    MAX_REALM_LENGTH,
    MAX_STATE_LENGTH,
    CallbackParams,
    browser_cookie_name,
    complete_reauthorization,
    reconnect_from_quickbooks,
    start_reauthorization,
)


def _html(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


# Over https (always, behind API Gateway) the sign-in cookie is a ``__Host-`` cookie: Secure, Path=/, no
# Domain, so no sibling subdomain can set or overwrite it. The local front is http, where browsers refuse it.
HOST_PREFIX = "__Host-"
# Routing context: cookies every answer of this request expires (the exception handlers add them too).
EXPIRE_COOKIES = "expire_cookies"


def _https(router: Router) -> bool:
    return router.current_event.headers.get("x-forwarded-proto", "https") == "https"


def _browser_cookie(name: str, value: str, max_age: int, router: Router) -> Cookie:
    https = _https(router)
    return Cookie(
        f"{HOST_PREFIX}{name}" if https else name,
        value,
        path="/",
        secure=https,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )


def _sign_in_cookies(router: Router) -> dict[str, str]:
    """The request's cookies (HTTP API v2 events carry ``name=value`` strings), by name without the
    ``__Host-`` prefix; over https only prefixed ones count."""
    pairs = router.current_event.raw_event.get("cookies") or []
    prefix = HOST_PREFIX if _https(router) else ""
    found = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    return {name.removeprefix(prefix): value for name, value in found.items() if name.startswith(prefix)}


def public_router(api_deps: Callable[[], ApiDeps], clock: Callable[[], datetime]) -> Router:
    """The routes a browser opens, on the dependencies and the clock they are given."""
    router = Router()

    @router.get(
        "/reconnect/<token>",
        summary="Reconnect link: verifies it and redirects to Intuit's consent page",
        responses={302: {"description": "To Intuit"}, 400: _html("Invalid link")},
        tags=["public"],
    )
    def reconnect(token: Annotated[str, Path(max_length=MAX_TOKEN_LENGTH)]) -> Response[str]:
        start = start_reauthorization(token, api_deps(), clock())
        cookie = _browser_cookie(start.browser_cookie, "1", start.cookie_max_age, router)
        return Response(
            302, "text/plain", "", headers={**SECURITY_HEADERS, "Location": start.location}, cookies=[cookie]
        )

    @router.get(
        "/reconnect",
        summary="Intuit's Reconnect URL: a page that restarts the sign-in, or says to reconnect from the app",
        responses={200: _html("A page: a button to QuickBooks, or where to reconnect")},
        tags=["public"],
    )
    def reconnect_from_intuit(
        realm_id: Annotated[str | None, Query(alias="realmId", max_length=MAX_REALM_LENGTH)] = None,
    ) -> Response[str]:
        # QuickBooks sends the user here; nothing in the request is trusted (see reconnect_from_quickbooks).
        start = reconnect_from_quickbooks(realm_id, api_deps(), clock())
        if start is None:
            return result_page(
                200,
                page_id="reconnect_from_app",
                status="neutral",
                title="Reconnect QuickBooks from the app",
                paragraphs=[
                    "Nothing was changed. To reconnect QuickBooks, open the app that uses it and click its "
                    "Reauthorize button (or Connect to QuickBooks).",
                    "For your security, this page cannot tell which connection you mean.",
                ],
            )
        page = result_page(
            200,
            page_id="reconnect_start",
            status="neutral",
            title="Reconnect QuickBooks",
            paragraphs=[
                "The app's connection to this QuickBooks company needs to be renewed.",
                "Sign in to QuickBooks as an Admin of this company to reconnect it. Nothing changes until you "
                "do.",
            ],
            action=("Reconnect to QuickBooks", start.location),
        )
        page.cookies.append(_browser_cookie(start.browser_cookie, "1", start.cookie_max_age, router))
        return page

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
        deps = api_deps()
        cookies = _sign_in_cookies(router)
        if state:  # the sign-in ends here, whatever the outcome: its cookie goes
            router.append_context(
                **{EXPIRE_COOKIES: [_browser_cookie(browser_cookie_name(state), "", 0, router)]}
            )
        result = complete_reauthorization(
            CallbackParams(code, state, realm_id, error, error_description), cookies, deps, clock()
        )
        connection = result.connection
        who = connection.authorized_by
        # In the connection's language, from the notices' catalogues.
        locale = supported(connection.locale, deps.default_locale)
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
        page = result_page(
            200,
            page_id="connected",
            status="connected",
            title=text(N_("QuickBooks connected")),
            paragraphs=paragraphs,
            lang=locale,
            connection_id=connection.connection_id,
            target_origin=deps.product_origin,
        )
        page.cookies.extend(router.context.get(EXPIRE_COOKIES, []))
        return page

    @router.get(
        "/intuit/disconnected",
        summary="Intuit's Disconnect URL: queues a re-check of that company's connections",
        responses={200: _html("Acknowledged")},
        tags=["public"],
    )
    def disconnected(
        realm_id: Annotated[str | None, Query(alias="realmId", max_length=MAX_REALM_LENGTH)] = None,
    ) -> Response[str]:
        recheck_after_landing(realm_id, api_deps(), clock())
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
