"""A connection changed under its lease: take the lease, decide on the item it returned, save and release in
one conditional write (or release without writing), then record the events and tell whoever is told.

Every change of a connection goes this way: a check (``health_check``), a hold (``connections``), a
disconnect and a reauthorization. The decisions themselves are the domain's pure transitions
(``domain.check``: ``apply_outcome``, ``disconnected``, ``reauthorized``), taken on what the lease returned,
so nothing that happened before the lease was taken can be overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from qbo_health.domain.check import ConnectionEvent, Transition
from qbo_health.domain.model import Connection
from qbo_health.errors import ConnectionBusy, LeaseHeld

if TYPE_CHECKING:
    from qbo_health.service.health_check import CheckDeps, ConnectionRepository

# How long a caller that must act now (API, disconnect) waits for a running check to let go.
LEASE_WAIT_SECONDS = 10.0


def acquire_lease_waiting(
    deps: CheckDeps,
    connection_id: str,
    owner: str,
    now: datetime,
    *,
    wait_seconds: float = LEASE_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Connection:
    """The lease for a caller that must act now (API, disconnect): a running check holds it for seconds,
    so wait with backoff before answering busy. Raises ``ConnectionBusy`` when the wait runs out."""
    deadline = monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return deps.store.acquire_lease(connection_id, owner, now, deps.lease_seconds)
        except LeaseHeld:
            if monotonic() >= deadline:
                raise ConnectionBusy("The connection is busy. Please try again in a minute.") from None
            sleep(min(delay, max(deadline - monotonic(), 0.0)))
            delay = min(delay * 2, 0.5)


class Lease:
    """A connection leased to ``owner``. Used as a context manager: the lease is released on the way out
    unless ``save`` released it with its write (or kept it for the caller, with ``keep``)."""

    def __init__(self, store: ConnectionRepository, owner: str, connection: Connection) -> None:
        self.store, self.owner, self.connection = store, owner, connection
        self.handled = False

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.handled:
            self.store.release_lease(self.connection.connection_id, self.owner)

    def save(
        self,
        updated: Connection,
        *,
        changed_from: Connection | None = None,
        keep: bool = False,
        unless_access_wanted: bool = False,
    ) -> Connection:
        """The final write: ``updated`` over ``changed_from`` (the leased item by default), releasing the
        lease in the same write, or with ``keep`` leaving it to the caller."""
        stored = self.store.save(
            updated,
            changed_from=changed_from or self.connection,
            lease_owner=self.owner,
            release_lease=not keep,
            unless_access_wanted=unless_access_wanted,
        )
        self.handled = True
        self.connection = stored
        return stored


@dataclass(frozen=True)
class Changed:
    """What a change under the lease did: ``connection`` as stored (or as it would be: see ``saved``), the
    ``leased`` item it was decided on, and the events to record."""

    connection: Connection
    leased: Connection
    events: tuple[ConnectionEvent, ...] = ()
    saved: bool = False


def save_under_lease(
    deps: CheckDeps,
    connection_id: str,
    owner: str,
    now: datetime,
    decide: Callable[[Connection], Transition],
    *,
    take: Callable[[], Connection] | None = None,
    before_save: Callable[[Connection, Connection], Iterable[ConnectionEvent]] | None = None,
    dry_run: bool = False,
) -> Changed:
    """Take the lease (``take``, or wait for it), ``decide`` on the leased item, and save the result while
    releasing the lease. An unchanged connection (or ``dry_run``) is not written; the lease is released.

    ``before_save(leased, updated)`` runs under the lease just before the write (a revoke at Intuit, say) and
    returns events recorded before the transition's own. Recording is the caller's (see ``record``)."""
    leased = take() if take is not None else acquire_lease_waiting(deps, connection_id, owner, now)
    with Lease(deps.store, owner, leased) as lease:
        transition = decide(leased)
        if dry_run or transition.connection == leased:
            return Changed(transition.connection, leased, transition.events)
        extra = tuple(before_save(leased, transition.connection)) if before_save is not None else ()
        stored = lease.save(transition.connection)
    return Changed(stored, leased, (*extra, *transition.events), saved=True)


def record(
    deps: CheckDeps,
    connection: Connection,
    events: Sequence[ConnectionEvent],
    now: datetime,
    *,
    notify: bool = True,
) -> None:
    """The audit trail, then whoever is told of these events as they happen (``notify=False``: nobody yet)."""
    if not events:
        return
    deps.history.append(connection.connection_id, events)
    if notify:
        deps.notifier.connection_events(connection, events, now)


def change_under_lease(
    deps: CheckDeps,
    connection_id: str,
    owner: str,
    now: datetime,
    decide: Callable[[Connection], Transition],
    *,
    take: Callable[[], Connection] | None = None,
) -> Connection:
    """``save_under_lease`` then ``record``: the whole sequence, for a change with no side effects of its own."""
    changed = save_under_lease(deps, connection_id, owner, now, decide, take=take)
    if changed.saved:
        record(deps, changed.connection, changed.events, now)
    return changed.connection
