"""How the CLI shows connections: table rows, a connection's fields, CSV rows. Presentation only.

Token values never reach this module's output: a connection carries only sealed tokens, and those are
shown as present or absent, never as bytes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from qbo_health.domain.deliverability import Suppression, normalized
from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import Connection, ConnectionState
from qbo_health.ops.table import Cell

LIST_HEADERS = (
    "ID",
    "TENANT",
    "COMPANY",
    "STATE",
    "ISSUE",
    "DAYS LEFT",
    "LAST CHECK",
    "LAST SUCCESS",
    "TRANSIENT",
    "HOLD",
)

CSV_HEADERS = (
    "connection_id",
    "tenant_id",
    "realm_id",
    "company_name",
    "issue",
    "user_message",
    "remedy",
    "opened_at",
    "deadline",
    "days_left",
    "contacts",
    "notices_sent",
)

# Fields never shown, whatever their content (the sealed token pair).
_HIDDEN = frozenset({"sealed_tokens", "profile_loaded"})
_STATE_ORDER = {
    ConnectionState.NEEDS_ATTENTION: 0,
    ConnectionState.PENDING: 1,
    ConnectionState.HEALTHY: 2,
    ConnectionState.DISCONNECTED: 3,
}


def days_left(connection: Connection, now: datetime) -> int | None:
    """Whole days until the open issue's deadline (rounded up, never negative), as the API reports it."""
    if connection.issue is None:
        return None
    return max(0, math.ceil((connection.issue.deadline - now).total_seconds() / 86400))


def moment(value: datetime | None) -> str | None:
    """A time for a terminal: UTC, to the minute."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") + "Z"


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def urgency(connection: Connection) -> tuple[int, float, str]:
    """Sort key: broken first, nearest deadline first, then by id."""
    deadline = connection.issue.deadline.timestamp() if connection.issue else math.inf
    return (_STATE_ORDER.get(connection.state, 9), deadline, connection.connection_id)


def list_row(connection: Connection, now: datetime) -> list[Cell]:
    return [
        connection.connection_id,
        connection.tenant_id,
        connection.company_name,
        connection.state.value,
        connection.issue.type.value if connection.issue else None,
        days_left(connection, now),
        moment(connection.last_check_at),
        moment(connection.last_success_at),
        connection.transient_failures,
        "yes" if connection.on_hold else "",
    ]


def connection_fields(connection: Connection, now: datetime) -> list[tuple[str, Cell]]:
    """Every public field of the connection (new fields appear on their own), then the issue's wording."""
    pairs: list[tuple[str, Cell]] = []
    for field in dataclasses.fields(connection):
        if field.name in _HIDDEN:
            continue
        pairs += _flatten(field.name, getattr(connection, field.name))
    pairs.append(("tokens.sealed", "present" if connection.sealed_tokens else "absent"))
    if connection.issue is not None:
        guidance = guidance_for(connection.issue.type)
        pairs += [
            ("issue.days_left", days_left(connection, now)),
            ("issue.title", guidance.title),
            ("issue.user_message", guidance.user_message),
            ("issue.remedy", guidance.remedy),
            ("issue.who_can_fix", guidance.who_can_fix),
            ("issue.consequence", guidance.consequence_for(connection.issue.deadline)),
        ]
    return pairs


def _flatten(name: str, value: Any) -> list[tuple[str, Cell]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: list[tuple[str, Cell]] = []
        for field in dataclasses.fields(value):
            out += _flatten(f"{name}.{field.name}", getattr(value, field.name))
        return out
    return [(name, _cell(value))]


def _cell(value: Any) -> Cell:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple | list):
        if not value:
            return None
        return ", ".join(_notice_text(item) if isinstance(item, tuple) else str(item) for item in value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _notice_text(item: tuple[Any, ...]) -> str:
    """A (stage, time) pair from an issue's notices."""
    return "@".join(iso(part) if isinstance(part, datetime) else str(part) for part in item)


def history_rows(entries: Iterable[dict[str, object]]) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for entry in entries:
        at, detail = entry.get("at"), entry.get("detail")
        pairs = sorted(detail.items()) if isinstance(detail, dict) else []
        text = ", ".join(f"{key}={value}" for key, value in pairs)
        rows.append([iso(at) if isinstance(at, datetime) else str(at), str(entry.get("kind")), text or None])
    return rows


def csv_row(connection: Connection, now: datetime) -> list[str]:
    issue = connection.issue
    assert issue is not None
    guidance = guidance_for(issue.type)
    left = days_left(connection, now)
    values = [
        connection.connection_id,
        connection.tenant_id,
        connection.realm_id or "",
        connection.company_name or "",
        issue.type.value,
        guidance.user_message,
        guidance.remedy,
        iso(issue.opened_at),
        iso(issue.deadline),
        "" if left is None else str(left),
        "; ".join(connection.contacts),
        "; ".join(_notice_text(notice) for notice in issue.notices),
    ]
    return [spreadsheet_safe(value) for value in values]


def spreadsheet_safe(value: str) -> str:
    """Keep a value a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...) as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def sort_for_display(connections: Sequence[Connection]) -> list[Connection]:
    return sorted(connections, key=urgency)


def suppressed_fields(
    contacts: Sequence[str], suppressed: Mapping[str, Suppression]
) -> list[tuple[str, Cell]]:
    """The contacts the notices' e-mail skips (SES reported a hard bounce or a complaint), and since when."""
    pairs: list[tuple[str, Cell]] = []
    for contact in contacts:
        found = suppressed.get(normalized(contact))
        if found is not None:
            why = found.reason.value + (f" ({found.detail})" if found.detail else "")
            pairs.append((f"suppressed.{contact}", f"{why} since {moment(found.at)}"))
    return pairs
