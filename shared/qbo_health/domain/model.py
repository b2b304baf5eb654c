"""Domain objects: what a connection is, independent of how it is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ConnectionState(StrEnum):
    PENDING = "PENDING"
    HEALTHY = "HEALTHY"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    DISCONNECTED = "DISCONNECTED"


class IssueType(StrEnum):
    ADMIN_ACCESS_LOST = "ADMIN_ACCESS_LOST"
    SUBSCRIPTION_LAPSED = "SUBSCRIPTION_LAPSED"
    AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"
    # The subscription was canceled or expired (CompanyInfo's SubscriptionStatus): resubscribe.
    SUBSCRIPTION_ENDED = "SUBSCRIPTION_ENDED"


class SubscriptionStatus(StrEnum):
    """CompanyInfo's ``SubscriptionStatus`` (see ``domain.subscription`` for what each means)."""

    TRIAL = "TRIAL"
    TRIALOPTIN = "TRIALOPTIN"
    SUBSCRIBED = "SUBSCRIBED"
    PAID = "PAID"
    RESTRICTED = "RESTRICTED"
    SUSPENDED = "SUSPENDED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    # Not an Intuit value: what we record when Intuit sent a value we do not know.
    UNKNOWN = "UNKNOWN"


class DisconnectReason(StrEnum):
    GRACE_PERIOD_EXPIRED = "GRACE_PERIOD_EXPIRED"
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"


@dataclass(frozen=True)
class Authorizer:
    """The Intuit user whose consent the tokens carry."""

    user_id: str
    email: str | None = None


