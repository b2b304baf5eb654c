"""A small client for the product's backend: SigV4-signed calls to the internal routes, typed results.

from qbo_health.client import QboHealthClient

qbo = QboHealthClient("https://abc123.execute-api.us-east-1.amazonaws.com", region="us-east-1")
registered = qbo.register(tenant_id="t-42", contacts=["owner@example.com"])
# open registered.connect_url in a new window; later:
token = qbo.access_token(registered.connection_id).access_token
tile_token = qbo.tile_token(registered.connection_id).token  # for <qbo-connection-tile> (docs/tile.md)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import BaseModel

from qbo_health.api.models import (
    AccessTokenResponse,
    ActivityItem,
    ActivityReport,
    ActivityResponse,
    CheckResponse,
    ConnectionStatus,
    ConnectLinkResponse,
    ImportRequest,
    ProblemRequest,
    ProblemResponse,
    RegisterRequest,
    RegisterResponse,
    TileTokenResponse,
)

_T = TypeVar("_T", bound=BaseModel)


class QboHealthApiError(Exception):
    """The API refused a request: ``status``, ``error`` (a stable code) and ``message``."""

    def __init__(self, status: int, error: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.body = body or {}


class QboHealthClient:
    def __init__(
        self,
        base_url: str,
        region: str,
        credentials: Credentials | None = None,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.region = region
        self._credentials = credentials
        self._timeout = timeout
        self._http = session or requests.Session()

    # ------------------------------------------------------------------ routes

    def register(
        self,
        tenant_id: str,
        contacts: list[str] | None = None,
        connection_id: str | None = None,
        *,
        expected_realm_id: str | None = None,
        expected_email: str | None = None,
        display_name: str | None = None,
        locale: str | None = None,
    ) -> RegisterResponse:
        """``display_name`` and ``locale`` present this connection's notices; ``expected_realm_id`` and
        ``expected_email`` bind its first connect to one company or one consenting user."""
        request = RegisterRequest(
            tenant_id=tenant_id,
            contacts=contacts or [],
            connection_id=connection_id,
            expected_realm_id=expected_realm_id,
            expected_email=expected_email,
            display_name=display_name,
            locale=locale,
        )
        return self._call("POST", "/connections", RegisterResponse, request)

    def connect_link(self, connection_id: str) -> ConnectLinkResponse:
        """A link to open now: single-use, short-lived for a first connect."""
        return self._call("POST", f"/connections/{_id(connection_id)}/connect-link", ConnectLinkResponse)

    def import_connection(
        self,
        tenant_id: str,
        realm_id: str,
        refresh_token: str,
        contacts: list[str] | None = None,
        connection_id: str | None = None,
        **presentation: Any,
    ) -> ConnectionStatus:
        request = ImportRequest(
            tenant_id=tenant_id,
            realm_id=realm_id,
            refresh_token=refresh_token,
            contacts=contacts or [],
            connection_id=connection_id,
            **presentation,
        )
        return self._call("POST", "/connections/import", ConnectionStatus, request)

    def status(self, connection_id: str) -> ConnectionStatus:
        return self._call("GET", f"/connections/{_id(connection_id)}", ConnectionStatus)

    def access_token(self, connection_id: str) -> AccessTokenResponse:
        return self._call("POST", f"/connections/{_id(connection_id)}/access-token", AccessTokenResponse)

    def tile_token(self, connection_id: str) -> TileTokenResponse:
        """A read-only token for the QBO tile of this connection, for a few minutes (docs/tile.md): hand
        ``.token`` to the page that shows the tile, and mint another when the tile asks for one."""
        return self._call("POST", f"/connections/{_id(connection_id)}/tile-token", TileTokenResponse)

    def report_problem(
        self, connection_id: str, status: int, body: str, content_type: str | None = None
    ) -> ProblemResponse:
        request = ProblemRequest(status=status, body=body, content_type=content_type)
        return self._call("POST", f"/connections/{_id(connection_id)}/problems", ProblemResponse, request)

    def report_activity(self, calls: Iterable[tuple[str, datetime, bool]]) -> ActivityResponse:
        """Report the product's own Intuit calls, ``(connection_id, at, ok)`` each (``at`` with its time
        zone): one call in the sync loop saves the service metered probes. Up to 5,000 items a request."""
        items = [ActivityItem(connection_id=cid, at=at, ok=ok) for cid, at, ok in calls]
        return self._call("POST", "/connections/activity", ActivityResponse, ActivityReport(items))

    def check_now(self, connection_id: str) -> CheckResponse:
        return self._call("POST", f"/connections/{_id(connection_id)}/checks", CheckResponse)

    def hold(self, connection_id: str) -> ConnectionStatus:
        return self._call("POST", f"/connections/{_id(connection_id)}/hold", ConnectionStatus)

    def release(self, connection_id: str) -> ConnectionStatus:
        return self._call("DELETE", f"/connections/{_id(connection_id)}/hold", ConnectionStatus)

    def disconnect(self, connection_id: str) -> ConnectionStatus:
        return self._call("DELETE", f"/connections/{_id(connection_id)}", ConnectionStatus)

    # ------------------------------------------------------------------ internals

    def _call(self, method: str, path: str, result: type[_T], payload: BaseModel | None = None) -> _T:
        url = f"{self.base_url}{path}"
        data = payload.model_dump_json(exclude_none=True).encode() if payload is not None else b""
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        signed = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self._frozen_credentials(), "execute-api", self.region).add_auth(signed)
        response = self._http.request(
            method, url, data=data or None, headers=dict(signed.headers.items()), timeout=self._timeout
        )
        if response.status_code >= 400:
            raise _error(response)
        return result.model_validate(response.json())

    def _frozen_credentials(self) -> Credentials:
        credentials = self._credentials or boto3.session.Session().get_credentials()
        if credentials is None:
            raise QboHealthApiError(0, "no_credentials", "no AWS credentials to sign the request with")
        frozen = credentials.get_frozen_credentials()
        return Credentials(frozen.access_key or "", frozen.secret_key or "", frozen.token)


def _id(connection_id: str) -> str:
    return quote(connection_id, safe="")


def _error(response: requests.Response) -> QboHealthApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = str(body.get("error") or body.get("message") or "http_error")
    message = str(body.get("message") or response.reason or "")
    return QboHealthApiError(response.status_code, error, message, body)


__all__ = ["QboHealthApiError", "QboHealthClient"]
