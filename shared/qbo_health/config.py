"""Configuration as models: parsed once from the environment so a bad setting fails at cold start."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from qbo_health.errors import ConfigurationError


class _EnvModel(BaseModel):
    """Fields map to upper-case environment variables of the same name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        values = {name: source[name.upper()] for name in cls.model_fields if name.upper() in source}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            # Inputs stay out of the message: a misconfigured secret must not reach the cold-start log.
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
                for problem in error.errors(include_input=False)
            )
            raise ConfigurationError(f"{cls.__name__}: {problems}") from None


class StoreSettings(_EnvModel):
    connections_table: str = "qbo-health-connections"
    history_table: str = "qbo-health-history"
    control_table: str = "qbo-health-control"
    oauth_states_table: str = "qbo-health-oauth-states"
    aws_region: str = "us-east-1"


class VaultSettings(_EnvModel):
    token_key_id: str = Field(min_length=1)
    data_key_max_age_seconds: int = Field(default=300, ge=1, le=3600)
    data_key_max_uses: int = Field(default=10_000, ge=1)


class IntuitSettings(_EnvModel):
    """Where Intuit is and who we are to it.

    ``intuit_environment`` picks Intuit's endpoints: ``production``, ``sandbox`` or ``local`` (the simulator).
    ``intuit_base_url`` puts every endpoint on one host at Intuit's paths: required for ``local``, allowed for
    ``sandbox`` (a stand-in posing as Intuit's sandbox, as the tests of ``make local`` do), refused for
    ``production``. Credentials come inline (``INTUIT_CLIENT_ID``/``INTUIT_CLIENT_SECRET``) or from the secret
    ``intuit_credentials_secret`` (AWS, and the embedded stack's Secrets Manager).
    """

    intuit_environment: Literal["sandbox", "production", "local"] = "sandbox"
    intuit_base_url: str | None = None
    intuit_client_id: str | None = None
    intuit_client_secret: SecretStr | None = None
    intuit_credentials_secret: str | None = None
    # At most 20 s: the worker starts a check only with time for five calls at this timeout (150 s Lambda).
    intuit_timeout_seconds: float = Field(default=10.0, gt=0, le=20)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.intuit_environment == "local" and not self.intuit_base_url:
            raise ValueError("INTUIT_BASE_URL is required when INTUIT_ENVIRONMENT=local")
        if self.intuit_environment == "production" and self.intuit_base_url:
            raise ValueError("INTUIT_BASE_URL is for the simulator or a sandbox stand-in, never production")
        secret = self.intuit_client_secret.get_secret_value() if self.intuit_client_secret else ""
        has_inline = bool(self.intuit_client_id) and bool(secret)
        if not has_inline and not self.intuit_credentials_secret:
            raise ValueError("set INTUIT_CLIENT_ID and INTUIT_CLIENT_SECRET, or INTUIT_CREDENTIALS_SECRET")
        return self


class CheckSettings(_EnvModel):
    check_queue_url: str = Field(min_length=1)
    # Off only on the embedded stack, where the simulated clock (a message's `not_before`) delays messages.
    check_queue_native_delay: bool = True
    # Refresh when the last refresh is older than this: daily checks keep the 100-day window rolling.
    refresh_after_hours: float = Field(default=20.0, gt=0, le=72)
    # CompanyInfo is metered: never probe while success evidence (a probe, or the product's report of a
    # successful call) is more recent than this.
    probe_interval_hours: float = Field(default=20.0, gt=0, le=24 * 30)
    # The service's own monthly allowance of metered calls (Intuit's Builder tier gives the whole app
    # 500,000): paced across the month, spent where problems are likely (see domain.probe_budget).
    metered_call_budget: int = Field(default=100_000, ge=0, le=100_000_000)
    lease_seconds: int = Field(default=120, ge=10, le=900)
    # A first bad answer is re-checked after this delay before any issue opens (SQS allows up to 900 s).
    confirm_delay_seconds: int = Field(default=900, ge=0, le=900)
    # Warn this many days ahead of the 5-year hard cap.
    reauth_warning_days: int = Field(default=30, ge=1, le=365)
    # The scheduler runs hourly and sends the connections whose hash bucket is due.
    schedule_slots: int = Field(default=24, ge=1, le=24)
    scan_segments: int = Field(default=4, ge=1, le=64)
    # Outage guard: a run is a suspected provider outage when its transient-failure share or its newly
    # suspected issues exceed these (and the run checked at least ``outage_min_checks`` connections).
    outage_transient_share: float = Field(default=0.5, gt=0, le=1)
    outage_new_issue_share: float = Field(default=0.2, gt=0, le=1)
    outage_min_checks: int = Field(default=20, ge=1)
    # Checks of one batch in flight at once. A check mostly waits on Intuit; Lambda bills the wait, so the
    # whole batch of 10 at once bills one wait instead of ten (bench/README.md, "Worker").
    check_concurrency: int = Field(default=10, ge=1, le=10)


