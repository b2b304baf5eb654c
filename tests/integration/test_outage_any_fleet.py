"""An Intuit outage never costs a customer time, whatever the size of the fleet.

Played on production's schedules (`ProductionSchedule`: the scheduler at :05 sends the hour's slot, the
escalator runs at :35) with default settings. An outage of N hours starts exactly when a stage is due (the
first notice, a reminder, the final warning, the disconnect): nothing is sent while it lasts, the stage goes
out once Intuit answers again, and the deadline, so every later stage and the disconnect, moves by N hours
plus at most one hourly run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from local.production import ProductionSchedule
from local.scenario import notices_sent, open_issue_at
from local.seed import connection_id_in_slot, seed_connection
from qbo_health import wiring
from qbo_health.domain.model import ConnectionState, IssueType

OUTAGE = timedelta(hours=6)
RUN = timedelta(hours=1)  # one escalator run's granularity
STAGE_DAY = {"NOTICE": 0, "REMINDER_1": 3, "REMINDER_2": 7, "FINAL_WARNING": 12, "DISCONNECT": 14}
NEXT_STAGE = {"NOTICE": "REMINDER_1", "REMINDER_1": "REMINDER_2", "REMINDER_2": "FINAL_WARNING"}
ISSUES = [IssueType.ADMIN_ACCESS_LOST, IssueType.SUBSCRIPTION_LAPSED, IssueType.AUTHORIZATION_EXPIRED]


def first_run_at_or_after(moment: datetime) -> datetime:
    """When the hourly escalator (at :35) first sees a stage that falls due at ``moment``."""
    run = moment.replace(minute=35, second=0, microsecond=0)
    return run if run >= moment else run + timedelta(hours=1)


def play(stack, lambdas, fleet_size: int, stages: list[str], *, days_after: float) -> dict:
    """A fleet of ``fleet_size``; one broken connection per stage, each with that stage due at T0 (10:20),
    when the outage starts. Returns what is needed to judge it."""
    day = stack.clock.now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    t0 = day + timedelta(hours=10, minutes=20)
    stack.clock.set(t0 - timedelta(hours=2))
    broken, opened = {}, {}
    for index, stage in enumerate(stages):
        # Checked daily at 09:05: the fleet's checks are fresh when the escalator has to act.
        seeded = seed_connection(
            stack, connection_id_in_slot(f"broken-{stage.lower()}", 9), refreshed_days_ago=1
        )
        opened[stage] = t0 - timedelta(days=STAGE_DAY[stage])
        open_issue_at(stack, seeded, ISSUES[index % 3], opened_at=opened[stage])
        broken[stage] = seeded.connection_id
    for index in range(fleet_size - len(stages)):
        seed_connection(stack, f"healthy-{index:03d}", refreshed_days_ago=1)
    schedule = ProductionSchedule(lambdas)
    control = stack.intuit.control
    schedule.run_until(t0)
    control.set_faults(rate=1.0, kinds=["503"], seed=5)
    schedule.run_until(t0 + OUTAGE)
    control.clear_faults()
    schedule.run_until(t0 + OUTAGE + timedelta(days=days_after))
    assert schedule.errors == []
    return {"t0": t0, "broken": broken, "opened": opened}


def assert_shifted_by_the_outage(played: dict) -> None:
    t0, store = played["t0"], wiring.connection_store()
    for stage, connection_id in played["broken"].items():
        sent = notices_sent(connection_id)
        during = [kind for at, kind in sent if t0 <= at < t0 + OUTAGE]
        assert during == [], (stage, during)
        connection = store.get(connection_id)
        original = first_run_at_or_after(t0)
        if stage == "DISCONNECT":
            assert connection.state is ConnectionState.DISCONNECTED, stage
            assert connection.disconnected_at is not None
            assert OUTAGE <= connection.disconnected_at - original <= OUTAGE + RUN
            continue
        [when] = [at for at, kind in sent if kind == stage]
        assert OUTAGE <= when - original <= OUTAGE + RUN, (stage, when - original)
        opened_at = played["opened"][stage]
        deadline = opened_at + timedelta(days=STAGE_DAY["DISCONNECT"])
        if connection.state is ConnectionState.DISCONNECTED:  # the run went on past its deadline
            assert connection.disconnected_at is not None
            assert OUTAGE <= connection.disconnected_at - first_run_at_or_after(deadline) <= OUTAGE + RUN
        else:
            assert connection.issue is not None
            moved = connection.issue.deadline - deadline
            assert OUTAGE <= moved <= OUTAGE + RUN, (stage, moved)
        follower = NEXT_STAGE.get(stage)
        later = [at for at, kind in sent if kind == follower]
        if later:
            due = first_run_at_or_after(opened_at + timedelta(days=STAGE_DAY[follower]))
            assert OUTAGE <= later[0] - due <= OUTAGE + RUN, (follower, later[0] - due)


@pytest.mark.parametrize("stage", list(STAGE_DAY))
def test_a_fleet_of_one_loses_no_time_to_an_outage_at_any_stage(stack, lambdas, stage):
    played = play(stack, lambdas, 1, [stage], days_after=0.1)
    assert_shifted_by_the_outage(played)


@pytest.mark.parametrize("fleet_size", [5, 50])
def test_small_fleets_lose_no_time_and_every_later_stage_moves(stack, lambdas, fleet_size):
    played = play(stack, lambdas, fleet_size, list(STAGE_DAY), days_after=5.1)
    assert_shifted_by_the_outage(played)
    # Every connection reached its next stage within the run, each moved by the outage.
    for stage, follower in NEXT_STAGE.items():
        assert follower in [kind for _, kind in notices_sent(played["broken"][stage])], stage
    final = wiring.connection_store().get(played["broken"]["FINAL_WARNING"])
    assert final.state is ConnectionState.DISCONNECTED  # two days after its final warning, N hours late


@pytest.mark.slow
def test_a_fleet_of_500_loses_no_time_with_the_fleet_wide_guard_on(stack, lambdas):
    played = play(stack, lambdas, 500, list(STAGE_DAY), days_after=0.1)
    assert_shifted_by_the_outage(played)
    # At this size the hourly runs are big enough to judge: the fleet-wide guard paused everyone.
    assert wiring.control_store().pause_windows(), "the fleet-wide guard never tripped"
