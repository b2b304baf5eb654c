"""Request and response bodies of the internal API (the Python client returns these same models)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qbo_health.service.links import CONNECTION_ID_PATTERN

ConnectionId = str
_EMAIL = r"^[^@\s<>\"']{1,64}@[^@\s<>\"']{1,255}$"
_REALM = r"^[0-9]{1,32}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RegisterRequest(_Request):
    tenant_id: str = Field(min_length=1, max_length=200, description="The product's tenant (customer) id.")
    connection_id: str | None = Field(
        default=None,
        pattern=CONNECTION_ID_PATTERN,
        description="The product's own id for the connection; generated when left out.",
    )
    contacts: list[str] = Field(
        default_factory=list, max_length=20, description="E-mail addresses that receive the notices."
    )
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description="The product's name in this connection's notices, for a product serving several brands "
        "(left out: the configured PRODUCT_NAME).",
    )
    locale: Literal["en-US", "en-GB", "en-AU", "fr-CA", "es"] | None = Field(
        default=None, description="The language of this connection's notices (left out: DEFAULT_LOCALE)."
    )

    def contact_tuple(self) -> tuple[str, ...]:
        return tuple(self.contacts)


class ImportRequest(RegisterRequest):
    realm_id: str = Field(pattern=_REALM, description="The QuickBooks company id (realmId).")
    refresh_token: str = Field(
        min_length=1, max_length=2048, repr=False, description="The current refresh token; never logged."
    )


class AuthorizedBy(_Response):
    user_id: str
    email: str | None = None


class ConnectionStatus(_Response):
    """Everything the product's QBO tile and sync columns show."""

    connection_id: str
    tenant_id: str
    realm_id: str | None = None
    company_name: str | None = Field(
        default=None,
        description="The QuickBooks company's name, as its latest CompanyInfo read gave it (absent until "
        "one succeeds). Text from outside: escape it where it is shown.",
    )
    display_name: str | None = None
    locale: str | None = Field(default=None, description="The notices' language, when set at registration.")
    state: Literal["PENDING", "HEALTHY", "NEEDS_ATTENTION", "DISCONNECTED"]
    on_hold: bool = False
    issue: str | None = Field(
        default=None,
        description="ADMIN_ACCESS_LOST, SUBSCRIPTION_LAPSED (payment problem: make a payment), "
        "SUBSCRIPTION_ENDED (canceled or expired: resubscribe) or AUTHORIZATION_EXPIRED.",
    )
    headline: str | None = None
    title: str | None = None
    user_message: str | None = None
    remedy: str | None = None
    who_can_fix: str | None = None
    consequence: str | None = None
    reauthorize: bool = Field(default=False, description="Whether to offer the Reauthorize button.")
    deadline: datetime | None = None
    days_left: int | None = None
    reconnect_url: str | None = None
    authorized_by: AuthorizedBy | None = None
    last_success_at: datetime | None = None
    last_check_at: datetime | None = None
    subscription_status: str | None = Field(
        default=None,
        description="QuickBooks' SubscriptionStatus at the latest successful probe: TRIAL, TRIALOPTIN, "
        "SUBSCRIBED, PAID, RESTRICTED, SUSPENDED, CANCELED, EXPIRED, or UNKNOWN (a value Intuit added since); "
        "absent when never read.",
    )
    disconnect_reason: str | None = None
    disconnected_at: datetime | None = None


class RegisterResponse(_Response):
    connection_id: str
    state: str
    connect_url: str = Field(description="Open it in a new window: the user signs in to QuickBooks there.")
    connection: ConnectionStatus


class AccessTokenResponse(_Response):
    access_token: str = Field(repr=False)
    expires_at: datetime
    realm_id: str


class ProblemRequest(_Request):
    status: int = Field(ge=100, le=599, description="The HTTP status Intuit answered the product with.")
    body: str = Field(default="", max_length=65536, description="Intuit's answer body, as received.")
    content_type: str | None = Field(default=None, max_length=200)


class CheckResponse(_Response):
    connection_id: str
    status: Literal["checked", "busy", "skipped"]
    outcome: str | None = Field(
        default=None, description="HEALTHY, PROBLEM, TRANSIENT, MISCONFIGURED or METERED_OUT."
    )
    reason: str | None = None
    refreshed: bool = False
    connection: ConnectionStatus


class Classified(_Response):
    kind: str
    issue: str | None = None
    reason: str


class ProblemResponse(_Response):
    reported: Classified | None = Field(
        default=None,
        description="What the reported answer would mean; the check decides, not this (a 6190 goes with "
        "the check as evidence: a suspended company still reads, only its writes are refused).",
    )
    check: CheckResponse


class ErrorResponse(_Response):
    error: str
    message: str
    state: str | None = None
    issue: str | None = None
