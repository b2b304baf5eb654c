"""Internal routes: the product's backend calls them (IAM auth at API Gateway)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from qbo_health.api.models import (
    AccessTokenResponse,
    ActivityRefusal,
    ActivityReport,
    ActivityResponse,
    AuthorizedBy,
    CheckResponse,
    Classified,
    ConnectionStatus,
    ConnectLinkResponse,
    ErrorResponse,
    ImportRequest,
    ProblemRequest,
    ProblemResponse,
    RegisterRequest,
    RegisterResponse,
    SuppressedContact,
    TileTokenResponse,
)
from qbo_health.domain.activity import Report
from qbo_health.domain.connect_links import PURPOSE_CONNECT, needs_first_connect
from qbo_health.domain.deliverability import normalized
from qbo_health.domain.issues import guidance_for, headline
from qbo_health.domain.model import Connection, ConnectionState, DisconnectReason
from qbo_health.i18n import supported
from qbo_health.service import connections
from qbo_health.service.access_tokens import get_access_token
from qbo_health.service.activity import ActivitySummary, record_activity
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.disconnect import disconnect_connection
from qbo_health.service.health_check import CheckResult
from qbo_health.service.links import CONNECTION_ID_PATTERN

# Answers that carry a bearer secret (an access token, a sign-in link) must not sit in any cache.
NO_STORE = {"Cache-Control": "no-store"}
ConnectionIdPath = Annotated[str, Path(pattern=CONNECTION_ID_PATTERN, max_length=128)]


def _ok(description: str, model: type[BaseModel]) -> OpenAPIResponse:
    """The success response: routes that list their errors must list it too, or OpenAPI loses it."""
    return {"description": description, "content": {"application/json": {"model": model}}}


_ERRORS: dict[int, OpenAPIResponse] = {
    400: {"description": "Invalid request", "content": {"application/json": {"model": ErrorResponse}}},
    404: {"description": "No such connection", "content": {"application/json": {"model": ErrorResponse}}},
    409: {"description": "Conflict", "content": {"application/json": {"model": ErrorResponse}}},
    503: {
        "description": "Busy or Intuit unavailable",
        "content": {"application/json": {"model": ErrorResponse}},
    },
}


def status_of(connection: Connection, deps: ApiDeps, now: datetime) -> ConnectionStatus:
    """The product's view of one connection (wording from the seed article, via domain.issues)."""
    issue = connection.issue
    # The tile's texts in the connection's language, from the same catalogues as its notices.
    locale = supported(connection.locale, deps.default_locale)
    guidance = guidance_for(issue.type, locale) if issue else None
    days_left = None
    if issue is not None:
        days_left = max(0, math.ceil((issue.deadline - now).total_seconds() / 86400))
    # A fresh reconnect link: the Reauthorize button (and a deliberate reconnect after a disconnect) use it.
    # A never-connected connection gets none here: its short-lived link comes from POST .../connect-link.
    reconnect = None if needs_first_connect(connection) else deps.signer.link_for(connection, now).url
    authorizer = connection.authorized_by
    return ConnectionStatus(
        connection_id=connection.connection_id,
        tenant_id=connection.tenant_id,
        realm_id=connection.realm_id,
        company_name=connection.company_name,
        display_name=connection.display_name,
        locale=connection.locale,
        state=connection.state.value,
        on_hold=connection.on_hold,
        issue=issue.type.value if issue else None,
        headline=headline(locale) if issue else None,
        title=guidance.title if guidance else None,
        user_message=guidance.user_message if guidance else None,
        remedy=guidance.remedy if guidance else None,
        who_can_fix=guidance.who_can_fix if guidance else None,
        consequence=guidance.consequence_for(issue.deadline) if guidance and issue else None,
        reauthorize=bool(guidance and guidance.reauthorize)
        or connection.state in (ConnectionState.PENDING, ConnectionState.DISCONNECTED),
        deadline=issue.deadline if issue else None,
        days_left=days_left,
        reconnect_url=reconnect,
        authorized_by=AuthorizedBy(user_id=authorizer.user_id, email=authorizer.email)
        if authorizer
        else None,
        last_success_at=connection.last_success_at,
        last_check_at=connection.last_check_at,
        subscription_status=connection.subscription_status.value if connection.subscription_status else None,
        disconnect_reason=connection.disconnect_reason.value if connection.disconnect_reason else None,
        disconnected_at=connection.disconnected_at,
        suppressed_contacts=_suppressed(connection, deps),
    )


