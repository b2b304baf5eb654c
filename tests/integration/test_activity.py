"""``POST /connections/activity`` over the local HTTP front: the product's own calls as evidence."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from local.seed import seed_connection
from qbo_health import wiring
from qbo_health.domain.model import ConnectionState

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

CONFIRM_DELAY = timedelta(minutes=15)


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


@pytest.fixture
def fleet(stack):
    ids = [f"conn-{n}" for n in range(20)]
    for connection_id in ids:
        seed_connection(stack, connection_id)
    stack.clock.advance(timedelta(days=2))  # nothing verified for two days: every one wants a probe
    return ids


def test_a_report_of_thousands_of_calls_writes_each_connection_once_and_saves_its_probe(
    stack, lambdas, api_client, fleet
):
    now = stack.clock.now()
    reporting = fleet[:10]
    calls = [(cid, now - timedelta(minutes=n), True) for n in range(1, 301) for cid in reporting]
    calls += [("never-registered", now, True), (fleet[0], now + timedelta(hours=1), True)]
    calls += [(fleet[1], now - timedelta(days=9), True)]

    answer = api_client.report_activity(calls)

    assert (answer.accepted, answer.connections, answer.written, answer.unknown) == (3000, 10, 10, 1)
    assert [(r.index, r.connection_id, r.reason) for r in answer.refused] == [
        (3001, fleet[0], "in_future"),
        (3002, fleet[1], "too_old"),
    ]
    assert all(stored(cid).activity_ok_at == now - timedelta(minutes=1) for cid in reporting)
    # The same report again (a retry): nothing more is written.
    assert api_client.report_activity(calls).written == 0

    before = stack.intuit.control.stats()["metered"]
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    metered = stack.intuit.control.stats()["metered"]
    probed = {cid for cid in fleet if stored(cid).last_success_at == now}
    # Recent success evidence: no probe; the others were probed. Every token was refreshed.
    assert probed == set(fleet[10:])
    assert sum(metered.values()) - sum(before.values()) == 10
    assert all(stored(cid).tokens.refreshed_at == now for cid in fleet)


def test_a_report_never_closes_an_open_issue(stack, lambdas, api_client, fleet):
    broken = stored(fleet[0])
    stack.intuit.control.suspend(broken.realm_id)
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()
    assert stored(fleet[0]).state is ConnectionState.NEEDS_ATTENTION

    answer = api_client.report_activity([(fleet[0], stack.clock.now(), True)])

    assert answer.written == 1
    connection = stored(fleet[0])
    assert connection.state is ConnectionState.NEEDS_ATTENTION and connection.issue is not None


def test_a_reported_failure_is_checked_at_once_and_confirmed(stack, lambdas, api_client, fleet):
    now = stack.clock.now()
    failing = fleet[7]
    stack.intuit.control.set_admin(stored(failing).realm_id, seed_user(stack, failing), False)

    answer = api_client.report_activity([(failing, now - timedelta(minutes=3), False), (fleet[8], now, True)])
    assert answer.checks == 1
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()

    issue = stored(failing).issue
    assert issue is not None and issue.type.value == "ADMIN_ACCESS_LOST"
    # Nobody else was probed: the success report queued nothing.
    assert all(stored(cid).last_success_at < now for cid in fleet if cid != failing)


def seed_user(stack, connection_id):
    authorizer = stored(connection_id).authorized_by
    assert authorizer is not None
    return authorizer.user_id


def test_malformed_items_refuse_the_request_with_the_field_named(api_url, api_client, fleet):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b'[{"connection_id": "conn-1", "at": "yesterday", "ok": true}]'
    url = f"{api_url}/connections/activity"
    signed = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing", "testing"), "execute-api", "us-east-1").add_auth(signed)
    response = requests.post(url, data=body, headers=dict(signed.headers.items()), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "at" in response.json()["message"]
