"""Seeding: companies and grants in the simulator, matching connections in the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from local.stack import EmbeddedStack
from qbo_health import wiring
from qbo_health.domain.model import (
    Authorizer,
    Connection,
    ConnectionState,
    StoredAccessToken,
    TokenPair,
    TokenTimes,
)
from qbo_health.domain.schedule import check_slot


@dataclass(frozen=True)
class SeededConnection:
    connection_id: str
    realm_id: str
    user_id: str  # the admin who authorized the connection
    email: str
    other_users: dict[str, str] = field(default_factory=dict)  # e-mail -> user id at the simulator


def seed_connection(
    stack: EmbeddedStack,
    connection_id: str,
    *,
    tenant_id: str = "tenant-1",
    refreshed_days_ago: float = 0.0,
    contacts: tuple[str, ...] = ("owner@example.com",),
    state: ConnectionState = ConnectionState.HEALTHY,
    company_name: str | None = None,
    admin_email: str | None = None,
    other_users: tuple[tuple[str, bool], ...] = (),
) -> SeededConnection:
    """A company with one admin who authorized our app ``refreshed_days_ago`` days ago (last token use).

    ``contacts`` are the product's addresses for notices; ``company_name`` names the QuickBooks company;
    ``other_users`` adds (e-mail, is_admin) users to it, e.g. the admin who will take over by reauthorizing.
    To choose the hour the connection is checked each day, pick its id with ``connection_id_in_slot``.
    """
    control = stack.intuit.control
    name = company_name or f"Company of {connection_id}"
    realm_id = control.create_company(name=name)
    email = admin_email or f"admin.{connection_id}@example.com"
    user_id = control.add_user(realm_id, email=email, admin=True)
    others = {other: control.add_user(realm_id, email=other, admin=admin) for other, admin in other_users}
    granted = control.issue_tokens(realm_id, user_id, refreshed_days_ago=refreshed_days_ago)
    store_connection(
        stack,
        connection_id,
        realm_id=realm_id,
        tenant_id=tenant_id,
        granted=granted,
        authorizer=Authorizer(user_id, email),
        refreshed_days_ago=refreshed_days_ago,
        contacts=contacts,
        state=state,
        company_name=name,  # as the connect flow's CompanyInfo read stored it
    )
    return SeededConnection(connection_id, realm_id, user_id, email, others)


def connection_id_in_slot(prefix: str, slot: int) -> str:
    """A connection id (``prefix-N``) whose daily check falls in ``slot`` (the hour of day, UTC): the slot is a
    stable hash of the id, as in production, so a scenario picks the id rather than bending the rule."""
    for number in range(10_000):
        candidate = f"{prefix}-{number}"
        if check_slot(candidate) == slot:
            return candidate
    raise ValueError(f"no id with prefix {prefix!r} lands in slot {slot}")


def store_connection(
    stack: EmbeddedStack,
    connection_id: str,
    *,
    realm_id: str,
    tenant_id: str,
    granted: dict[str, Any],
    authorizer: Authorizer,
    refreshed_days_ago: float,
    contacts: tuple[str, ...],
    state: ConnectionState,
    company_name: str | None = None,
) -> Connection:
    connection = connection_of_grant(
        stack,
        connection_id,
        realm_id=realm_id,
        tenant_id=tenant_id,
        granted=granted,
        authorizer=authorizer,
        refreshed_days_ago=refreshed_days_ago,
        contacts=contacts,
        state=state,
        company_name=company_name,
    )
    stored = wiring.connection_store().create(connection)
    issued_at = stack.clock.now() - timedelta(days=refreshed_days_ago)
    access_expires_at = issued_at + timedelta(seconds=int(granted["expires_in"]))
    if access_expires_at > stack.clock.now():  # still valid: kept for the product, as a callback keeps it
        sealed = wiring.token_vault().seal_access(
            granted["access_token"], connection_id=connection_id, realm_id=realm_id
        )
        wiring.access_token_cache().put(
            connection_id, StoredAccessToken(sealed, access_expires_at), stack.clock.now()
        )
    return stored


def connection_of_grant(
    stack: EmbeddedStack,
    connection_id: str,
    *,
    realm_id: str,
    tenant_id: str,
    granted: dict[str, Any],
    authorizer: Authorizer,
    refreshed_days_ago: float,
    contacts: tuple[str, ...],
    state: ConnectionState = ConnectionState.HEALTHY,
    company_name: str | None = None,
) -> Connection:
    """The connection a grant from the token endpoint makes, tokens sealed by the real vault (not stored)."""
    now = stack.clock.now()
    refreshed_at = now - timedelta(days=refreshed_days_ago)
    pair = TokenPair(
        access_token=granted["access_token"],
        refresh_token=granted["refresh_token"],
        access_expires_at=refreshed_at + timedelta(seconds=int(granted["expires_in"])),
        refresh_expires_at=now + timedelta(seconds=int(granted["x_refresh_token_expires_in"])),
        hard_expires_at=now + timedelta(seconds=int(granted["x_refresh_token_hard_expires_in"])),
    )
    sealed = wiring.token_vault().seal(
        pair.without_access_token(), connection_id=connection_id, realm_id=realm_id
    )
    return Connection(
        connection_id=connection_id,
        tenant_id=tenant_id,
        realm_id=realm_id,
        state=state,
        contacts=contacts,
        authorized_by=authorizer,
        tokens=TokenTimes(
            refresh_expires_at=pair.refresh_expires_at,
            hard_expires_at=pair.hard_expires_at,
            refreshed_at=refreshed_at,
            rotated_at=refreshed_at,
        ),
        sealed_tokens=sealed,
        created_at=refreshed_at,
        last_success_at=refreshed_at,
        company_name=company_name,
    )


def open_tokens(connection: Connection) -> TokenPair:
    """The clear tokens of a stored connection (tests use this to check them at the simulator)."""
    assert connection.sealed_tokens is not None and connection.realm_id is not None
    return wiring.token_vault().open(
        connection.sealed_tokens, connection_id=connection.connection_id, realm_id=connection.realm_id
    )