class ApiSettings(_EnvModel):
    """The API's settings. The link-signing key comes inline locally (``LINK_SIGNING_KEY``) and from the
    Secrets Manager secret ``LINK_SIGNING_SECRET`` on AWS."""

    # Where browsers reach the public routes: reconnect links and the OAuth redirect URI are built from it.
    public_base_url: str = Field(min_length=1, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    link_signing_key: SecretStr | None = None
    link_signing_secret: str | None = None
    # Reconnect links sit in e-mails for the whole escalation (14 days) and some more.
    reconnect_link_days: int = Field(default=30, ge=1, le=365)
    # A first-connect link lets its holder choose the company: it is opened at once, so it lives minutes.
    connect_link_minutes: int = Field(default=15, ge=1, le=1440)
    # The QBO tile's read-only token sits in the product's page: it lives minutes (the tile asks for another).
    tile_token_minutes: int = Field(default=10, ge=1, le=60)
    oauth_state_minutes: int = Field(default=10, ge=1, le=60)
    # The product's origin: the callback page posts its message to ``window.opener`` for this origin only.
    product_origin: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+$")
    # How long an access-token request waits for another holder of the lease (it probably refreshed).
    access_token_wait_seconds: float = Field(default=5.0, ge=0, le=25)

    @field_validator("product_origin", "link_signing_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _key_source(self) -> Self:
        key = self.link_signing_key.get_secret_value() if self.link_signing_key else ""
        if not key and not self.link_signing_secret:
            raise ValueError("set LINK_SIGNING_KEY, or LINK_SIGNING_SECRET (a Secrets Manager secret)")
        if key and len(key) < 32:
            raise ValueError("LINK_SIGNING_KEY must be at least 32 characters")
        return self

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url.rstrip('/')}/oauth/callback"


class WebhookSettings(_EnvModel):
    """Signed webhooks (docs/webhooks.md). Empty ``WEBHOOK_URL``: webhooks are off (the template then deploys
    no delivery function). ``WEBHOOK_ALLOW_LOOPBACK`` is set by the embedded local stack only: its receivers
    listen on 127.0.0.1, which production refuses like every other non-public address."""

    webhook_url: str = Field(default="", pattern=r"^(https?://[^\s/?#@]+(/[^\s#]*)?)?$")
    webhook_signing_secret: str = ""  # the Secrets Manager secret (ARN) holding the signing key
    webhook_queue_url: str = (
        ""  # the delivery queue: a failed attempt's message is hidden there until its retry
    )
    webhook_allow_loopback: bool = False
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    webhook_read_timeout_seconds: float = Field(default=10.0, gt=0, le=30)

    @model_validator(mode="after")
    def _https_outside_the_lab(self) -> Self:
        if self.webhook_url.startswith("http://") and not self.webhook_allow_loopback:
            raise ValueError("WEBHOOK_URL must be https://")
        return self


class BrandingSettings(_EnvModel):
    """How notices and result pages present the product. Values land in e-mails: each is validated here, so
    a bad one fails at cold start rather than in a customer's inbox."""

    product_name: str = Field(default="QBO Connection Health", min_length=1, max_length=80)
    # Where customers get help: an https URL or an e-mail address (empty for none).
    support_contact: str | None = Field(
        default=None, max_length=300, pattern=r"^(https://[^\s\"'<>]+|[^@\s\"'<>]{1,64}@[^@\s\"'<>]{1,255})$"
    )
    logo_url: str | None = Field(default=None, max_length=500, pattern=r"^https://[^\s\"'<>]+$")
    # It lands in style attributes, where HTML escaping does not help: only #RRGGBB passes.
    accent_color: str = Field(default="#2E7D32", pattern=r"^#[0-9A-Fa-f]{6}$")
    sender_name: str | None = Field(default=None, max_length=80, pattern=r"^[^\r\n<>@\"]+$")
    default_locale: Literal["en-US", "en-GB", "en-AU", "fr-CA", "es"] = "en-US"

    @field_validator("support_contact", "logo_url", "sender_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def support_url(self) -> str | None:
        return self.support_contact if self.support_contact and "@" not in self.support_contact else None

    @property
    def support_email(self) -> str | None:
        return self.support_contact if self.support_contact and "@" in self.support_contact else None


@cache
def store_settings() -> StoreSettings:
    return StoreSettings.from_env()


class StageDays(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    NOTICE: float = Field(default=0, ge=0)
    REMINDER_1: float = Field(default=3, ge=0)
    REMINDER_2: float = Field(default=7, ge=0)
    FINAL_WARNING: float = Field(default=12, ge=0)
    DISCONNECT: float = Field(default=14, gt=0, le=90)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        days = [self.NOTICE, self.REMINDER_1, self.REMINDER_2, self.FINAL_WARNING, self.DISCONNECT]
        if days != sorted(days) or self.FINAL_WARNING >= self.DISCONNECT:
            raise ValueError("stage days must ascend, with the final warning before the disconnect")
        return self


class IssuePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    days: StageDays = Field(default_factory=StageDays)
    note: str | None = Field(default=None, max_length=500)  # extra wording in this issue's notices


class EscalationPolicyModel(BaseModel):
    """``ESCALATION_POLICY`` (JSON): the default schedule and per-issue overrides, e.g.
    ``{"overrides": {"SUBSCRIPTION_LAPSED": {"days": {"DISCONNECT": 21, ...}, "note": "..."}}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: StageDays = Field(default_factory=StageDays)
    overrides: dict[
        Literal["ADMIN_ACCESS_LOST", "SUBSCRIPTION_LAPSED", "SUBSCRIPTION_ENDED", "AUTHORIZATION_EXPIRED"],
        IssuePolicy,
    ] = Field(default_factory=dict)


class EscalationSettings(_EnvModel):
    event_bus_name: str = Field(min_length=1)
    sender_email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    # The SES configuration set the notices are sent with: its event destination brings bounces and
    # complaints back (the notice-feedback function). Empty: none.
    ses_configuration_set: str = Field(default="", max_length=64)
    escalation_policy: EscalationPolicyModel = Field(default_factory=EscalationPolicyModel)
    escalation_dry_run: bool = False
    # Flapping damping (see README, Escalation): a problem back within this many days of healing continues
    # its episode and clock; the restored notice waits until the connection stayed healthy this many hours.
    flap_window_days: float = Field(default=7, ge=0, le=30)
    restored_after_hours: float = Field(default=24, ge=0, le=168)

    # Which notices also go to the QuickBooks user who authorized the connection (userinfo's e-mail), by issue
    # type (and REAUTH_DUE): comma-separated, empty for none. ADMIN_ACCESS_LOST's remedy is addressed to them.
    notify_authorizer: frozenset[
        Literal[
            "ADMIN_ACCESS_LOST",
            "SUBSCRIPTION_LAPSED",
            "SUBSCRIPTION_ENDED",
            "AUTHORIZATION_EXPIRED",
            "REAUTH_DUE",
        ]
    ] = frozenset({"ADMIN_ACCESS_LOST", "AUTHORIZATION_EXPIRED", "REAUTH_DUE"})

    @field_validator("notify_authorizer", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("escalation_policy", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value
