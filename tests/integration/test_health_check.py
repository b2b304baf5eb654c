"""The daily health check over the embedded stack: seed-article scenarios, lapse, races, faults."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest

from local.production import ProductionSchedule
from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import ConnectionState, IssueType
from qbo_health.messages import CheckRequest
from qbo_health.service.health_check import check_connection

CONFIRM_DELAY = timedelta(seconds=900)


def check_everything_and_confirm(stack, lambdas):
    """One full check run, then the confirming re-checks 15 minutes later."""
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda c, s: c.set_admin(s.realm_id, s.user_id, False), IssueType.ADMIN_ACCESS_LOST),
        (lambda c, s: c.suspend(s.realm_id), IssueType.SUBSCRIPTION_LAPSED),
        (lambda c, s: c.disconnect_app(s.realm_id), IssueType.AUTHORIZATION_EXPIRED),
    ],
    ids=["admin-removed", "subscription-suspended", "app-disconnected"],
)
def test_each_seed_article_scenario_opens_its_issue_with_message_and_remedy(
    stack, lambdas, break_it, expected
):
    seeded = seed_connection(stack, "conn-1")
    healthy = seed_connection(stack, "conn-2")
    stack.clock.advance(timedelta(days=1))
    break_it(stack.intuit.control, seeded)

    check_everything_and_confirm(stack, lambdas)

    broken = stored("conn-1")
    assert broken.state is ConnectionState.NEEDS_ATTENTION
    assert broken.issue is not None and broken.issue.type is expected
    assert broken.issue.deadline == broken.issue.opened_at + timedelta(days=14)
    guidance = guidance_for(broken.issue.type)
    assert guidance.user_message and guidance.remedy and guidance.who_can_fix
    assert stored(healthy.connection_id).state is ConnectionState.HEALTHY
    assert wiring.connection_store().open_issues().__next__().connection_id == "conn-1"


def test_admin_message_matches_the_help_article():
    guidance = guidance_for(IssueType.ADMIN_ACCESS_LOST)
    assert "no longer an Admin" in guidance.user_message
    assert "add you again as an Admin" in guidance.remedy
    assert "payment" in guidance_for(IssueType.SUBSCRIPTION_LAPSED).remedy.lower()
    assert "Reauthorize" in guidance_for(IssueType.AUTHORIZATION_EXPIRED).remedy


def test_one_bad_answer_is_only_suspected_until_the_confirming_recheck(stack, lambdas):
    seeded = seed_connection(stack, "conn-1")
    stack.clock.advance(timedelta(days=1))
    stack.intuit.control.suspend(seeded.realm_id)
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()

    suspected = stored("conn-1")
    assert suspected.state is ConnectionState.HEALTHY
    assert suspected.suspect is not None and suspected.issue is None
    assert list(wiring.connection_store().open_issues()) == []

    stack.intuit.control.reactivate(seeded.realm_id)  # it was a blip
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()
    cleared = stored("conn-1")
    assert cleared.suspect is None and cleared.issue is None
    assert cleared.state is ConnectionState.HEALTHY


def test_idle_99_days_is_refreshed_and_stays_healthy(stack, lambdas):
    seeded = seed_connection(stack, "idle", refreshed_days_ago=99)

    check_everything_and_confirm(stack, lambdas)

    connection = stored("idle")
    assert connection.state is ConnectionState.HEALTHY and connection.issue is None
    assert connection.tokens.refresh_expires_at >= stack.clock.now() + timedelta(days=99)
    status = stack.intuit.control.grant_status(open_tokens(connection).refresh_token)
    assert status["revoked"] is False
    assert seeded.realm_id


def test_unchecked_for_101_days_is_authorization_expired(stack, lambdas):
    seed_connection(stack, "lapsed", refreshed_days_ago=99)
    stack.clock.advance(timedelta(days=2))

    check_everything_and_confirm(stack, lambdas)

    connection = stored("lapsed")
    assert connection.state is ConnectionState.NEEDS_ATTENTION
    assert connection.issue is not None and connection.issue.type is IssueType.AUTHORIZATION_EXPIRED


def test_duplicate_delivery_does_not_refresh_twice(stack, lambdas):
    seed_connection(stack, "conn-1", refreshed_days_ago=1)
    queue = wiring.check_queue()
    queue.send([CheckRequest(connection_id="conn-1"), CheckRequest(connection_id="conn-1")])
    before = stack.intuit.control.stats()

    lambdas.drain_checks()

    after = stack.intuit.control.stats()
    assert after["refresh_grants"] - before["refresh_grants"] == 1
    assert sum(after["metered"].values()) - sum(before["metered"].values()) == 1


def test_poisoned_message_lands_in_dlq_without_blocking_the_batch(stack, lambdas):
    seed_connection(stack, "conn-1", refreshed_days_ago=1)
    sqs = stack.client("sqs")
    queue_url = stack.resources["CheckQueue"].ref
    sqs.send_message(QueueUrl=queue_url, MessageBody="{not json")
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"connection_id": "conn-1"}))

    for _ in range(6):  # maxReceiveCount is 5; each failed receive goes back to the queue
        lambdas.drain_checks()

    assert stored("conn-1").tokens.refreshed_at == stack.clock.now()
    dlq_url = stack.resources["CheckDeadLetterQueue"].ref
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [message["Body"] for message in dead] == ["{not json"]


def test_racing_workers_never_lose_the_refresh_token(stack):
    """200 races of two workers on one connection: the token always still refreshes at Intuit."""
    ids = [f"race-{n}" for n in range(10)]
    for connection_id in ids:
        seed_connection(stack, connection_id)
    deps = wiring.check_deps()
    for _ in range(20):
        stack.clock.advance(timedelta(hours=25))  # every round rotates the refresh token
        for connection_id in ids:
            barrier = threading.Barrier(2)

            def race(connection_id=connection_id, barrier=barrier):
                barrier.wait()
                check_connection(CheckRequest(connection_id=connection_id), deps, stack.clock.now())

            threads = [threading.Thread(target=race) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    for connection_id in ids:
        connection = stored(connection_id)
        assert connection.state is ConnectionState.HEALTHY
        assert stack.intuit.control.is_refresh_token_current(open_tokens(connection).refresh_token)
        # The stored token really works at Intuit.
        granted = wiring.intuit_client().refresh(open_tokens(connection).refresh_token)
        assert granted.pair.refresh_token


def test_thirty_percent_faults_for_five_days_open_no_issue_and_every_day_is_checked(stack, lambdas):
    ids = [f"conn-{n}" for n in range(12)]
    for connection_id in ids:
        seed_connection(stack, connection_id)
    stack.intuit.control.set_faults(rate=0.3, kinds=["500", "503", "429", "reset"], seed=7)
    completed: dict[str, set[datetime]] = {connection_id: set() for connection_id in ids}
    start = stack.clock.now()

    def note_completed_checks(_invocation=None):
        # A check completed when its last attempt left no transient failure behind (one scan of the fleet).
        for connection in wiring.connection_store().scan_segment(0, 1):
            if connection.connection_id not in completed:
                continue
            if connection.last_check_at and connection.transient_failures == 0:
                completed[connection.connection_id].add(connection.last_check_at)

    ProductionSchedule(lambdas, after_invocation=note_completed_checks).run_for(timedelta(days=5))
    note_completed_checks()

    assert list(wiring.connection_store().open_issues()) == []
    for connection_id in ids:
        connection = stored(connection_id)
        assert connection.state is ConnectionState.HEALTHY and connection.suspect is None
        # One completed check per daily slot (5 in 5 days), none more than a day plus retries apart.
        times = sorted(completed[connection_id])
        assert len(times) >= 5, connection_id
        gaps = [later - earlier for earlier, later in zip([start, *times], times, strict=False)]
        assert max(gaps) <= timedelta(hours=32), (connection_id, max(gaps))


def test_a_checked_connection_stays_under_one_kilobyte_so_each_write_costs_one_unit(stack):
    from bench.cost_measure import item_size  # DynamoDB's documented item size rules

    # A generated id (32 hex characters, as registration makes them), a sandbox company's name, its admin.
    connection_id = "9f1c2e7a4b6d48e0a3c5f7b9d1e3a5c7"
    seed_connection(
        stack,
        connection_id,
        refreshed_days_ago=1,
        company_name="Craig's Design and Landscaping",
        admin_email="craig.landscaping.admin@example.com",
    )
    check_connection(CheckRequest(connection_id=connection_id), wiring.check_deps(), stack.clock.now())

    item = stack.client("dynamodb").get_item(
        TableName=stack.resources["ConnectionsTable"].ref,
        Key={"connection_id": {"S": connection_id}},
        ConsistentRead=True,
    )["Item"]
    assert stored(connection_id).last_success_at == stack.clock.now()
    assert stored(connection_id).company_name == "Craig's Design and Landscaping"
    assert item_size(item) <= 1024, item_size(item)


def test_the_company_name_follows_a_rename_in_quickbooks_and_survives_a_failed_read(stack):
    seeded = seed_connection(stack, "conn-1", company_name="Acme Ltd", refreshed_days_ago=1)
    stack.intuit.control.rename_company(seeded.realm_id, "Acme <script>alert(1)</script>\x1b[31m Holdings")

    check_connection(CheckRequest(connection_id="conn-1"), wiring.check_deps(), stack.clock.now())
    renamed = stored("conn-1").company_name
    # Kept as text (escaped where shown), without the terminal control character.
    assert renamed == "Acme <script>alert(1)</script>[31m Holdings"

    stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, False)
    stack.clock.advance(timedelta(days=1))
    check_connection(CheckRequest(connection_id="conn-1"), wiring.check_deps(), stack.clock.now())
    assert stored("conn-1").suspect is not None and stored("conn-1").company_name == renamed
