"""Progress lines as a CI log or a pipe sees them: one line per step, counts bounded and monotonic."""

from __future__ import annotations

import io
import re

from qbo_health.ops.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _counts(text: str) -> list[int]:
    return [int(match) for match in re.findall(r"(\d+)/\d+", text)]


def test_off_a_terminal_each_update_is_its_own_line_without_carriage_returns() -> None:
    out = io.StringIO()
    progress = Progress(out, "seeding", total=300)
    for done in range(1, 301):
        progress.update(done)
    progress.finish(300)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10  # nine tenths, then the end with its time
    assert lines[-1].startswith("seeding") and "300/300" in lines[-1] and lines[-1].endswith("s)")


def test_counts_never_exceed_the_total_nor_go_backwards() -> None:
    out = io.StringIO()
    progress = Progress(out, "runs", total=24)
    for done in (3, 12, 7, 30, 5):
        progress.update(done)
    progress.finish(40)
    counts = _counts(out.getvalue())
    assert counts == sorted(counts) and max(counts) == 24


def test_on_a_terminal_the_line_is_redrawn_in_place() -> None:
    out = _Terminal()
    progress = Progress(out, "days", total=20, interval=0)
    for done in range(1, 21):
        progress.update(done)
    progress.finish(20)
    assert out.getvalue().count("\n") == 1 and out.getvalue().count("\r") >= 20
