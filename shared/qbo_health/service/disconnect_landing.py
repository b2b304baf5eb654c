"""Intuit's Disconnect URL: a hint that a company disconnected our app, never proof of anything.

Anyone can open the URL with any ``realmId``, so it may only ask the worker to look, and at most once per
company per window: a conditional write with a TTL (the control table) lets the first landing through and
swallows the rest, so a flood of GETs costs one check, not one token refresh and one metered read each.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from qbo_health.messages import CheckRequest
from qbo_health.observability import logger
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.reauthorization import REALM_PATTERN

# Our choice: Intuit calls the URL once per disconnect; a real disconnect missed inside the window is still
# found by that company's daily check (a guess at a window long enough to blunt a flood, short enough to
# notice a second disconnect the same day).
RECHECK_WINDOW = timedelta(hours=1)
MAX_RECHECKS = 25


def recheck_after_landing(realm_id: str | None, deps: ApiDeps, now: datetime) -> int:
    """Queue a re-check of the realm's connections unless one was queued within the window; how many."""
    if not realm_id or not re.fullmatch(REALM_PATTERN, realm_id):
        return 0
    ids = deps.store.ids_for_realm(realm_id)[:MAX_RECHECKS]
    # Read first: a realm we do not hold costs no write, whatever the number of GETs.
    if not ids or not deps.rechecks.claim_disconnect_recheck(realm_id, now, RECHECK_WINDOW):
        logger.info("disconnect landing", extra={"rechecks": 0, "known": bool(ids)})
        return 0
    deps.check.queue.send([CheckRequest(connection_id=cid, reason="disconnect_url") for cid in ids])
    logger.info("disconnect landing", extra={"rechecks": len(ids)})
    return len(ids)
