"""The product's activity reports: which items count, and one write per connection a day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from qbo_health.domain.activity import (
    ActivityWrite,
    Report,
    StoredActivity,
    day_of,
    refusal,
    write_for,
)
from qbo_health.messages import CheckRequest
from qbo_health.service.activity import record_activity

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def test_future_and_far_past_times_are_refused_small_clock_skew_is_not() -> None:
    assert refusal(Report("c", NOW + timedelta(minutes=4), True), NOW) is None
    assert refusal(Report("c", NOW + timedelta(minutes=6), True), NOW) == "in_future"
    assert refusal(Report("c", NOW - timedelta(days=6, hours=23), True), NOW) is None
    assert refusal(Report("c", NOW - timedelta(days=8), True), NOW) == "too_old"


def test_one_write_keeps_the_newest_success_and_failure() -> None:
    reports = [
        Report("c", NOW - timedelta(hours=5), True),
        Report("c", NOW - timedelta(hours=1), True),
        Report("c", NOW - timedelta(hours=3), False),
        Report("c", NOW - timedelta(hours=4), False),
    ]
    write = write_for("c", reports, StoredActivity(), NOW)
    assert write == ActivityWrite("c", NOW - timedelta(hours=1), NOW - timedelta(hours=3), day_of(NOW))


def test_at_most_one_write_a_day_and_none_without_news() -> None:
    reports = [Report("c", NOW - timedelta(hours=1), True)]
    written_today = StoredActivity(ok_at=NOW - timedelta(hours=9), written_day=day_of(NOW))
    assert write_for("c", reports, written_today, NOW) is None
    yesterday = StoredActivity(ok_at=NOW - timedelta(hours=1), written_day=day_of(NOW) - 1)
    assert write_for("c", reports, yesterday, NOW) is None  # the same report again: nothing newer
    assert write_for(
        "c", reports, StoredActivity(ok_at=NOW - timedelta(days=1), written_day=day_of(NOW) - 1), NOW
    )


class MemoryActivity:
    """An in-memory activity store with the adapter's contract (known ids, once-a-day writes)."""

    def __init__(self, known: dict[str, StoredActivity | None]) -> None:
        self.known = known
        self.writes: list[ActivityWrite] = []

    def stored_activity(self, connection_ids: Sequence[str]) -> dict[str, StoredActivity | None]:
        return {cid: self.known[cid] for cid in connection_ids if cid in self.known}

    def record_activity(self, writes: Sequence[ActivityWrite]) -> int:
        for write in writes:
            self.known[write.connection_id] = StoredActivity(write.ok_at, write.failed_at, write.day)
        self.writes.extend(writes)
        return len(writes)


def test_a_batch_counts_unknown_refuses_per_item_and_writes_each_connection_once() -> None:
    store = MemoryActivity({"a": StoredActivity(), "b": StoredActivity(), "gone": None})
    reports = [
        Report(cid, NOW - timedelta(minutes=n), n % 7 != 0) for n in range(1, 1001) for cid in ("a", "b")
    ]
    reports += [
        Report("nobody", NOW, True),
        Report("gone", NOW, True),
        Report("a", NOW + timedelta(hours=2), True),
    ]
    reports += [Report("b", NOW - timedelta(days=30), True)]

    queue = SentChecks()
    summary = record_activity(reports, store, queue, NOW)

    assert summary.accepted == 2000 and summary.connections == 2 and summary.written == 2
    assert summary.unknown == 2  # an id we never had, and a disconnected one
    assert [(r.index, r.connection_id, r.reason) for r in summary.refused] == [
        (2002, "a", "in_future"),
        (2003, "b", "too_old"),
    ]
    assert len(store.writes) == 2
    # Sent again the same day: idempotent, no write.
    # Both reported failures too: each connection gets one check now, and one only.
    assert summary.checks == 2 and sorted(r.connection_id for r in queue.sent) == ["a", "b"]
    assert {r.reason for r in queue.sent} == {"problem_report"}
    again = record_activity(reports, store, queue, NOW)
    assert again.written == 0 and again.accepted == 2000 and len(queue.sent) == 2


def test_successes_alone_queue_no_check() -> None:
    store, queue = MemoryActivity({"a": StoredActivity()}), SentChecks()
    summary = record_activity([Report("a", NOW, True)], store, queue, NOW)
    assert summary.written == 1 and summary.checks == 0 and queue.sent == []


class SentChecks:
    def __init__(self) -> None:
        self.sent: list[CheckRequest] = []

    def send(self, requests: Sequence[CheckRequest], *, delay_seconds: int = 0) -> int:
        self.sent.extend(requests)
        return len(requests)