@dataclass(frozen=True)
class PauseWindow:
    """A span in which escalation stood still (Intuit did not answer); ``end`` is None while it lasts."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class OpenIssue:
    """A confirmed problem: the customer has been (or is about to be) told."""

    type: IssueType
    episode_id: str
    first_seen_at: datetime
    opened_at: datetime
    deadline: datetime
    # Escalation notices recorded for this episode: (stage name, when sent or skipped).
    notices: tuple[tuple[str, datetime], ...] = ()
    # Spans in which this connection's checks got no answer from Intuit: its escalation stood still.
    pauses: tuple[PauseWindow, ...] = ()
    # Set on an episode that healed (see ``Connection.recovering``): when a check first found it healthy.
    healed_at: datetime | None = None

    @property
    def paused_now(self) -> bool:
        return any(pause.end is None for pause in self.pauses)


@dataclass(frozen=True)
class SuspectedIssue:
    """One bad answer seen; it becomes an OpenIssue only if a later re-check agrees."""

    type: IssueType
    first_seen_at: datetime
    intuit_tid: str | None = None


@dataclass(frozen=True)
class TokenTimes:
    """When the stored tokens stop working. Values are never here, only times."""

    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    hard_expires_at: datetime | None = None
    refreshed_at: datetime | None = None
    rotated_at: datetime | None = None


@dataclass(frozen=True)
class SealedTokens:
    """Envelope-encrypted token pair: opaque to everything but the token vault."""

    ciphertext: bytes
    encrypted_data_key: bytes
    key_id: str


@dataclass(frozen=True)
class Connection:
    connection_id: str
    tenant_id: str
    realm_id: str | None
    state: ConnectionState
    version: int = 0
    contacts: tuple[str, ...] = ()
    authorized_by: Authorizer | None = None
    issue: OpenIssue | None = None
    # An episode that healed and is kept for the damping window: a problem that returns within it continues
    # this episode and its clock (no new day-0 notice); the restored notice waits until it stayed healthy.
    recovering: OpenIssue | None = None
    suspect: SuspectedIssue | None = None
    tokens: TokenTimes = field(default_factory=TokenTimes)
    sealed_tokens: SealedTokens | None = None
    created_at: datetime | None = None
    last_check_at: datetime | None = None
    last_success_at: datetime | None = None
    transient_failures: int = 0
    on_hold: bool = False
    reauth_due_warned_at: datetime | None = None
    disconnect_reason: DisconnectReason | None = None
    disconnected_at: datetime | None = None
    # The SubscriptionStatus of the latest successful probe (None: never read, or CompanyInfo had none).
    subscription_status: SubscriptionStatus | None = None
    # QuickBooks' CompanyName, as the latest successful CompanyInfo read (or the reauthorization) gave it.
    # Text from outside: escaped wherever it is shown.
    company_name: str | None = None
    # Per-tenant presentation, from registration or import: the product's name in this connection's notices
    # (None: the configured one) and their language (None: the configured default).
    display_name: str | None = None
    locale: str | None = None
    # An API caller is waiting for an access token from whoever holds the lease (see service.access_tokens).
    access_wanted: bool = False
    # Goes up by one with every grant stored: links carry it, so a link works once (domain.connect_links).
    grant_generation: int = 0
    # Optional bindings the product set at registration for the first connect (IdentityMismatch otherwise).
    expected_realm_id: str | None = None
    expected_email: str | None = None
    # The escalator's disconnect notice until it went out: the connection stays in the open-issues index,
    # so a notice that failed (EventBridge down, say) is retried each hour instead of being lost.
    pending_notice: PendingNotice | None = None
    # When a probe last restored the connection after an issue, or verified it after connecting: problems
    # are likelier soon after (the probe budget weighs it).
    settled_at: datetime | None = None
    # The product's latest reported successful and failed Intuit call (``POST /connections/activity``);
    # written by that report only, never by a check.
    activity_ok_at: datetime | None = None
    activity_failed_at: datetime | None = None
    # False when read without the connection's profile (the daily check's lease reads only the hot item, so
    # that each write stays under 1 KB): ``contacts``, ``company_name``, ``display_name``, ``locale`` and the
    # expected bindings are then empty, and whoever needs them (the notices) loads the profile first.
    profile_loaded: bool = True


@dataclass(frozen=True)
class PendingNotice:
    kind: str
    episode_id: str
    issue: IssueType | None = None


@dataclass(frozen=True)
class StoredAccessToken:
    """An access token kept (sealed) apart from the connection, for the product to use until it expires.

    Apart, because a daily check never needs to keep one: the connection item stays under 1 KB, so each of
    the check's writes costs one write unit instead of three.
    """

    sealed: SealedTokens
    expires_at: datetime


@dataclass(frozen=True)
class TokenPair:
    """Clear tokens, alive only in memory between the vault and the Intuit client. Never logged."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    hard_expires_at: datetime | None = None

    def __repr__(self) -> str:  # keeps values out of tracebacks and debug logs
        return f"TokenPair(access_expires_at={self.access_expires_at}, refresh_expires_at=...)"

    __str__ = __repr__

    def without_access_token(self) -> TokenPair:
        """What the connection item keeps: the refresh token and times (the access token lives apart)."""
        return TokenPair(
            "", self.refresh_token, self.access_expires_at, self.refresh_expires_at, self.hard_expires_at
        )


@dataclass(frozen=True)
class IntuitFailure:
    """What went wrong talking to Intuit, reduced to the facts classification needs.

    ``status`` is the HTTP status (None for transport failures), ``codes`` the fault codes found in any
    shape (JSON ``Fault``/``fault``, XML, or a Fault inside HTTP 200), ``oauth_error`` the token endpoint's
    RFC 6749 ``error`` value, ``transport`` one of ``timeout``/``connection`` when no answer arrived, or
    ``not_started`` when the call was not made for lack of time.
    """

    status: int | None
    codes: tuple[str, ...] = ()
    oauth_error: str | None = None
    transport: str | None = None
    intuit_tid: str | None = None
    message: str | None = None
    endpoint: str = "api"
    # The answer had no body at all (Intuit's answer to revoking an already revoked token, for one).
    empty_body: bool = False
