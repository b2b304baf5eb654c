"""The outage guard and the daily schedule: Intuit's bad day is not the customers', and load is spread."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from qbo_health.domain.model import Connection, ConnectionState
from qbo_health.domain.outage import OutageThresholds, RunSummary, looks_like_outage, outage_over
from qbo_health.domain.schedule import SLOTS_PER_DAY, check_slot, due_slot, slot_of

DEFAULT = OutageThresholds()
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------- outage


@pytest.mark.parametrize(
    ("scheduled", "transient", "suspected", "outage"),
    [
        (100, 0, 0, False),
        (100, 49, 0, False),
        (100, 50, 0, True),
        (100, 90, 0, True),
        (100, 0, 19, False),
        (100, 0, 20, True),
        (100, 30, 10, False),
        (100, 30, 20, True),
        (1000, 499, 199, False),
    ],
    ids=[
        "quiet",
        "transient-just-below",
        "transient-at-share",
        "transient-storm",
        "issues-just-below",
        "issues-at-share",
        "mixed-below-both",
        "mixed-issues-at-share",
        "big-run-below-both",
    ],
)
def test_a_run_looks_like_an_outage_when_a_share_reaches_its_threshold(
    scheduled, transient, suspected, outage
):
    assert looks_like_outage(scheduled, transient, suspected, DEFAULT) is outage


@pytest.mark.parametrize(
    ("scheduled", "transient", "suspected", "outage"),
    [
        (19, 19, 0, False),
        (10, 0, 10, False),
        (20, 10, 0, True),
        (20, 0, 4, True),
        (0, 20, 0, True),
        (5, 12, 8, True),
    ],
    ids=[
        "all-failed-but-too-few",
        "all-suspected-but-too-few",
        "at-the-floor",
        "issues-at-the-floor",
        "nothing-scheduled-but-many-failures",
        "more-failures-than-scheduled",
    ],
)
def test_too_few_checks_never_look_like_an_outage(scheduled, transient, suspected, outage):
    assert looks_like_outage(scheduled, transient, suspected, DEFAULT) is outage


def test_outage_thresholds_are_configurable():
    strict = OutageThresholds(transient_share=0.1, new_issue_share=0.05, min_checks=5)

    assert looks_like_outage(10, 1, 0, strict) is True
    assert looks_like_outage(10, 0, 1, strict) is True
    assert looks_like_outage(4, 4, 0, strict) is False
    assert looks_like_outage(10, 1, 0, DEFAULT) is False


LAST_SEEN = NOW - timedelta(hours=3)


def run(started_at, scheduled=100, transient=0, suspected=0):
    return RunSummary(started_at, scheduled, transient, suspected)


@pytest.mark.parametrize(
    ("latest", "over"),
    [
        (None, False),
        (run(LAST_SEEN - timedelta(minutes=1)), False),
        (run(NOW - timedelta(minutes=29)), False),
        (run(NOW - timedelta(minutes=30)), True),
        (run(NOW - timedelta(hours=1), transient=60), False),
        (run(NOW - timedelta(hours=1), transient=10), True),
        (run(NOW - timedelta(hours=1), scheduled=5, transient=1), False),
        (run(NOW - timedelta(hours=1), scheduled=5), True),
        (run(NOW - timedelta(hours=1), scheduled=0), False),
    ],
    ids=[
        "no-run",
        "run-before-last-seen",
        "not-settled",
        "settled-and-normal",
        "still-an-outage",
        "normal-share-of-trouble",
        "small-run-with-trouble",
        "small-clean-run",
        "empty-slot-says-nothing",
    ],
)
def test_an_outage_ends_only_when_a_later_settled_run_looks_normal(latest, over):
    assert outage_over(LAST_SEEN, latest, NOW, DEFAULT) is over


# ---------------------------------------------------------------------------------------------- schedule


def test_a_connection_keeps_its_slot_across_calls():
    ids = [f"conn-{n}" for n in range(200)]

    first = [check_slot(connection_id) for connection_id in ids]
    again = [check_slot(connection_id) for connection_id in ids]

    assert first == again
    assert all(0 <= slot < SLOTS_PER_DAY for slot in first)


def test_the_slot_is_the_same_in_another_process_with_another_hash_seed():
    """A cold Lambda (new process, new str hash seed) must put each connection in the same hour."""
    ids = [f"conn-{n}" for n in range(50)]
    script = "import sys; from qbo_health.domain.schedule import check_slot; "
    script += "print(','.join(str(check_slot(i)) for i in sys.argv[1:]))"
    env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": os.pathsep.join(sys.path)}

    output = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script, *ids], env=env, capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == ",".join(str(check_slot(connection_id)) for connection_id in ids)


def test_ten_thousand_connections_spread_evenly_over_the_day():
    counts = Counter(check_slot(f"tenant-{n % 37}:conn-{n:05d}") for n in range(10_000))

    mean = 10_000 / SLOTS_PER_DAY
    assert set(counts) == set(range(SLOTS_PER_DAY))
    for slot, count in counts.items():
        assert 0.75 * mean <= count <= 1.25 * mean, f"slot {slot} has {count} connections"


@pytest.mark.parametrize("hour", range(24))
def test_the_due_slot_is_the_hour_of_the_run(hour):
    top = datetime(2026, 3, 2, hour, 0, tzinfo=UTC)

    assert due_slot(top) == hour
    assert due_slot(top + timedelta(minutes=59, seconds=59)) == hour


def test_every_connection_is_due_exactly_once_a_day():
    ids = [f"conn-{n}" for n in range(500)]
    day = datetime(2026, 3, 2, tzinfo=UTC)

    due = Counter(
        connection_id
        for hour in range(24)
        for connection_id in ids
        if check_slot(connection_id) == due_slot(day + timedelta(hours=hour))
    )

    assert due == Counter(ids)


@pytest.mark.parametrize("state", [s for s in ConnectionState if s is not ConnectionState.DISCONNECTED])
def test_checkable_connections_store_their_hash_slot(state):
    conn = Connection(connection_id="conn-42", tenant_id="t", realm_id="r", state=state)

    assert slot_of(conn) == check_slot("conn-42")


def test_a_disconnected_connection_has_no_slot_so_nobody_checks_it():
    conn = Connection(
        connection_id="conn-42", tenant_id="t", realm_id="r", state=ConnectionState.DISCONNECTED
    )

    assert slot_of(conn) is None
