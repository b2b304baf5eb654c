"""What the API's services need, as one object the composition root builds (tests build their own)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from qbo_health.adapters.intuit import GrantedTokens, UserIdentity
from qbo_health.adapters.oauth_states import StoredState
from qbo_health.domain.model import Connection
from qbo_health.service.activity import ActivityStore
from qbo_health.service.health_check import CheckDeps, CompanyRead, ConnectionRepository
from qbo_health.service.links import LinkSigner
from qbo_health.service.notices import NoneSuppressed, Suppressions
from qbo_health.service.tile_tokens import TileTokenSigner


class ConnectionCatalog(ConnectionRepository, Protocol):
    def get(self, connection_id: str) -> Connection: ...

    def create(self, connection: Connection) -> Connection: ...

    def ids_for_realm(self, realm_id: str) -> list[str]: ...

    def request_access(self, connection_id: str, now: datetime) -> bool: ...

    def complete(self, connection: Connection) -> Connection:
        """The connection with its profile, read if a lease returned it without (see ``profile_loaded``)."""
        ...


class StateStore(Protocol):
    def put(self, state: StoredState) -> None: ...

    def consume(self, state_hash: str, now: datetime) -> StoredState | None: ...

    def peek(self, state_hash: str, now: datetime) -> StoredState | None: ...

    def mark_granted(self, state_hash: str, generation: int) -> None: ...


class RecheckGate(Protocol):
    def claim_disconnect_recheck(self, realm_id: str, now: datetime, window: timedelta) -> bool: ...


class IntuitOAuth(Protocol):
    """The Intuit calls the browser flow makes (IntuitClient has them all)."""

    def authorization_url(self, state: str, redirect_uri: str, scopes: Sequence[str] = ...) -> str: ...

    def exchange_code(
        self, code: str, redirect_uri: str, *, realm_id: str | None = None
    ) -> GrantedTokens: ...

    def company_info(self, realm_id: str, access_token: str) -> CompanyRead: ...

    def userinfo(self, access_token: str) -> UserIdentity: ...

    def revoke(self, token: str) -> None: ...


@dataclass
class ApiDeps:
    check: CheckDeps
    store: ConnectionCatalog
    states: StateStore
    signer: LinkSigner
    oauth: IntuitOAuth
    redirect_uri: str
    rechecks: RecheckGate
    activity: ActivityStore
    # Read-only tokens for the QBO tile (GET /tile/connections/{id}).
    tile_tokens: TileTokenSigner
    product_origin: str | None = None
    # The notices' language for a connection that has none of its own (BrandingSettings.default_locale).
    default_locale: str = "en-US"
    state_ttl: timedelta = timedelta(minutes=10)
    access_token_wait_seconds: float = 5.0
    # Intuit's timeout: the callback's time budget counts each Intuit call (and a revoke) at it.
    intuit_timeout: timedelta = timedelta(seconds=10)
    sleep: Callable[[float], None] = field(default=time.sleep)
    monotonic: Callable[[], float] = field(default=time.monotonic)
    # SES's bounce and complaint feedback: the status shows which contacts the e-mail skips.
    suppressions: Suppressions = field(default_factory=NoneSuppressed)
