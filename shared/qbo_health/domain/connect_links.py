"""Which link a connection takes, and whether a presented link still opens it.

Two kinds of link start Intuit's sign-in:
- a *first-connect* link, for a connection that never held tokens: nothing pins its QuickBooks company, so
  whoever opens the link chooses it. It is short-lived (``ConnectLinkMinutes``), minted on request
  (``POST /connections/{id}/connect-link``) and never sits in an e-mail;
- a *reconnect* link, for a connection that has a company: the callback refuses any other company and
  Intuit only lets an admin of that company consent, so it may travel by e-mail (30 days).

Both are single-use: each carries the connection's grant generation, which goes up by one whenever a new
grant is stored, so every link minted before it stops working (the one just used included).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qbo_health.domain.model import Connection, ConnectionState, DisconnectReason
from qbo_health.errors import ReconnectLinkInvalid

PURPOSE_CONNECT = "connect"
PURPOSE_RECONNECT = "reconnect"


@dataclass(frozen=True)
class LinkClaims:
    connection_id: str
    issued_at: datetime
    purpose: str
    generation: int


def needs_first_connect(connection: Connection) -> bool:
    """Never connected: registered and waiting for its first grant (an imported one has tokens)."""
    return connection.state is ConnectionState.PENDING and connection.sealed_tokens is None


def link_purpose(connection: Connection) -> str:
    return PURPOSE_CONNECT if needs_first_connect(connection) else PURPOSE_RECONNECT


def needs_reconnect(connection: Connection) -> bool:
    """Broken, or disconnected by us (the grace period ran out): a sign-in from QuickBooks may restore it.
    A disconnect the customer asked for is undone from the product, not from QuickBooks."""
    if connection.state is ConnectionState.NEEDS_ATTENTION:
        return True
    return (
        connection.state is ConnectionState.DISCONNECTED
        and connection.disconnect_reason is not DisconnectReason.CUSTOMER_REQUEST
    )


def refuse_stale_link(connection: Connection, claims: LinkClaims) -> None:
    """Raise unless this link may start a sign-in for this connection now."""
    _refuse_used(connection, claims.generation)
    if claims.purpose != link_purpose(connection):
        raise ReconnectLinkInvalid("This link is no longer valid.", reason="purpose")
    _refuse_disconnected_since(connection, claims.issued_at)


def refuse_stale_sign_in(connection: Connection, *, generation: int, link_issued_at: datetime) -> None:
    """The link's rule again when its sign-in completes (before the code exchange, and under the lease): a
    grant stored since the link was minted, or a disconnect the customer asked for after it, ends the sign-in.
    """
    _refuse_used(connection, generation)
    _refuse_disconnected_since(connection, link_issued_at)


def _refuse_used(connection: Connection, generation: int) -> None:
    if generation != connection.grant_generation:
        raise ReconnectLinkInvalid(
            "This link was already used: QuickBooks was connected with it.", reason="used"
        )


def _refuse_disconnected_since(connection: Connection, issued_at: datetime) -> None:
    if (
        connection.state is ConnectionState.DISCONNECTED
        and connection.disconnect_reason is DisconnectReason.CUSTOMER_REQUEST
        and connection.disconnected_at is not None
        and issued_at <= connection.disconnected_at
    ):
        # Old e-mails die with a disconnect the customer asked for; a link minted after it reconnects.
        raise ReconnectLinkInvalid(
            "This connection was disconnected on request. Start a new connection from the app.",
            reason="disconnected",
        )
