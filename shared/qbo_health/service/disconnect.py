"""Disconnect a connection: revoke at Intuit (best effort), delete the tokens, record why.

Used by the API (the customer asked) and by the escalator (the grace period ran out). Under the lease, so a
running check or token refresh never races the deletion.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

from qbo_health.domain.check import ConnectionEvent, EventKind, Transition, disconnected
from qbo_health.domain.classification import FailureKind, classify, revoke_already_done
from qbo_health.domain.model import Connection, DisconnectReason
from qbo_health.errors import DisconnectAverted, IntuitCallFailed, LeaseHeld, TokenDecryptionFailed
from qbo_health.observability import logger
from qbo_health.service.health_check import CheckDeps, open_tokens
from qbo_health.service.leased import acquire_lease_waiting, record, save_under_lease


def disconnect_connection(
    connection_id: str,
    reason: DisconnectReason,
    deps: CheckDeps,
    now: datetime,
    *,
    dry_run: bool = False,
    episode_id: str | None = None,
    lease_owner: str | None = None,
) -> Connection:
    """Returns the connection as disconnected (with ``dry_run``: as it would be; nothing is written).

    Idempotent: an already disconnected connection is returned unchanged. Raises ``ConnectionNotFound``,
    ``ConnectionBusy`` when the lease stays taken.

    The escalator passes the ``episode_id`` it escalated and the ``lease_owner`` of its re-check: under that
    same lease the connection must still need attention in that episode and not be on hold, or nothing is
    revoked and ``DisconnectAverted`` is raised (``domain.check.disconnected``).
    """
    owner = lease_owner or f"disconnect:{uuid.uuid4().hex}"

    def take() -> Connection:
        return _lease(deps, connection_id, owner, now, continuing=lease_owner is not None)

    def decide(leased: Connection) -> Transition:
        return disconnected(leased, reason, now, episode_id=episode_id)

    def before_save(leased: Connection, updated: Connection) -> list[ConnectionEvent]:
        revoke_failure = _revoke(deps, leased)
        deps.access_tokens.delete(connection_id)  # first: no token is handed out once we say disconnected
        if revoke_failure is None:
            return []
        return [ConnectionEvent(EventKind.REVOKE_FAILED, now, detail=revoke_failure)]

    changed = save_under_lease(
        deps, connection_id, owner, now, decide, take=take, before_save=before_save, dry_run=dry_run
    )
    if not changed.saved:
        if dry_run and changed.connection != changed.leased:
            logger.info("dry run: would disconnect", extra={"connection_id": connection_id})
        return changed.connection
    stored = changed.connection
    # The escalator sends its own notice (and retries it until it went out).
    record(deps, stored, changed.events, now, notify=stored.pending_notice is None)
    logger.info("disconnected", extra={"connection_id": connection_id, "reason": reason.value})
    return stored


def _lease(deps: CheckDeps, connection_id: str, owner: str, now: datetime, *, continuing: bool) -> Connection:
    if not continuing:
        return acquire_lease_waiting(deps, connection_id, owner, now)
    try:  # the owner's own lease: taking it again extends it from now and reads the item
        return deps.store.acquire_lease(connection_id, owner, now, deps.lease_seconds)
    except LeaseHeld:
        raise DisconnectAverted(connection_id, "lease lost") from None


# Pauses between revoke attempts: a short Intuit hiccup should not leave a grant alive.
REVOKE_RETRY_PAUSES = (0.2, 1.0)


def longest_revoke(intuit_timeout: timedelta) -> timedelta:
    attempts = len(REVOKE_RETRY_PAUSES) + 1
    return attempts * intuit_timeout + timedelta(seconds=sum(REVOKE_RETRY_PAUSES))


def _revoke(deps: CheckDeps, connection: Connection) -> str | None:
    """Revoke the refresh token; returns a short failure description (never blocks the disconnect)."""
    if connection.sealed_tokens is None or connection.realm_id is None:
        return None
    revoke = getattr(deps.intuit, "revoke", None)
    if revoke is None:
        return "revoke unavailable"
    try:
        tokens = open_tokens(deps, connection)
    except TokenDecryptionFailed:
        logger.warning(
            "tokens could not be opened for revoke", extra={"connection_id": connection.connection_id}
        )
        return "tokens unreadable"
    for attempt, pause in enumerate((*REVOKE_RETRY_PAUSES, None), start=1):
        try:
            revoke(tokens.refresh_token)
            return None
        except IntuitCallFailed as error:
            failure = error.failure
            if revoke_already_done(failure):
                # 400 with an empty body: Intuit no longer knows the token (revoked already). Done.
                logger.info(
                    "revoke: token already revoked at Intuit",
                    extra={"connection_id": connection.connection_id, "intuit_tid": failure.intuit_tid},
                )
                return None
            logger.warning(
                "revoke failed",
                extra={
                    "connection_id": connection.connection_id,
                    "intuit_tid": failure.intuit_tid,
                    "status": failure.status,
                    "attempt": attempt,
                },
            )
            # Only a transient failure is worth another try; the tokens are deleted either way.
            if pause is None or classify(failure).kind is not FailureKind.TRANSIENT:
                detail = (
                    failure.oauth_error or ",".join(failure.codes) or failure.transport or str(failure.status)
                )
                return f"revoke failed: {detail}; intuit_tid={failure.intuit_tid or '-'}"
            time.sleep(pause)
    return None
