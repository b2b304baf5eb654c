"""The composition root: builds real adapters from configuration, once per Lambda container."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from typing import Any

import boto3

from qbo_health import clock
from qbo_health.adapters.check_queue import CheckQueue
from qbo_health.adapters.connection_store import ConnectionStore
from qbo_health.adapters.control import ControlStore
from qbo_health.adapters.dynamo_models import bind_tables
from qbo_health.adapters.history import HistoryLog
from qbo_health.adapters.intuit import IntuitClient, IntuitEndpoints
from qbo_health.adapters.token_vault import TokenVault
from qbo_health.config import CheckSettings, IntuitSettings, StoreSettings, VaultSettings
from qbo_health.domain.check import CheckPolicy
from qbo_health.domain.outage import OutageThresholds
from qbo_health.errors import ConfigurationError
from qbo_health.service.check_batch import BatchContext
from qbo_health.service.health_check import CheckDeps


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
    return boto3.client(service, region_name=store_settings().aws_region)  # type: ignore[call-overload]


@cache
def intuit_client() -> IntuitClient:
    settings = IntuitSettings.from_env()
    client_id, client_secret = _intuit_credentials(settings)
    if settings.intuit_environment == "local":
        endpoints = IntuitEndpoints.on_host(settings.intuit_base_url or "")
    elif settings.intuit_environment == "production":
        endpoints = IntuitEndpoints.production()
    else:
        endpoints = IntuitEndpoints.sandbox()
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
        return str(secret["client_id"]), str(secret["client_secret"])
    except (ValueError, KeyError) as error:
        raise ConfigurationError("the Intuit secret needs client_id and client_secret") from error


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
def control_store() -> ControlStore:
    store_settings()
    return ControlStore()


@cache
def history_log() -> HistoryLog:
    store_settings()
    return HistoryLog()


@cache
def check_queue() -> CheckQueue:
    settings = check_settings()
    return CheckQueue(
        aws_client("sqs"), settings.check_queue_url, native_delay=settings.check_queue_native_delay
    )


def check_policy(settings: CheckSettings) -> CheckPolicy:
    return CheckPolicy(
        refresh_after=timedelta(hours=settings.refresh_after_hours),
        probe_interval=timedelta(hours=settings.probe_interval_hours),
        confirm_delay=timedelta(seconds=settings.confirm_delay_seconds),
        reauth_warning=timedelta(days=settings.reauth_warning_days),
    )


def outage_thresholds(settings: CheckSettings) -> OutageThresholds:
    return OutageThresholds(
        transient_share=settings.outage_transient_share,
        new_issue_share=settings.outage_new_issue_share,
        min_checks=settings.outage_min_checks,
    )


@cache
def check_deps() -> CheckDeps:
    settings = check_settings()
    return CheckDeps(
        store=connection_store(),
        vault=token_vault(),
        intuit=intuit_client(),
        history=history_log(),
        queue=check_queue(),
        policy=check_policy(settings),
        lease_seconds=settings.lease_seconds,
    )


@cache
def check_batch_context() -> BatchContext:
    return BatchContext(
        deps=check_deps(),
        control=control_store(),
        thresholds=outage_thresholds(check_settings()),
        now=clock.now,
    )


def reset() -> None:
    """Forget every built collaborator (the embedded stack calls this after it recreates resources)."""
    for builder in (
        store_settings,
        check_settings,
        aws_client,
        intuit_client,
        token_vault,
        connection_store,
        control_store,
        history_log,
        check_queue,
        check_deps,
        check_batch_context,
    ):
        builder.cache_clear()