def _suppressed(connection: Connection, deps: ApiDeps) -> list[SuppressedContact]:
    found = deps.suppressions.suppressed(connection.contacts) if connection.contacts else {}
    return [
        SuppressedContact(email=contact, reason=s.reason.value, since=s.at, detail=s.detail)
        for contact in connection.contacts
        if (s := found.get(normalized(contact))) is not None
    ]


def _check_response(result: CheckResult, deps: ApiDeps, now: datetime) -> CheckResponse:
    connection = deps.store.get(result.connection_id)
    outcome = result.outcome
    return CheckResponse(
        connection_id=result.connection_id,
        status=result.status,
        outcome=outcome.kind.value if outcome else None,
        reason=outcome.reason if outcome else result.skipped_because,
        refreshed=result.refreshed,
        connection=status_of(connection, deps, now),
    )


def activity_response(summary: ActivitySummary) -> ActivityResponse:
    return ActivityResponse(
        accepted=summary.accepted,
        connections=summary.connections,
        written=summary.written,
        checks=summary.checks,
        unknown=summary.unknown,
        refused=[
            ActivityRefusal(index=item.index, connection_id=item.connection_id, reason=item.reason)
            for item in summary.refused
        ],
    )


def internal_router(api_deps: Callable[[], ApiDeps], clock: Callable[[], datetime]) -> Router:
    """The product's routes, on the dependencies and the clock they are given."""
    router = Router()

    @router.post(
        "/connections",
        summary="Register a connection (PENDING) and get its connect link",
        responses={201: {"description": "Registered"}, **_ERRORS},
        tags=["internal"],
    )
    def register(request: RegisterRequest) -> Response[RegisterResponse]:
        now, deps = clock(), api_deps()
        registered = connections.register_connection(
            deps,
            now,
            tenant_id=request.tenant_id,
            contacts=request.contact_tuple(),
            connection_id=request.connection_id,
            expected_realm_id=request.expected_realm_id,
            expected_email=request.expected_email,
            display_name=request.display_name,
            locale=request.locale,
        )
        body = RegisterResponse(
            connection_id=registered.connection.connection_id,
            state=registered.connection.state.value,
            connect_url=registered.connect_link.url,
            connect_url_expires_at=registered.connect_link.expires_at,
            connection=status_of(registered.connection, deps, now),
        )
        return Response(201, "application/json", body)

    @router.post(
        "/connections/import",
        summary="Adopt a connection the product already has (realm and refresh token)",
        responses={201: {"description": "Imported"}, **_ERRORS},
        tags=["internal"],
    )
    def import_(request: ImportRequest) -> Response[ConnectionStatus]:
        now, deps = clock(), api_deps()
        imported = connections.import_connection(
            deps,
            now,
            tenant_id=request.tenant_id,
            realm_id=request.realm_id,
            refresh_token=request.refresh_token,
            contacts=request.contact_tuple(),
            connection_id=request.connection_id,
            display_name=request.display_name,
            locale=request.locale,
        )
        return Response(201, "application/json", status_of(imported, deps, now))

    @router.post(
        "/connections/activity",
        summary="Report the product's own Intuit calls: evidence that saves metered probes",
        responses={200: _ok("What counted, per item refusals", ActivityResponse), **_ERRORS},
        tags=["internal"],
    )
    def report_activity(report: ActivityReport) -> ActivityResponse:
        reports = [Report(item.connection_id, item.at, item.ok) for item in report.root]
        deps = api_deps()
        summary = record_activity(reports, deps.activity, deps.check.queue, clock())
        return activity_response(summary)

    @router.get(
        "/connections/<connection_id>",
        summary="Health of one connection, with the wording for the product's UI",
        responses={200: _ok("The connection's health", ConnectionStatus), **_ERRORS},
        tags=["internal"],
    )
    def get_status(connection_id: ConnectionIdPath) -> ConnectionStatus:
        deps = api_deps()
        return status_of(deps.store.get(connection_id), deps, clock())

    @router.post(
        "/connections/<connection_id>/connect-link",
        summary="A link that starts Intuit's sign-in now: short-lived and single-use for a first connect",
        responses={200: _ok("The link", ConnectLinkResponse), **_ERRORS},
        tags=["internal"],
    )
    def connect_link(connection_id: ConnectionIdPath) -> Response[ConnectLinkResponse]:
        deps = api_deps()
        link = deps.signer.link_for(deps.store.get(connection_id), clock())
        kind: Literal["connect", "reconnect"] = "connect" if link.purpose == PURPOSE_CONNECT else "reconnect"
        body = ConnectLinkResponse(
            connection_id=connection_id, url=link.url, kind=kind, expires_at=link.expires_at
        )
        return Response(200, "application/json", body, headers=NO_STORE)

    @router.post(
        "/connections/<connection_id>/tile-token",
        summary="A short-lived, read-only token for the QBO tile of this connection (docs/tile.md)",
        responses={200: _ok("The tile token", TileTokenResponse), **_ERRORS},
        tags=["internal"],
    )
    def tile_token(connection_id: ConnectionIdPath) -> Response[TileTokenResponse]:
        now, deps = clock(), api_deps()
        deps.store.get(connection_id)  # 404 for an unknown id: a token for nothing helps no one
        minted = deps.tile_tokens.mint(connection_id, now)
        body = TileTokenResponse(
            connection_id=connection_id, token=minted.token, expires_at=minted.expires_at
        )
        return Response(200, "application/json", body, headers=NO_STORE)

    @router.post(
        "/connections/<connection_id>/access-token",
        summary="A valid access token (refreshed under the lease when needed)",
        responses={200: _ok("A valid access token", AccessTokenResponse), **_ERRORS},
        tags=["internal"],
    )
    def access_token(connection_id: ConnectionIdPath) -> Response[AccessTokenResponse]:
        token = get_access_token(connection_id, api_deps(), clock())
        body = AccessTokenResponse(
            access_token=token.access_token, expires_at=token.expires_at, realm_id=token.realm_id
        )
        return Response(200, "application/json", body, headers=NO_STORE)

    @router.post(
        "/connections/<connection_id>/problems",
        summary="Report an Intuit error the product saw; answered with an immediate check",
        responses={200: _ok("The report, classified and re-checked", ProblemResponse), **_ERRORS},
        tags=["internal"],
    )
    def report_problem(connection_id: ConnectionIdPath, request: ProblemRequest) -> ProblemResponse:
        now, deps = clock(), api_deps()
        report = connections.report_problem(
            connection_id, request.status, request.body, request.content_type, deps, now
        )
        verdict = report.classification
        return ProblemResponse(
            reported=Classified(
                kind=verdict.kind.value,
                issue=verdict.issue.value if verdict.issue else None,
                reason=verdict.reason,
            )
            if verdict
            else None,
            check=_check_response(report.check, deps, now),
        )

    @router.post(
        "/connections/<connection_id>/checks",
        summary="Check now",
        responses={200: _ok("The check's outcome", CheckResponse), **_ERRORS},
        tags=["internal"],
    )
    def check(connection_id: ConnectionIdPath) -> CheckResponse:
        now, deps = clock(), api_deps()
        return _check_response(connections.check_now(connection_id, deps, now), deps, now)

    @router.post(
        "/connections/<connection_id>/hold",
        summary="Hold: no notices, no disconnect (ops)",
        responses={200: _ok("On hold", ConnectionStatus), **_ERRORS},
        tags=["internal"],
    )
    def hold(connection_id: ConnectionIdPath) -> ConnectionStatus:
        now, deps = clock(), api_deps()
        return status_of(connections.set_hold(connection_id, True, deps, now), deps, now)

    @router.delete(
        "/connections/<connection_id>/hold",
        summary="Release the hold",
        responses={200: _ok("Released", ConnectionStatus), **_ERRORS},
        tags=["internal"],
    )
    def release(connection_id: ConnectionIdPath) -> ConnectionStatus:
        now, deps = clock(), api_deps()
        return status_of(connections.set_hold(connection_id, False, deps, now), deps, now)

    @router.delete(
        "/connections/<connection_id>",
        summary="Disconnect at the customer's request (revoke at Intuit, delete the tokens)",
        responses={200: _ok("Disconnected", ConnectionStatus), **_ERRORS},
        tags=["internal"],
    )
    def disconnect(connection_id: ConnectionIdPath) -> ConnectionStatus:
        now = clock()
        deps = api_deps()
        deps.store.get(connection_id)
        connection = disconnect_connection(connection_id, DisconnectReason.CUSTOMER_REQUEST, deps.check, now)
        return status_of(connection, deps, now)

    return router
