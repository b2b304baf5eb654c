"""Progress of long operations, on stderr, so stdout stays clean for tables and CSV.

On a terminal the line is redrawn in place; anywhere else (CI logs, a pipe, a file) each update is a line of
its own, so the output never fills with carriage returns. The count shown never exceeds the total and never
goes backwards, whatever the caller reports.
"""

from __future__ import annotations

import time
from typing import TextIO

_BAR_WIDTH = 30
_STEPS_OFF_TERMINAL = 10  # without a terminal, one line per tenth of the total


class Progress:
    """``label: N`` (or a bar, ``N/total``, when the total is known); ``finish`` prints the end and the time."""

    def __init__(
        self, stream: TextIO, label: str, *, total: int | None = None, interval: float = 0.5
    ) -> None:
        self._stream, self._label, self._total, self._interval = stream, label, total, interval
        self._on_terminal = _is_terminal(stream)
        self._started = self._last = time.monotonic()
        self._shown = 0
        self._drawn = False

    def update(self, done: int) -> None:
        done = self._clamp(done)
        if done == self._shown or not self._due(done):
            return
        self._shown = done
        if self._on_terminal:
            self._stream.write(f"\r{self._render(done)}")
            self._drawn = True
        else:
            self._stream.write(f"{self._render(done)}\n")
        self._stream.flush()

    def finish(self, done: int, summary: str = "") -> None:
        done = self._clamp(done)
        self._shown = done
        elapsed = time.monotonic() - self._started
        prefix = "\r" if self._drawn else ""
        self._stream.write(f"{prefix}{self._render(done)}{summary} ({elapsed:.1f}s)\n")
        self._stream.flush()

    def _clamp(self, done: int) -> int:
        done = max(done, self._shown)
        return min(done, self._total) if self._total is not None else done

    def _due(self, done: int) -> bool:
        if self._on_terminal:
            moment = time.monotonic()
            if moment - self._last < self._interval:
                return False
            self._last = moment
            return True
        if not self._total:
            return done % 100 == 0
        step = max(1, self._total // _STEPS_OFF_TERMINAL)
        return done < self._total and done // step > self._shown // step  # finish writes the end

    def _render(self, done: int) -> str:
        if not self._total:
            return f"{self._label}: {done}"
        filled = _BAR_WIDTH * done // self._total
        return f"{self._label:<22} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{self._total}"


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
