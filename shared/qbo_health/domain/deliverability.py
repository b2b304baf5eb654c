"""Which addresses stop getting our e-mail after SES reported a bounce or a complaint. Pure.

A hard (permanent) bounce means the address does not exist or refuses us for good, and a complaint means the
person marked a notice as spam: both are suppressed, for every connection that lists the address (SES counts
bounces and complaints against the whole account, whatever connection the e-mail was for). A soft
(transient or undetermined) bounce is left alone: the next notice may well arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SuppressionReason(StrEnum):
    BOUNCE = "BOUNCE"
    COMPLAINT = "COMPLAINT"


@dataclass(frozen=True)
class Suppression:
    """An address our notices skip, why, and since when (``detail``: SES's bounce subtype, if any)."""

    reason: SuppressionReason
    at: datetime
    detail: str | None = None


def normalized(address: str) -> str:
    """One spelling per mailbox for matching (domains are case-insensitive, and in practice local parts)."""
    return address.strip().lower()


def to_suppress(
    kind: str,
    *,
    bounce_type: str | None,
    bounce_sub_type: str | None,
    bounced: Iterable[str],
    complained: Iterable[str],
    feedback_type: str | None,
    at: datetime,
) -> dict[str, Suppression]:
    """The addresses an SES event record suppresses (normalized), each with its reason."""
    if kind == "Bounce" and bounce_type == "Permanent":
        found = Suppression(SuppressionReason.BOUNCE, at, bounce_sub_type)
        return {normalized(address): found for address in bounced}
    if kind == "Complaint" and feedback_type != "not-spam":
        found = Suppression(SuppressionReason.COMPLAINT, at, feedback_type)
        return {normalized(address): found for address in complained}
    return {}


def reachable(recipients: Iterable[str], suppressed: Mapping[str, Suppression]) -> list[str]:
    """The recipients not suppressed."""
    return [address for address in recipients if normalized(address) not in suppressed]
