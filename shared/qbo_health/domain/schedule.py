"""When each connection is due: every connection gets a fixed hour of the day, spread by a stable hash."""

from __future__ import annotations

import hashlib
from datetime import datetime

from qbo_health.domain.model import Connection, ConnectionState

SLOTS_PER_DAY = 24


def check_slot(connection_id: str) -> int:
    digest = hashlib.sha256(connection_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % SLOTS_PER_DAY


def due_slot(now: datetime) -> int:
    return now.hour % SLOTS_PER_DAY


def slot_of(connection: Connection) -> int | None:
    """The stored slot: none for connections nobody checks (disconnected ones)."""
    if connection.state is ConnectionState.DISCONNECTED:
        return None
    return check_slot(connection.connection_id)
