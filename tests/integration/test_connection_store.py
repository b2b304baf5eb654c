"""The connections table on the embedded stack's DynamoDB: faithful storage, leases, versions, indexes."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from qbo_health import wiring
from qbo_health.adapters.control import CachedOutageFlag
from qbo_health.domain.activity import ActivityWrite, StoredActivity, day_of
from qbo_health.domain.model import (
    Authorizer,
    Connection,
    ConnectionState,
    DisconnectReason,
    IssueType,
    OpenIssue,
    PendingNotice,
    SealedTokens,
    SubscriptionStatus,
    SuspectedIssue,
    TokenTimes,
)
from qbo_health.domain.schedule import check_slot
from qbo_health.errors import AccessWanted, ConcurrentUpdate, ConnectionNotFound, LeaseHeld

LEASE = 120
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


@pytest.fixture
def store(stack):
    return wiring.connection_store()


def at(**delta) -> datetime:
    return T0 + timedelta(**delta)


def issue(
    deadline_days: float = 14, episode: str = "episode-1", kind=IssueType.ADMIN_ACCESS_LOST
) -> OpenIssue:
    return OpenIssue(
        type=kind,
        episode_id=episode,
        first_seen_at=at(minutes=-15),
        opened_at=T0,
        deadline=T0 + timedelta(days=deadline_days),
    )


def new(connection_id: str, *, realm_id: str | None = "realm-1", **changes) -> Connection:
    base = Connection(
        connection_id=connection_id,
        tenant_id="tenant-1",
        realm_id=realm_id,
        state=ConnectionState.HEALTHY,
        contacts=("owner@example.com",),
        created_at=T0,
    )
    return replace(base, **changes)


def everything(connection_id: str = "conn-full") -> Connection:
    """A connection with every field away from its default."""
    return Connection(
        connection_id=connection_id,
        tenant_id="tenant-7",
        realm_id="9130350000000001",
        state=ConnectionState.NEEDS_ATTENTION,
        version=0,
        contacts=("owner@example.com", "books@example.com"),
        authorized_by=Authorizer(user_id="user-123", email="admin@example.com"),
        issue=issue(kind=IssueType.SUBSCRIPTION_LAPSED),
        suspect=SuspectedIssue(IssueType.ADMIN_ACCESS_LOST, first_seen_at=at(minutes=5), intuit_tid="tid-9"),
        tokens=TokenTimes(
            access_expires_at=at(hours=1),
            refresh_expires_at=at(days=100),
            hard_expires_at=at(days=1800),
            refreshed_at=at(seconds=-30),
            rotated_at=at(days=-3),
        ),
        sealed_tokens=SealedTokens(
            ciphertext=bytes(range(256)) + b"\x00\xff",
            encrypted_data_key=b"\x01\x02\x03" * 60,
            key_id="arn:aws:kms:us-east-1:123456789012:key/0000-1111",
        ),
        created_at=at(days=-400),
        last_check_at=at(seconds=-1),
        last_success_at=at(days=-2),
        transient_failures=3,
        on_hold=True,
        reauth_due_warned_at=at(days=-1),
        subscription_status=SubscriptionStatus.SUSPENDED,
        company_name="Acme & Sons <Ltd>",
        display_name="Acme Books",
        locale="fr-CA",
        disconnect_reason=DisconnectReason.CUSTOMER_REQUEST,
        disconnected_at=at(hours=-6),
        grant_generation=3,
        expected_realm_id="9130350001",
        expected_email="owner@example.com",
        pending_notice=PendingNotice("DISCONNECTED", "episode-0", IssueType.ADMIN_ACCESS_LOST),
        settled_at=at(days=-9),  # stored in whole seconds
    )


def ids_sharing_a_slot(count: int) -> tuple[int, list[str]]:
    slot = check_slot("conn-0")
    same = [f"conn-{n}" for n in range(1000) if check_slot(f"conn-{n}") == slot][:count]
    return slot, same


# ---------------------------------------------------------------------------------------------- round trips


def test_every_field_of_a_connection_survives_create_and_get(store):
    connection = everything()
    defaults = Connection("x", "t", None, ConnectionState.PENDING)
    untouched = [
        f.name
        for f in fields(Connection)
        # access_wanted is the lease's companion flag, set only by request_access (tested below); a healed
        # episode (recovering) takes the issue's place, so it has its own round trip below; the product's
        # activity is written only by its report (tested below); the profile flag says what a read included
        if f.name
        not in (
            "version",
            "access_wanted",
            "recovering",
            "activity_ok_at",
            "activity_failed_at",
            "profile_loaded",
        )
        and getattr(connection, f.name) == getattr(defaults, f.name)
    ]
    assert untouched == [], "the fixture must set every field to prove it is stored"

    store.create(connection)

    # All but the KMS key's id: the data key's ciphertext names its key, so no item repeats the ARN.
    assert connection.sealed_tokens is not None
    unkeyed = replace(connection.sealed_tokens, key_id="")
    assert store.get(connection.connection_id) == replace(connection, sealed_tokens=unkeyed)


def test_a_healed_episode_round_trips_and_stays_in_the_open_issues_index(store):
    healed = replace(issue(), healed_at=at(hours=2), notices=(("NOTICE", at(minutes=30)),))
    connection = new("conn-healed", recovering=healed)

    store.create(connection)

    assert store.get("conn-healed") == connection
    assert store.get("conn-healed").issue is None
    assert [item.connection_id for item in store.open_issues()] == ["conn-healed"]


def test_activity_is_written_once_a_day_and_never_by_a_save(store):
    created = store.create(everything())
    ok_at, failed_at = at(hours=-3), at(hours=-1)
    today = day_of(at())
    assert store.record_activity([ActivityWrite(created.connection_id, ok_at, failed_at, today)]) == 1
    assert store.record_activity([ActivityWrite(created.connection_id, at(), None, today)]) == 0
    assert store.record_activity([ActivityWrite("nobody", at(), None, today)]) == 0

    stored = store.get(created.connection_id)
    assert (stored.activity_ok_at, stored.activity_failed_at) == (ok_at, failed_at)
    store.save(replace(stored, transient_failures=0), changed_from=stored)
    assert store.get(created.connection_id).activity_ok_at == ok_at
    assert store.stored_activity([created.connection_id, "nobody"]) == {
        created.connection_id: StoredActivity(ok_at, failed_at, today)
    }


def test_a_pending_connection_with_nothing_yet_round_trips_as_empty(store):
    connection = Connection("conn-new", "tenant-1", realm_id=None, state=ConnectionState.PENDING)

    store.create(connection)

    assert store.get("conn-new") == connection


def test_authorizer_without_email_round_trips(store):
    connection = new("conn-1", authorized_by=Authorizer("user-1"), contacts=())

    store.create(connection)

    assert store.get("conn-1").authorized_by == Authorizer("user-1", None)
    assert store.get("conn-1").contacts == ()


def test_save_writes_every_field_and_clears_what_became_empty(store):
    created = store.create(everything())
    healed = replace(
        created,
        state=ConnectionState.HEALTHY,
        issue=None,
        suspect=None,
        sealed_tokens=None,
        authorized_by=None,
        contacts=(),
        on_hold=False,
        transient_failures=0,
        reauth_due_warned_at=None,
        disconnect_reason=None,
        disconnected_at=None,
        tokens=TokenTimes(access_expires_at=at(hours=2)),
        last_success_at=at(hours=1),
    )

    saved = store.save(healed)

    assert saved.version == 1
    assert store.get("conn-full") == saved


@pytest.mark.parametrize(
    "opened_at",
    [
        datetime(2026, 1, 5, 6, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 1, 5, 8, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["system-clock-microseconds", "aware-non-utc"],
)
def test_an_issue_deadline_round_trips_exactly(store, opened_at):
    opened = OpenIssue(
        type=IssueType.ADMIN_ACCESS_LOST,
        episode_id="episode-1",
        first_seen_at=opened_at,
        opened_at=opened_at,
        deadline=opened_at + timedelta(days=14),
    )
    store.create(new("conn-1", state=ConnectionState.NEEDS_ATTENTION, issue=opened))

    stored = store.get("conn-1").issue

    assert stored is not None
    assert stored.deadline == opened.deadline
    assert stored.deadline - stored.opened_at == timedelta(days=14)


def test_creating_a_connection_twice_is_refused_and_keeps_the_first(store):
    store.create(new("conn-1", tenant_id="tenant-a"))

    with pytest.raises(ConcurrentUpdate):
        store.create(new("conn-1", tenant_id="tenant-b"))

    assert store.get("conn-1").tenant_id == "tenant-a"


def test_a_missing_connection_is_not_found(store):
    with pytest.raises(ConnectionNotFound) as raised:
        store.get("nobody")

    assert raised.value.connection_id == "nobody"


def test_saving_a_connection_that_was_never_created_does_not_create_it(store):
    with pytest.raises((ConcurrentUpdate, ConnectionNotFound)):
        store.save(new("ghost"))

    with pytest.raises(ConnectionNotFound):
        store.get("ghost")


# ---------------------------------------------------------------------------------------------- versions


def test_a_save_from_a_stale_read_is_refused(store):
    store.create(new("conn-1"))
    first_reader = store.get("conn-1")
    second_reader = store.get("conn-1")

    winner = store.save(replace(first_reader, transient_failures=1))
    with pytest.raises(ConcurrentUpdate):
        store.save(replace(second_reader, on_hold=True))

    stored = store.get("conn-1")
    assert stored == winner
    assert stored.version == 1
    assert stored.on_hold is False


def test_each_save_moves_the_version_on_by_one(store):
    connection = store.create(new("conn-1"))

    for expected in (1, 2, 3):
        connection = store.save(replace(connection, transient_failures=expected))
        assert connection.version == expected

    assert store.get("conn-1").version == 3


# ---------------------------------------------------------------------------------------------- leases


def test_a_lease_is_exclusive_until_it_expires_by_the_clock(stack, store):
    store.create(new("conn-1"))
    start = stack.clock.now()

    leased = store.acquire_lease("conn-1", "worker-a", start, LEASE)
    assert store.complete(leased) == store.get("conn-1")
    with pytest.raises(LeaseHeld):
        store.acquire_lease("conn-1", "worker-b", start, LEASE)

    stack.clock.advance(timedelta(seconds=LEASE - 1))
    with pytest.raises(LeaseHeld):
        store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)

    stack.clock.advance(timedelta(seconds=2))
    taken = store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)
    assert taken.connection_id == "conn-1"
    with pytest.raises(LeaseHeld):
        store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)


def test_the_owner_can_reacquire_its_lease_and_that_extends_it(stack, store):
    store.create(new("conn-1"))
    store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    stack.clock.advance(timedelta(seconds=LEASE - 10))
    store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)
    stack.clock.advance(timedelta(seconds=60))  # past the first lease, inside the renewed one

    with pytest.raises(LeaseHeld):
        store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)


def test_a_lease_on_a_missing_connection_is_not_found(stack, store):
    with pytest.raises(ConnectionNotFound):
        store.acquire_lease("nobody", "worker-a", stack.clock.now(), LEASE)


def test_taking_a_lease_does_not_change_the_version(stack, store):
    store.create(new("conn-1"))

    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    assert leased.version == 0
    assert store.save(leased, lease_owner="worker-a").version == 1


def test_only_the_lease_owner_may_save(stack, store):
    store.create(new("conn-1"))
    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    with pytest.raises(ConcurrentUpdate):
        store.save(replace(leased, on_hold=True), lease_owner="worker-b")
    assert store.get("conn-1").on_hold is False

    saved = store.save(replace(leased, on_hold=True), lease_owner="worker-a")
    assert store.get("conn-1") == store.complete(saved)


def test_saving_as_owner_without_any_lease_is_refused(store):
    connection = store.create(new("conn-1"))

    with pytest.raises(ConcurrentUpdate):
        store.save(connection, lease_owner="worker-a")


def test_a_lease_taken_over_after_expiry_locks_out_the_late_worker(stack, store):
    store.create(new("conn-1"))
    slow = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)
    stack.clock.advance(timedelta(seconds=LEASE + 1))
    store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)

    with pytest.raises(ConcurrentUpdate):
        store.save(replace(slow, transient_failures=9), lease_owner="worker-a")
    assert store.get("conn-1").transient_failures == 0


def test_saving_with_release_frees_the_lease_at_once(stack, store):
    store.create(new("conn-1"))
    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    store.save(leased, lease_owner="worker-a", release_lease=True)

    assert store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE).version == 1


def test_saving_without_release_keeps_the_lease(stack, store):
    store.create(new("conn-1"))
    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    store.save(leased, lease_owner="worker-a")

    with pytest.raises(LeaseHeld):
        store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)


def test_release_lease_frees_only_the_owners_lease(stack, store):
    store.create(new("conn-1"))
    store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    store.release_lease("conn-1", "worker-b")
    with pytest.raises(LeaseHeld):
        store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)

    store.release_lease("conn-1", "worker-a")
    store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)


# ---------------------------------------------------------------------------------------------- indexes


def test_open_issues_lists_only_connections_with_a_confirmed_issue(store):
    store.create(new("broken", state=ConnectionState.NEEDS_ATTENTION, issue=issue()))
    store.create(new("suspected", suspect=SuspectedIssue(IssueType.SUBSCRIPTION_LAPSED, first_seen_at=T0)))
    store.create(new("fine"))

    listed = list(store.open_issues())

    assert [c.connection_id for c in listed] == ["broken"]
    assert store.complete(listed[0]) == store.get("broken")


def test_a_closed_issue_drops_out_of_the_open_issues_index(store):
    broken = store.create(new("broken", state=ConnectionState.NEEDS_ATTENTION, issue=issue()))

    store.save(replace(broken, issue=None, state=ConnectionState.HEALTHY))

    assert list(store.open_issues()) == []


def test_open_issues_come_soonest_deadline_first(store):
    for connection_id, days in (("later", 13), ("soonest", 1), ("middle", 7)):
        store.create(
            new(connection_id, state=ConnectionState.NEEDS_ATTENTION, issue=issue(days, connection_id))
        )

    assert [c.connection_id for c in store.open_issues()] == ["soonest", "middle", "later"]


def ids_in(store, slot):
    return [member.connection_id for member in store.slot_members(slot)]


def test_a_slot_lists_only_checkable_connections_of_that_slot(store):
    slot, same_slot = ids_sharing_a_slot(3)
    other = next(f"conn-{n}" for n in range(1000) if check_slot(f"conn-{n}") != slot)
    checkable, disconnected = same_slot[:2], same_slot[2]
    for connection_id in [*checkable, other]:
        store.create(new(connection_id))
    store.create(
        new(
            disconnected,
            state=ConnectionState.DISCONNECTED,
            disconnect_reason=DisconnectReason.GRACE_PERIOD_EXPIRED,
            disconnected_at=T0,
        )
    )

    assert sorted(ids_in(store, slot)) == sorted(checkable)
    assert list(ids_in(store, check_slot(other))) == [other]


def test_a_connection_leaves_its_slot_when_it_is_disconnected(store):
    connection = store.create(new("conn-1"))
    slot = check_slot("conn-1")
    assert list(ids_in(store, slot)) == ["conn-1"]

    store.save(replace(connection, state=ConnectionState.DISCONNECTED, disconnected_at=T0))

    assert list(ids_in(store, slot)) == []


@pytest.mark.parametrize("state", [ConnectionState.PENDING, ConnectionState.NEEDS_ATTENTION])
def test_pending_and_broken_connections_are_still_scheduled(store, state):
    store.create(new("conn-1", state=state))

    assert list(ids_in(store, check_slot("conn-1"))) == ["conn-1"]


def test_ids_for_realm_finds_every_connection_to_that_company(store):
    store.create(new("conn-a", realm_id="realm-1"))
    store.create(new("conn-b", realm_id="realm-1", tenant_id="tenant-2"))
    store.create(new("conn-c", realm_id="realm-2"))
    store.create(new("conn-d", realm_id=None, state=ConnectionState.PENDING))

    assert sorted(store.ids_for_realm("realm-1")) == ["conn-a", "conn-b"]
    assert store.ids_for_realm("realm-2") == ["conn-c"]
    assert store.ids_for_realm("realm-unknown") == []


# ---------------------------------------------------------------------------------------------- access flag


def test_access_can_be_requested_only_while_a_lease_is_held(stack, store):
    store.create(new("conn-1"))
    assert store.request_access("conn-1", stack.clock.now()) is False  # nobody to ask
    assert store.get("conn-1").access_wanted is False

    store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)
    assert store.request_access("conn-1", stack.clock.now()) is True
    assert store.get("conn-1").access_wanted is True

    stack.clock.advance(timedelta(seconds=LEASE + 1))  # the holder died: its lease ran out
    assert store.request_access("conn-1", stack.clock.now()) is False


def test_a_release_that_must_not_miss_a_waiting_caller_is_refused_and_changes_nothing(stack, store):
    store.create(new("conn-1"))
    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)
    store.request_access("conn-1", stack.clock.now())

    with pytest.raises(AccessWanted):
        store.save(
            replace(leased, transient_failures=2),
            lease_owner="worker-a",
            release_lease=True,
            unless_access_wanted=True,
        )
    assert store.get("conn-1").transient_failures == 0
    with pytest.raises(LeaseHeld):  # still ours
        store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)

    saved = store.save(replace(leased, transient_failures=2), lease_owner="worker-a", release_lease=True)
    assert saved.access_wanted is False
    assert store.get("conn-1") == store.complete(saved)  # flag gone with the lease
    store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)


def test_without_a_waiting_caller_the_guarded_release_is_a_plain_release(stack, store):
    store.create(new("conn-1"))
    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)

    store.save(leased, lease_owner="worker-a", release_lease=True, unless_access_wanted=True)

    assert store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE).version == 1


def test_a_guarded_release_by_a_late_worker_is_a_plain_conflict(stack, store):
    store.create(new("conn-1"))
    slow = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)
    stack.clock.advance(timedelta(seconds=LEASE + 1))
    store.acquire_lease("conn-1", "worker-b", stack.clock.now(), LEASE)
    store.request_access("conn-1", stack.clock.now())

    with pytest.raises(ConcurrentUpdate) as refused:
        store.save(slow, lease_owner="worker-a", release_lease=True, unless_access_wanted=True)
    assert not isinstance(refused.value, AccessWanted)  # the token is not ours to hand over


def test_releasing_the_lease_clears_the_access_flag(stack, store):
    store.create(new("conn-1"))
    store.acquire_lease("conn-1", "api-a", stack.clock.now(), LEASE)
    store.request_access("conn-1", stack.clock.now())

    store.release_lease("conn-1", "api-a")

    assert store.get("conn-1").access_wanted is False


def test_a_worker_sees_a_suspected_outage_within_a_minute_and_its_own_at_once(stack):

    control = wiring.control_store()
    here, elsewhere = CachedOutageFlag(control), CachedOutageFlag(control)
    now = stack.clock.now()
    assert not here.suspected(now) and not elsewhere.suspected(now)

    control.mark_outage(now, "run-1")  # flagged by another container
    here.raised_here(now)

    assert here.suspected(now)
    assert elsewhere.suspected(now + timedelta(minutes=1))
    control.end_outage(now + timedelta(hours=2))
    assert not elsewhere.suspected(now + timedelta(hours=2, minutes=1))


def test_a_lease_reads_only_the_connection_item_and_its_writes_keep_the_profile(stack, store):
    store.create(new("conn-1", contacts=("owner@example.com",), company_name="Acme", locale="fr-CA"))
    leased = store.acquire_lease("conn-1", "worker-a", stack.clock.now(), LEASE)
    assert not leased.profile_loaded and leased.contacts == () and leased.company_name is None

    saved = store.save(replace(leased, on_hold=True), changed_from=leased, lease_owner="worker-a")
    store.save(saved, lease_owner="worker-a", release_lease=True)  # a full write, too

    stored = store.get("conn-1")
    assert (stored.contacts, stored.company_name, stored.locale, stored.on_hold) == (
        ("owner@example.com",),
        "Acme",
        "fr-CA",
        True,
    )
    renamed = store.save(replace(stored, company_name="Acme Holdings", contacts=()), changed_from=stored)
    assert store.get("conn-1") == store.complete(replace(renamed, profile_loaded=False))
    assert store.get("conn-1").contacts == () and store.get("conn-1").company_name == "Acme Holdings"
