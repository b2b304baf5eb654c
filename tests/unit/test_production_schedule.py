"""The local driver reads production's schedule expressions; a misread one would replay a cadence AWS never runs."""

from __future__ import annotations

import pytest

from local.production import firings_per_day
from local.template import function_schedules, load_template


def test_hourly_and_rate_expressions_fire_as_eventbridge_would():
    assert firings_per_day("cron(5 * * * ? *)") == [5 + 60 * hour for hour in range(24)]
    assert firings_per_day("rate(1 hour)") == [60 * hour for hour in range(24)]
    assert firings_per_day("rate(30 minutes)")[:3] == [0, 30, 60]
    assert firings_per_day("cron(0,30 6 * * ? *)") == [360, 390]
    assert firings_per_day("cron(15 */6 * * ? *)") == [15, 375, 735, 1095]


@pytest.mark.parametrize(
    "expression", ["cron(0 6 ? * MON *)", "cron(0 6 1 * ? *)", "at(2026-01-01T00:00:00)"]
)
def test_an_expression_the_driver_cannot_play_is_refused_not_guessed(expression):
    with pytest.raises(ValueError):
        firings_per_day(expression)


def test_every_schedule_in_the_template_can_be_played():
    schedules = function_schedules(load_template())
    assert {"check_scheduler", "escalator"} <= set(schedules)
    assert all(firings_per_day(expression) for expression in schedules.values())
