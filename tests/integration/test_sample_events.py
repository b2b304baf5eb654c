"""The sample events in tests/events drive the real handlers (the shapes `sam local generate-event` prints)."""

import json
from pathlib import Path

from local.seed import seed_connection
from qbo_health import wiring

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load(name):
    return json.loads((EVENTS / name).read_text())


def test_schedule_event_starts_a_run_for_the_due_slot(stack, lambdas):
    seed_connection(stack, "conn-1")

    result = lambdas.invoke("check_scheduler", load("check_scheduler_schedule.json"))

    assert result["slots"] == [stack.clock.now().hour]
    assert result["scheduled"] in (0, 1)
    assert wiring.control_store().run(result["run_id"]).scheduled == result["scheduled"]


def test_sqs_event_checks_the_good_record_and_reports_only_the_bad_one(stack, lambdas):
    seed_connection(stack, "conn-1", refreshed_days_ago=1)
    event = load("check_worker_sqs.json")

    response = lambdas.invoke("check_worker", event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert wiring.connection_store().get("conn-1").tokens.refreshed_at == stack.clock.now()
