"""Steps the browser tests share."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from qbo_health import wiring
from qbo_health.domain.model import ConnectionState


def confirm_admin_issue(stack: Any, api_client: Any, seeded: Any) -> None:
    """The authorizing admin leaves the company; a check and its confirming re-check open the issue."""
    stack.intuit.control.remove_user(seeded.realm_id, seeded.user_id)
    stack.clock.advance(timedelta(days=1))
    api_client.check_now(seeded.connection_id)
    stack.clock.advance(timedelta(minutes=15))
    api_client.check_now(seeded.connection_id)
    assert wiring.connection_store().get(seeded.connection_id).state is ConnectionState.NEEDS_ATTENTION
