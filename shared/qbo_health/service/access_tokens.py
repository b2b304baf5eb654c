"""A valid access token for the product, refreshed under the same lease the check worker uses.

Intuit may kill a refresh token the moment it rotates it, so only one refresh per connection may run at a
time. The last access token handed out is kept (sealed) apart from the connection; with more than five
minutes left it is handed out again (no Intuit call, no lease). Otherwise the caller takes the lease and
refreshes; when someone else holds it (a worker check, another API call), it flags the connection so the
holder leaves its fresh access token behind, and waits with a short backoff before reading again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from qbo_health.domain.check import ACCESS_TOKEN_MARGIN
from qbo_health.domain.classification import FailureKind, classify
from qbo_health.domain.model import Connection, ConnectionState
from qbo_health.errors import (
    ConnectionBusy,
    ConnectionNeedsAttention,
    IntuitCallFailed,
    IntuitUnavailable,
    InvalidState,
    LeaseHeld,
)
from qbo_health.messages import CheckRequest
from qbo_health.observability import logger
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.health_check import open_tokens, refresh_and_persist, share_access_token
from qbo_health.service.leased import Lease


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    expires_at: datetime
    realm_id: str

    def __repr__(self) -> str:
        return f"AccessToken(realm_id={self.realm_id!r}, expires_at={self.expires_at})"


def get_access_token(connection_id: str, deps: ApiDeps, now: datetime) -> AccessToken:
    deadline = deps.monotonic() + deps.access_token_wait_seconds
    delay = 0.05
    asked = False
    while True:
        connection = deps.store.get(connection_id)
        _refuse_unusable(connection)
        fresh = _fresh(deps, connection, now)
        if fresh is not None:
            return fresh
        owner = f"api:{uuid.uuid4().hex}"
        try:
            leased = deps.store.acquire_lease(connection_id, owner, now, deps.check.lease_seconds)
        except LeaseHeld:
            if not asked:  # a running check refreshes anyway: have it leave its access token for us
                asked = deps.store.request_access(connection_id, now)
            if deps.monotonic() >= deadline:
                raise ConnectionBusy("The connection is being refreshed; try again shortly.") from None
            deps.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        with Lease(deps.store, owner, leased):  # released on the way out: the refresh wrote its own pair
            return _refresh_holding_lease(deps, leased, owner, now)


def _refuse_unusable(connection: Connection) -> None:
    if connection.state is ConnectionState.DISCONNECTED or connection.issue is not None:
        raise ConnectionNeedsAttention(
            "The connection needs attention before it can be used.",
            state=connection.state.value,
            issue=connection.issue.type.value if connection.issue else None,
        )
    if connection.sealed_tokens is None or connection.realm_id is None:
        raise InvalidState("The connection has not been authorized yet.")


def _fresh(deps: ApiDeps, connection: Connection, now: datetime) -> AccessToken | None:
    stored = deps.check.access_tokens.get(connection.connection_id, now)
    if stored is None or stored.expires_at - ACCESS_TOKEN_MARGIN <= now:
        return None
    assert connection.realm_id is not None
    value = deps.check.vault.open_access(
        stored.sealed, connection_id=connection.connection_id, realm_id=connection.realm_id
    )
    return AccessToken(value, stored.expires_at, connection.realm_id)


def _refresh_holding_lease(deps: ApiDeps, leased: Connection, owner: str, now: datetime) -> AccessToken:
    _refuse_unusable(leased)
    fresh = _fresh(deps, leased, now)  # refreshed by the previous holder between our read and our lease
    if fresh is not None:
        return fresh
    assert leased.realm_id is not None
    tokens = open_tokens(deps.check, leased)
    try:
        _, pair = refresh_and_persist(deps.check, leased, tokens, owner=owner, now=now)
    except IntuitCallFailed as error:
        failure = error.failure
        verdict = classify(failure)
        logger.warning(
            "refresh for an access token failed",
            extra={"connection_id": leased.connection_id, "intuit_tid": failure.intuit_tid},
        )
        # Never trust one failure: the check worker confirms (and opens an issue if it is real).
        deps.check.queue.send([CheckRequest(connection_id=leased.connection_id, reason="problem_report")])
        if verdict.kind is FailureKind.ISSUE:
            raise ConnectionNeedsAttention(
                "QuickBooks refused the connection's authorization; it is being checked.",
                state=leased.state.value,
                issue=verdict.issue.value if verdict.issue else None,
            ) from None
        raise IntuitUnavailable("QuickBooks could not be reached; try again shortly.") from None
    share_access_token(deps.check, leased, pair, now)  # before the lease goes: waiting callers read it
    return AccessToken(pair.access_token, pair.access_expires_at, leased.realm_id)
