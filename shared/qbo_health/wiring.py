"""The composition root: builds real adapters from configuration, once per Lambda container."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from email.utils import formataddr
from functools import cache
from typing import TYPE_CHECKING, Any

from qbo_health import clock, invocation
from qbo_health.adapters.check_queue import CheckQueue
from qbo_health.adapters.connection_store import ConnectionStore
from qbo_health.adapters.control import CachedOutageFlag, ControlStore
from qbo_health.adapters.dynamo_models import bind_tables
from qbo_health.adapters.history import AccessTokenCache, HistoryLog, TokenRecoveryLog
from qbo_health.adapters.intuit import IntuitClient, IntuitEndpoints
from qbo_health.adapters.meter import MeterStore
from qbo_health.adapters.notice_channels import EmailChannel, EventChannel, NoticeClaims
from qbo_health.adapters.suppressions import SuppressionStore
from qbo_health.adapters.token_vault import TokenVault
from qbo_health.config import (
    ApiSettings,
    BrandingSettings,
    CheckSettings,
    EscalationPolicyModel,
    EscalationSettings,
    IntuitSettings,
    StageDays,
    StoreSettings,
    VaultSettings,
    WebhookSettings,
)
from qbo_health.domain.check import CheckPolicy, lease_too_short
from qbo_health.domain.escalation import EscalationPolicy, Schedule, Stage
from qbo_health.domain.model import Connection, DisconnectReason, IssueType
from qbo_health.domain.notices import Brand
from qbo_health.domain.outage import OutageThresholds
from qbo_health.domain.probe_budget import BudgetPolicy
from qbo_health.errors import ConfigurationError
from qbo_health.messages import CheckRequest
from qbo_health.service.health_check import (
    STORE_TIME_PER_CHECK,
    CheckDeps,
    CheckResult,
    check_connection,
    longest_check,
)
from qbo_health.service.notices import Notices

if TYPE_CHECKING:  # each function imports only the service it runs (cold start): see the builders below
    from qbo_health.adapters.oauth_states import OAuthStateStore
    from qbo_health.service.api_deps import ApiDeps
    from qbo_health.service.check_batch import BatchContext
    from qbo_health.service.escalation import EscalationDeps
    from qbo_health.service.links import LinkSigner
    from qbo_health.service.tile_tokens import TileTokenSigner
    from qbo_health.service.webhooks import WebhookDeps


@cache
def store_settings() -> StoreSettings:
    settings = StoreSettings.from_env()
    bind_tables(settings)
    return settings


@cache
def check_settings() -> CheckSettings:
    return CheckSettings.from_env()


@cache
def aws_client(service: str) -> Any:
    return LazyClient(service, store_settings().aws_region)


class LazyClient:
    """A boto3 client made on first use. Building one loads its service model (tens of ms each), and most
    invocations never touch most clients: a healthy check sends no e-mail, no event and no SQS message."""

    def __init__(self, service: str, region: str) -> None:
        self._service, self._region = service, region
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def _made(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # importing boto3 alone costs ~100 ms: paid only when a client is needed

                    self._client = boto3.client(self._service, region_name=self._region)  # type: ignore[call-overload]
        return self._client


@cache
def intuit_settings() -> IntuitSettings:
    return IntuitSettings.from_env()


def intuit_timeout() -> timedelta:
    return timedelta(seconds=intuit_settings().intuit_timeout_seconds)


@cache
def intuit_client() -> IntuitClient:
    settings = intuit_settings()
    client_id, client_secret = _intuit_credentials(settings)
    endpoints = IntuitEndpoints.of_environment(settings.intuit_environment, settings.intuit_base_url)
    return IntuitClient(
        endpoints,
        client_id,
        client_secret,
        clock=clock.current(),
        timeout_seconds=settings.intuit_timeout_seconds,
    )


def _intuit_credentials(settings: IntuitSettings) -> tuple[str, str]:
    if settings.intuit_client_id and settings.intuit_client_secret:
        return settings.intuit_client_id, settings.intuit_client_secret.get_secret_value()
    from aws_lambda_powertools.utilities import parameters

    raw = parameters.get_secret(settings.intuit_credentials_secret or "", max_age=300)
    try:
        secret = json.loads(raw if isinstance(raw, str) else raw.decode())
        client_id, client_secret = str(secret["client_id"]), str(secret["client_secret"])
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError("the Intuit secret must be JSON with client_id and client_secret") from None
    if not client_id or not client_secret:
        raise ConfigurationError(
            f"the Intuit secret {settings.intuit_credentials_secret} has no client_id/client_secret yet: "
            "put the app's credentials in it (README, Deploy)"
        )
    return client_id, client_secret


@cache
def token_vault() -> TokenVault:
    settings = VaultSettings.from_env()
    return TokenVault(
        aws_client("kms"),
        settings.token_key_id,
        clock.current(),
        max_age_seconds=settings.data_key_max_age_seconds,
        max_uses=settings.data_key_max_uses,
    )


@cache
def connection_store() -> ConnectionStore:
    store_settings()
    return ConnectionStore()


@cache
def suppression_store() -> SuppressionStore:
    store_settings()
    return SuppressionStore()


@cache
def control_store() -> ControlStore:
    store_settings()
    return ControlStore()


@cache
def history_log() -> HistoryLog:
    store_settings()
    return HistoryLog()


@cache
def access_token_cache() -> AccessTokenCache:
    store_settings()
    return AccessTokenCache()


@cache
def check_queue() -> CheckQueue:
    settings = check_settings()
    return CheckQueue(
        aws_client("sqs"), settings.check_queue_url, native_delay=settings.check_queue_native_delay
    )


def check_policy(settings: CheckSettings, escalation: EscalationPolicy | None = None) -> CheckPolicy:
    return CheckPolicy(
        escalation=escalation or EscalationPolicy(),
        refresh_after=timedelta(hours=settings.refresh_after_hours),
        probe_interval=timedelta(hours=settings.probe_interval_hours),
        confirm_delay=timedelta(seconds=settings.confirm_delay_seconds),
        reauth_warning=timedelta(days=settings.reauth_warning_days),
    )


def budget_policy(settings: CheckSettings) -> BudgetPolicy:
    return BudgetPolicy(
        monthly_budget=settings.metered_call_budget,
        probe_interval=timedelta(hours=settings.probe_interval_hours),
    )


@cache
def meter_store() -> MeterStore:
    settings = check_settings()
    store_settings()
    return MeterStore(settings.metered_call_budget)


def outage_thresholds(settings: CheckSettings) -> OutageThresholds:
    return OutageThresholds(
        transient_share=settings.outage_transient_share,
        new_issue_share=settings.outage_new_issue_share,
        min_checks=settings.outage_min_checks,
    )


@cache
def check_deps() -> CheckDeps:
    settings = check_settings()
    escalation = escalation_settings()
    unsafe = lease_too_short(timedelta(seconds=settings.lease_seconds), intuit_timeout())
    if unsafe:  # every function builds these at cold start: a bad pair of settings fails there
        raise ConfigurationError(unsafe)
    return CheckDeps(
        store=connection_store(),
        vault=token_vault(),
        intuit=intuit_client(),
        history=history_log(),
        queue=check_queue(),
        recovery=TokenRecoveryLog(),
        access_tokens=access_token_cache(),
        notifier=notices(),
        outage=CachedOutageFlag(control_store()),
        meter=meter_store(),
        policy=check_policy(settings, escalation_policy(escalation.escalation_policy, escalation)),
        lease_seconds=settings.lease_seconds,
        time_left=invocation.time_left,
        refresh_time_needed=intuit_timeout() + STORE_TIME_PER_CHECK,
    )


@cache
def escalation_settings() -> EscalationSettings:
    return EscalationSettings.from_env()


@cache
def branding_settings() -> BrandingSettings:
    return BrandingSettings.from_env()


def brand() -> Brand:
    settings = branding_settings()
    return Brand(
        product_name=settings.product_name,
        support_url=settings.support_url,
        support_email=settings.support_email,
        logo_url=settings.logo_url,
        accent_color=settings.accent_color,
        sender_name=settings.sender_name,
    )


@cache
def notices() -> Notices:
    settings = escalation_settings()
    branding = branding_settings()
    store_settings()
    sender = formataddr((branding.sender_name, settings.sender_email)) if branding.sender_name else None
    return Notices(
        claims=NoticeClaims(),
        email=EmailChannel(
            aws_client("sesv2"), sender or settings.sender_email, settings.ses_configuration_set
        ),
        events=EventChannel(aws_client("events"), settings.event_bus_name),
        reconnect_url=_reconnect_url,
        dry_run=settings.escalation_dry_run,
        brand=brand(),
        default_locale=branding.default_locale,
        notify_authorizer=frozenset(settings.notify_authorizer),
        profiles=connection_store(),
        suppressions=suppression_store(),
    )


def _reconnect_url(connection: Connection, now: datetime) -> str:
    return link_signer().link_for(connection, now).url  # the signer is built when a notice first needs it


def escalation_policy(
    model: EscalationPolicyModel, settings: EscalationSettings | None = None
) -> EscalationPolicy:
    def schedule(days: StageDays) -> Schedule:
        return Schedule(
            stage_days=(
                (Stage.NOTICE, days.NOTICE),
                (Stage.REMINDER_1, days.REMINDER_1),
                (Stage.REMINDER_2, days.REMINDER_2),
                (Stage.FINAL_WARNING, days.FINAL_WARNING),
            ),
            disconnect_day=days.DISCONNECT,
        )

    damping = {}
    if settings is not None:
        damping = {
            "flap_window": timedelta(days=settings.flap_window_days),
            "restored_after": timedelta(hours=settings.restored_after_hours),
        }
    return EscalationPolicy(
        default=schedule(model.default),
        overrides={IssueType(issue): schedule(rule.days) for issue, rule in model.overrides.items()},
        **damping,
    )


@cache
def escalation_deps() -> EscalationDeps:
    from qbo_health.service.disconnect import disconnect_connection, longest_revoke
    from qbo_health.service.escalation import EscalationDeps

    settings = escalation_settings()
    deps = check_deps()

    def recheck(connection_id: str, now: datetime, *, hold_lease: bool = False) -> CheckResult:
        request = CheckRequest(connection_id=connection_id, reason="escalation")
        return check_connection(request, deps, now, hold_lease=hold_lease)

    def disconnect(
        connection_id: str,
        reason: DisconnectReason,
        now: datetime,
        *,
        episode_id: str | None = None,
        lease_owner: str | None = None,
    ) -> Connection:
        return disconnect_connection(
            connection_id, reason, deps, now, episode_id=episode_id, lease_owner=lease_owner
        )

    return EscalationDeps(
        store=connection_store(),
        control=control_store(),
        notices=notices(),
        history=history_log(),
        recheck=recheck,
        disconnect=disconnect,
        policy=escalation_policy(settings.escalation_policy, settings),
        thresholds=outage_thresholds(check_settings()),
        notes={issue: rule.note for issue, rule in settings.escalation_policy.overrides.items() if rule.note},
        dry_run=settings.escalation_dry_run,
        time_per_connection=longest_check(intuit_timeout()) + longest_revoke(intuit_timeout()),
    )


@cache
def check_batch_context() -> BatchContext:
    from qbo_health.service.check_batch import BatchContext

    return BatchContext(
        deps=check_deps(),
        control=control_store(),
        thresholds=outage_thresholds(check_settings()),
        now=clock.now,
        check_time_needed=longest_check(intuit_timeout()),
        concurrency=check_settings().check_concurrency,
    )


# --- API -----------------------------------------------------------------------------------------------


@cache
def api_settings() -> ApiSettings:
    return ApiSettings.from_env()


def _link_key(settings: ApiSettings) -> bytes:
    if settings.link_signing_key is not None and settings.link_signing_key.get_secret_value():
        return settings.link_signing_key.get_secret_value().encode()
    from aws_lambda_powertools.utilities import parameters

    raw = parameters.get_secret(settings.link_signing_secret or "", max_age=300)
    key = raw.encode() if isinstance(raw, str) else bytes(raw)
    if len(key) < 32:
        raise ConfigurationError("the link-signing secret must be at least 32 characters")
    return key


@cache
def link_signer() -> LinkSigner:
    from qbo_health.service.links import LinkSigner

    settings = api_settings()
    return LinkSigner(
        lambda: _link_key(settings),
        settings.public_base_url,
        lifetime=timedelta(days=settings.reconnect_link_days),
        connect_lifetime=timedelta(minutes=settings.connect_link_minutes),
    )


@cache
def tile_token_signer() -> TileTokenSigner:
    from qbo_health.service.tile_tokens import TileTokenSigner

    settings = api_settings()
    return TileTokenSigner(
        lambda: _link_key(settings), lifetime=timedelta(minutes=settings.tile_token_minutes)
    )


@cache
def oauth_state_store() -> OAuthStateStore:
    from qbo_health.adapters.oauth_states import OAuthStateStore

    store_settings()
    return OAuthStateStore()


@cache
def api_deps() -> ApiDeps:
    from qbo_health.service.api_deps import ApiDeps

    settings = api_settings()
    return ApiDeps(
        check=check_deps(),
        store=connection_store(),
        states=oauth_state_store(),
        signer=link_signer(),
        oauth=intuit_client(),
        redirect_uri=settings.redirect_uri,
        rechecks=control_store(),
        activity=connection_store(),
        tile_tokens=tile_token_signer(),
        product_origin=settings.product_origin,
        default_locale=branding_settings().default_locale,
        state_ttl=timedelta(minutes=settings.oauth_state_minutes),
        access_token_wait_seconds=settings.access_token_wait_seconds,
        intuit_timeout=intuit_timeout(),
        suppressions=suppression_store(),
    )


def reset() -> None:
    """Forget every built collaborator (the embedded stack calls this after it recreates resources)."""
    for builder in (
        store_settings,
        check_settings,
        aws_client,
        intuit_settings,
        intuit_client,
        token_vault,
        connection_store,
        control_store,
        suppression_store,
        meter_store,
        history_log,
        access_token_cache,
        check_queue,
        check_deps,
        check_batch_context,
        escalation_settings,
        branding_settings,
        notices,
        escalation_deps,
        api_settings,
        link_signer,
        tile_token_signer,
        oauth_state_store,
        api_deps,
    ):
        builder.cache_clear()
    reset_webhooks()


# --- webhooks ------------------------------------------------------------------------------------------


@cache
def webhook_settings() -> WebhookSettings:
    settings = WebhookSettings.from_env()
    if not settings.webhook_url or not settings.webhook_signing_secret or not settings.webhook_queue_url:
        raise ConfigurationError(
            "webhook delivery needs WEBHOOK_URL, WEBHOOK_SIGNING_SECRET, WEBHOOK_QUEUE_URL"
        )
    return settings


def _webhook_key(settings: WebhookSettings) -> str:
    from aws_lambda_powertools.utilities import parameters

    raw = parameters.get_secret(settings.webhook_signing_secret, max_age=300)
    key = raw if isinstance(raw, str) else bytes(raw).decode()
    if not key:
        raise ConfigurationError("the webhook signing secret is empty")
    return key


@cache
def webhook_deps() -> WebhookDeps:
    from qbo_health.adapters.webhook_endpoint import WebhookEndpoint
    from qbo_health.adapters.webhook_queue import WebhookRetries
    from qbo_health.service.webhooks import WebhookDeps

    settings = webhook_settings()
    return WebhookDeps(
        endpoint=WebhookEndpoint(
            settings.webhook_url,
            allow_loopback=settings.webhook_allow_loopback,
            connect_timeout=settings.webhook_connect_timeout_seconds,
            read_timeout=settings.webhook_read_timeout_seconds,
        ),
        signing_key=lambda: _webhook_key(settings),
        retries=WebhookRetries(aws_client("sqs"), settings.webhook_queue_url),
        now=clock.now,
    )


def reset_webhooks() -> None:
    for builder in (webhook_settings, webhook_deps):
        builder.cache_clear()
