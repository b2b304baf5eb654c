"""Where "now" comes from.

Domain functions take ``now`` as an argument; only handlers and adapters ask the clock. On AWS the clock is
the system clock. The embedded stack installs one :class:`SimulatedClock` that the Intuit simulator reads
too, so tests move days forward without sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The system clock moved by a fixed offset: how a process beside the embedded stack (the ops CLI) keeps
    the stack's time, read once from it (``QBO_HEALTH_CLOCK_URL``, see ``qbo_health.ops.cli``)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    @classmethod
    def at(cls, moment: datetime) -> OffsetClock:
        """A clock that reads ``moment`` now and runs on from there."""
        if moment.tzinfo is None:
            raise ValueError("clock times must be timezone-aware")
        return cls(moment - datetime.now(UTC))

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class SimulatedClock:
    """A clock that only moves when told to. Thread-safe; always returns aware UTC datetimes."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 1, 5, 6, 0, tzinfo=UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("the clock never goes backwards")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("clock times must be timezone-aware")
        with self._lock:
            self._now = moment.astimezone(UTC)


_installed: Clock = SystemClock()


def install(clock: Clock) -> None:
    """Make ``clock`` the process-wide clock (the embedded stack does this once)."""
    global _installed
    _installed = clock


def current() -> Clock:
    return _installed


def now() -> datetime:
    return _installed.now()
