"""Request and response bodies of the internal API (the Python client returns these same models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel

from qbo_health.domain.activity import MAX_ITEMS
from qbo_health.domain.notices import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from qbo_health.service.links import CONNECTION_ID_PATTERN

ConnectionId = str
# A contact must be an address the e-mail service accepts: a bad one is refused here (400 naming the field,
# the value never echoed), not found out by SES on the day a notice is due.
ContactEmail = Annotated[
    str, Field(pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH, description="An e-mail address.")
]
_REALM = r"^[0-9]{1,32}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _NewConnection(_Request):
    tenant_id: str = Field(min_length=1, max_length=200, description="The product's tenant (customer) id.")
    connection_id: str | None = Field(
        default=None,
        pattern=CONNECTION_ID_PATTERN,
        description="The product's own id for the connection; generated when left out.",
    )
    contacts: list[ContactEmail] = Field(
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


class RegisterRequest(_NewConnection):
    expected_realm_id: str | None = Field(
        default=None,
        pattern=_REALM,
        description="Optional: the only QuickBooks company (realmId) the first connect may choose.",
    )
    expected_email: str | None = Field(
        default=None,
        pattern=EMAIL_PATTERN,
        max_length=EMAIL_MAX_LENGTH,
        description="Optional: the e-mail of the QuickBooks user who must consent to the first connect.",
    )


class ImportRequest(_NewConnection):
    realm_id: str = Field(pattern=_REALM, description="The QuickBooks company id (realmId).")
    refresh_token: str = Field(
        min_length=1, max_length=2048, repr=False, description="The current refresh token; never logged."
    )


class AuthorizedBy(_Response):
    user_id: str
    email: str | None = None


class SuppressedContact(BaseModel):
    email: str
    reason: Literal["BOUNCE", "COMPLAINT"]
    since: datetime
    detail: str | None = Field(default=None, description="SES's bounce subtype or complaint feedback type.")


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
    reconnect_url: str | None = Field(
        default=None,
        description="A reconnect link (may go in an e-mail); absent for a connection never connected, "
        "whose first-connect link comes from POST /connections/{id}/connect-link.",
    )
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
    suppressed_contacts: list[SuppressedContact] = Field(
        default_factory=list,
        description="Contacts the notices' e-mail skips: SES reported a hard bounce (BOUNCE) or a spam "
        "complaint (COMPLAINT) for the address. The other contacts and the events go on.",
    )


class RegisterResponse(_Response):
    connection_id: str
    state: str
    connect_url: str = Field(
        description="Open it in a new window at once: the user signs in to QuickBooks there. It works once, "
        "for a few minutes (ConnectLinkMinutes); POST /connections/{id}/connect-link mints another."
    )
    connect_url_expires_at: datetime
    connection: ConnectionStatus


class ConnectLinkResponse(_Response):
    connection_id: str
    url: str = Field(description="Open it in a new window; it starts Intuit's sign-in and works once.")
    kind: Literal["connect", "reconnect"] = Field(
        description="connect: first connect, short-lived; reconnect: the connection has a company."
    )
    expires_at: datetime


class TileTokenResponse(_Response):
    connection_id: str
    token: str = Field(
        repr=False,
        description="A read-only bearer token for the QBO tile of this connection only: give it to the tile "
        "(its token attribute). It reads the connection's health and nothing else.",
    )
    expires_at: datetime = Field(description="When it stops working (TileTokenMinutes after minting).")


class TileLabels(_Response):
    """The names of the tile's parts and its passing messages, in the connection's language."""

    region: str
    reauthorize: str
    new_window: str
    what_happened: str
    what_to_do: str
    who_can_fix: str
    time_left: str
    window_open: str
    popup_blocked: str
    refreshing: str


class TileStatus(_Response):
    """What the QBO tile shows: one connection's health in its language. Texts are plain text (the company
    name comes from QuickBooks): the tile sets them as text, never as HTML."""

    connection_id: str
    design: Literal["healthy", "attention", "disconnected", "pending"]
    state: Literal["PENDING", "HEALTHY", "NEEDS_ATTENTION", "DISCONNECTED"]
    lang: str = Field(description="The texts' language (BCP 47), for the tile's lang attribute.")
    company_name: str | None = None
    heading: str
    message: str
    title: str | None = Field(default=None, description="The issue's title, when there is one.")
    remedy: str | None = None
    who_can_fix: str | None = None
    consequence: str | None = None
    deadline: datetime | None = None
    days_left: int | None = None
    days_left_text: str | None = None
    last_success_at: datetime | None = None
    last_success_text: str | None = None
    reauthorize: bool = Field(description="Whether the tile offers the Reauthorize button.")
    reconnect_url: str | None = Field(
        default=None, description="What the Reauthorize button opens in a new window (when it is offered)."
    )
    labels: TileLabels


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


class ActivityItem(_Request):
    connection_id: str = Field(min_length=1, max_length=128, description="The connection the call used.")
    at: AwareDatetime = Field(description="When the product's call to Intuit happened (with its offset).")
    ok: bool = Field(description="Whether Intuit answered it successfully.")


class ActivityReport(RootModel[list[ActivityItem]]):
    """The product's Intuit calls since its last report: any number of items per connection (the
    service keeps the newest success and failure of each)."""

    root: list[ActivityItem] = Field(max_length=MAX_ITEMS)


class ActivityRefusal(_Response):
    index: int = Field(description="The item's position in the request.")
    connection_id: str
    reason: Literal["in_future", "too_old"]


class ActivityResponse(_Response):
    accepted: int = Field(description="Items that count as evidence.")
    connections: int = Field(description="Distinct connections among the accepted items.")
    written: int = Field(description="Connections whose evidence was updated (at most once a day each).")
    checks: int = Field(description="Connections with a newly reported failure: each is checked now.")
    unknown: int = Field(description="Items for connections the service does not have or no longer checks.")
    refused: list[ActivityRefusal] = Field(
        default_factory=list, description="Items refused: a time in the future, or more than 7 days ago."
    )


class ErrorResponse(_Response):
    error: str
    message: str
    state: str | None = None
    issue: str | None = None
