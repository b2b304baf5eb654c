"""Progress of long operations, on stderr, so stdout stays clean for tables and CSV."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """``label: N`` redrawn in place at most every ``interval`` seconds; ``finish`` prints the total."""

    def __init__(self, stream: TextIO, label: str, *, interval: float = 0.5) -> None:
        self._stream, self._label, self._interval = stream, label, interval
        self._started = self._last = time.monotonic()
        self._drawn = False

    def update(self, done: int) -> None:
        moment = time.monotonic()
        if moment - self._last < self._interval:
            return
        self._last = moment
        self._stream.write(f"\r{self._label}: {done}")
        self._stream.flush()
        self._drawn = True

    def finish(self, done: int, summary: str = "") -> None:
        elapsed = time.monotonic() - self._started
        prefix = "\r" if self._drawn else ""
        self._stream.write(f"{prefix}{self._label}: {done}{summary} ({elapsed:.1f}s)\n")
        self._stream.flush()
