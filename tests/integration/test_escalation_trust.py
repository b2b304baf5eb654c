"""Escalation you can trust: races with the user's reauthorization, leases of a long run, bad data that must
not stop a run, notices that go out once, one source of every deadline, flapping connections.

Scenarios play production's schedules (`ProductionSchedule`) with default settings on the embedded stack.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import requests

from local.production import ProductionSchedule
from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import ConnectionModel
from qbo_health.domain.escalation import Stage
from qbo_health.domain.model import ConnectionState, DisconnectReason, IssueType, OpenIssue
from qbo_health.errors import ConfigurationError, DisconnectAverted
from qbo_health.messages import CheckRequest
from qbo_health.service.disconnect import disconnect_connection
from qbo_health.service.health_check import check_connection


def due_for_disconnect(stack, name, *, days_ago=14.1, contacts=("owner@example.com",)):
    """A connection whose admin left, told at every stage, past its deadline; checks are running."""
    seeded = seed_connection(stack, name, refreshed_days_ago=1, contacts=contacts)
    stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, False)
    store = wiring.connection_store()
    connection = store.get(name)
    opened = stack.clock.now() - timedelta(days=days_ago)
    told = ((Stage.NOTICE, 0), (Stage.REMINDER_1, 3), (Stage.REMINDER_2, 7), (Stage.FINAL_WARNING, 12))
    issue = OpenIssue(
        type=IssueType.ADMIN_ACCESS_LOST,
        episode_id=f"episode-{name}",
        first_seen_at=opened,
        opened_at=opened,
        deadline=opened + timedelta(days=14),
        notices=tuple((stage.value, opened + timedelta(days=day)) for stage, day in told),
    )
    store.save(
        replace(connection, issue=issue, state=ConnectionState.NEEDS_ATTENTION), changed_from=connection
    )
    wiring.control_store().beat(stack.clock.now())
    return seeded


def lease_free(connection_id, now):
    item = ConnectionModel.get(connection_id, consistent_read=True)
    return item.lease_owner is None or item.lease_expires_at < int(now.timestamp())


def reauthorize(stack, reconnect_url):
    """The user's browser: the reconnect link, consent at Intuit, the callback. Returns the callback page."""
    browser = requests.Session()
    start = browser.get(reconnect_url, allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text
    location = stack.intuit.control.consent(start.headers["Location"])
    return browser.get(location, allow_redirects=False, timeout=30)


# ------------------------------------------------------------------ item 1: disconnect vs reauthorization


def test_a_reauthorization_right_after_the_disconnect_recheck_is_never_undone(stack, lambdas, api_client):
    """Day 14: the escalator's live re-check still finds the admin gone; that very moment the user
    restores the admin and reauthorizes. The reauthorization either lands before the disconnect takes the
    connection (and is kept), or waits for the lease (and the disconnect is what the user sees): a
    reauthorization that said "connected" is never revoked afterwards."""
    seeded = due_for_disconnect(stack, "conn-1")
    reconnect_url = api_client.status("conn-1").reconnect_url
    deps = wiring.escalation_deps()
    original = deps.recheck
    pages = []

    def user_acts_after_the_recheck(connection_id, now, **kwargs):
        result = original(connection_id, now, **kwargs)
        if not pages:
            stack.intuit.control.set_admin(seeded.realm_id, seeded.user_id, True)
            if lease_free(connection_id, stack.clock.now()):
                pages.append(reauthorize(stack, reconnect_url))
            else:
                pages.append(None)  # the user's request waits for the lease: it comes after this run
        return result

    deps.recheck = user_acts_after_the_recheck
    try:
        ProductionSchedule(lambdas).run_for(timedelta(hours=1))
    finally:
        deps.recheck = original
    if pages == [None]:
        pages = [reauthorize(stack, reconnect_url)]

    [page] = pages
    connection = wiring.connection_store().get("conn-1")
    if page.status_code == 200:
        assert connection.state is ConnectionState.HEALTHY, "a reauthorization that succeeded was undone"
        assert connection.sealed_tokens is not None
        live = [grant for grant in stack.intuit.control.grants_of(seeded.realm_id) if not grant["revoked"]]
        assert live, "the new grant was revoked"
        token = open_tokens(connection).refresh_token
        assert wiring.intuit_client().refresh(token).pair.access_token
    else:
        assert connection.state is ConnectionState.DISCONNECTED


def test_the_disconnect_confirms_under_its_lease_that_the_episode_still_stands(stack, lambdas):
    seeded = due_for_disconnect(stack, "conn-1")
    deps, now = wiring.check_deps(), stack.clock.now()
    store = wiring.connection_store()

    with pytest.raises(DisconnectAverted) as averted:
        disconnect_connection(
            "conn-1", DisconnectReason.GRACE_PERIOD_EXPIRED, deps, now, episode_id="an-older-episode"
        )
    assert averted.value.reason == "another episode"
    held = store.get("conn-1")
    store.save(replace(held, on_hold=True), changed_from=held)
    with pytest.raises(DisconnectAverted, match="on hold"):
        disconnect_connection(
            "conn-1", DisconnectReason.GRACE_PERIOD_EXPIRED, deps, now, episode_id="episode-conn-1"
        )

    connection = store.get("conn-1")
    assert connection.state is ConnectionState.NEEDS_ATTENTION and connection.sealed_tokens is not None
    assert not any(grant["revoked"] for grant in stack.intuit.control.grants_of(seeded.realm_id))
    assert lease_free("conn-1", stack.clock.now())


# ------------------------------------------------------------------ item 2: leases of a long run


def test_a_long_escalator_run_holds_each_lease_from_when_it_took_it(stack, lambdas):
    """Twelve connections due for disconnect and an Intuit that takes 5 s a call (simulated): the run
    lasts minutes. While the escalator re-checks each one, a worker's check of the same connection must
    find it busy; a lease dated from the run's start would already have ended, and the two would refresh
    the same token at once."""
    names = [f"due-{n:02d}" for n in range(12)]
    for n, name in enumerate(names):
        due_for_disconnect(stack, name, days_ago=14.1 + n / 24)
    lambdas.use_simulated_invocation_time()
    stack.intuit.control.set_latency(5000, simulated=True)
    deps = wiring.escalation_deps()
    intuit = wiring.intuit_client()
    original_recheck, original_refresh = deps.recheck, intuit.refresh
    in_recheck: list[str] = []
    worker_saw: dict[str, str] = {}

    def recheck(connection_id, now, **kwargs):
        in_recheck.append(connection_id)
        try:
            return original_recheck(connection_id, now, **kwargs)
        finally:
            in_recheck.pop()

    def refresh(token):
        if in_recheck and in_recheck[-1] not in worker_saw:
            connection_id = in_recheck[-1]
            worker_saw[connection_id] = "running"
            request = CheckRequest(connection_id=connection_id, reason="scheduled")
            worker_saw[connection_id] = check_connection(
                request, wiring.check_deps(), stack.clock.now()
            ).status
        return original_refresh(token)

    deps.recheck, intuit.refresh = recheck, refresh
    start = stack.clock.now()
    try:
        ProductionSchedule(lambdas).run_for(timedelta(hours=1))
    finally:
        deps.recheck = original_recheck
        del intuit.refresh

    assert stack.clock.now() - start >= timedelta(minutes=2)
    assert sorted(worker_saw) == names
    assert set(worker_saw.values()) == {"busy"}, worker_saw
    for name in names:
        assert wiring.connection_store().get(name).state is ConnectionState.DISCONNECTED, name


def test_a_lease_shorter_than_the_longest_check_fails_the_cold_start(stack, monkeypatch):
    monkeypatch.setenv("LEASE_SECONDS", "10")  # allowed by itself, but a check may take 60 s
    wiring.reset()
    try:
        with pytest.raises(ConfigurationError, match="LEASE_SECONDS=10 is shorter than the longest check"):
            wiring.escalation_deps()
        with pytest.raises(ConfigurationError):
            wiring.check_batch_context()
        monkeypatch.setenv("LEASE_SECONDS", "60")
        wiring.reset()
        assert wiring.escalation_deps()
    finally:
        monkeypatch.undo()
        wiring.reset()
