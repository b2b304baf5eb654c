"""Webhook decisions: the retry schedule, the payload, and the SSRF guard's production setting."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from local.template import load_template
from qbo_health.adapters.webhook_endpoint import WebhookEndpoint
from qbo_health.config import WebhookSettings
from qbo_health.domain.webhooks import (
    FIRST_RETRY,
    MAX_ATTEMPTS,
    address_allowed,
    retry_delay,
    retry_schedule,
    webhook_id,
    webhook_payload,
)
from qbo_health.errors import ConfigurationError, WebhookRefused

TEMPLATE = load_template()
PRODUCTION = WebhookSettings.from_env({})  # what a deployed function runs with (no local-only setting)


def test_retries_back_off_exponentially_for_more_than_a_day_then_stop():
    delays = [retry_delay(attempt) for attempt in range(1, MAX_ATTEMPTS)]
    assert delays[0] == FIRST_RETRY
    assert all(later == min(2 * earlier, timedelta(hours=8)) for earlier, later in itertools.pairwise(delays))
    assert all(delay is not None and delay <= timedelta(hours=12) for delay in delays)  # SQS's most
    assert retry_delay(MAX_ATTEMPTS) is None
    assert retry_schedule()[-1] >= timedelta(hours=24)


def test_the_queue_allows_every_attempt_and_keeps_messages_longer_than_the_attempts_take():
    queue = TEMPLATE["Resources"]["WebhookQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == MAX_ATTEMPTS
    assert timedelta(seconds=queue["MessageRetentionPeriod"]) > retry_schedule()[-1] + timedelta(hours=12)
    function = TEMPLATE["Resources"]["WebhookDeliveryFunction"]["Properties"]
    assert queue["VisibilityTimeout"] >= function["Timeout"]


def test_the_payload_is_the_event_detail_in_the_standard_webhooks_envelope():
    detail = {"event_id": "0b7c", "time": "2026-01-05T06:35:00Z", "kind": "NOTICE", "connection_id": "c-1"}
    event = {
        "id": "eb-1",
        "detail-type": "ConnectionNeedsAttention",
        "time": "2026-01-05T06:35:01Z",
        "detail": detail,
    }

    payload = webhook_payload(event)

    assert payload == {
        "type": "ConnectionNeedsAttention",
        "id": "0b7c",
        "timestamp": "2026-01-05T06:35:00Z",
        "data": detail,
    }
    assert webhook_id(payload) == "msg_0b7c"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - an address refused, not a bind
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not address_allowed(address)


def test_public_addresses_are_allowed_and_loopback_only_by_the_local_setting():
    assert address_allowed("93.184.216.34") and address_allowed("2606:2800:220:1:248:1893:25c8:1946")
    assert address_allowed("127.0.0.1", allow_loopback=True)
    assert not address_allowed("10.0.0.1", allow_loopback=True)
    assert not address_allowed("169.254.169.254", allow_loopback=True)


def test_production_does_not_allow_loopback_nor_plain_http():
    assert PRODUCTION.webhook_allow_loopback is False
    with pytest.raises(ConfigurationError, match="https"):
        WebhookSettings.from_env({"WEBHOOK_URL": "http://hooks.example.com/qbo"})


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "localhost"])
def test_the_production_setting_refuses_endpoints_at_non_public_addresses(host):
    endpoint = WebhookEndpoint(f"https://{host}/hooks", allow_loopback=PRODUCTION.webhook_allow_loopback)
    with pytest.raises(WebhookRefused, match="non-public"):
        endpoint.checked_address()


@pytest.mark.parametrize("private", ["127.0.0.1", "10.0.0.1", "169.254.169.254"])
def test_a_hostname_resolving_to_a_non_public_address_is_refused_even_beside_a_public_one(private):
    answers = {"hooks.example.com": ["93.184.216.34", private]}
    endpoint = WebhookEndpoint(
        "https://hooks.example.com/qbo", resolver=lambda host, port: answers[host], allow_loopback=False
    )
    with pytest.raises(WebhookRefused, match=private.replace(".", r"\.")):
        endpoint.checked_address()


def test_a_public_hostname_is_connected_to_at_the_address_that_was_checked():
    endpoint = WebhookEndpoint("https://hooks.example.com/qbo", resolver=lambda host, port: ["93.184.216.34"])
    assert endpoint.checked_address() == "93.184.216.34"
    assert endpoint.endpoint.host_header == "hooks.example.com"
