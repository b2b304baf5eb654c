"""Webhook decisions: when to try a delivery again, what the receiver gets, which addresses we may call.

Pure: no I/O. The delivery service (qbo_health/service/webhooks.py) applies these decisions; docs/webhooks.md
describes them to the product's developers.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

# Exponential backoff: a minute after the first failure, doubling, at most 8 hours apart (SQS hides a
# message for at most 12 hours per receive, "Amazon SQS visibility timeout"; 8 hours keeps a margin).
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=8)
# 13 attempts span 32.5 hours: a receiver down for a full day still gets every event once it is back.
MAX_ATTEMPTS = 13


def retry_delay(attempt: int) -> timedelta | None:
    """How long to wait after failed attempt number ``attempt`` (1-based); None once attempts are used up."""
    if attempt >= MAX_ATTEMPTS:
        return None
    return min(FIRST_RETRY * 2 ** (attempt - 1), LONGEST_RETRY)


def retry_schedule() -> list[timedelta]:
    """Each attempt's time after the first one (attempt 1 at zero)."""
    offsets, elapsed = [timedelta(0)], timedelta(0)
    for attempt in range(1, MAX_ATTEMPTS):
        delay = retry_delay(attempt)
        assert delay is not None
        elapsed += delay
        offsets.append(elapsed)
    return offsets


def is_delivered(status: int) -> bool:
    """Standard Webhooks: any 2xx is success; everything else (redirects included) is retried."""
    return 200 <= status < 300


def webhook_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """The body sent for one EventBridge event: the Standard Webhooks envelope around the event's detail.

    ``data`` is the detail exactly as the bus carries it (schemas/events/<type>.json); ``id`` is the detail's
    ``event_id``, stable across re-sends, so the receiver can drop repeats by it.
    """
    detail = event.get("detail") or {}
    return {
        "type": str(event.get("detail-type", "")),
        "id": str(detail.get("event_id") or event.get("id", "")),
        "timestamp": str(detail.get("time") or event.get("time", "")),
        "data": detail,
    }


def webhook_id(payload: Mapping[str, Any]) -> str:
    """The ``webhook-id`` header: the same on every attempt of one event (receivers deduplicate by it)."""
    return f"msg_{payload['id']}"


def payload_body(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def address_allowed(address: str, *, allow_loopback: bool = False) -> bool:
    """Whether a resolved address is one a webhook may be sent to: globally routable unicast only.

    Refuses private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local (169.254/16, where cloud
    metadata lives, and fe80::/10), carrier-grade NAT, multicast, reserved and unspecified addresses, and
    IPv4 addresses hidden in IPv6 (mapped, 6to4, NAT64). ``allow_loopback`` is for the embedded local stack only.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_allowed(str(embedded), allow_loopback=allow_loopback)
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast
