"""The connection item stays under 1 KB with realistic data, at every write of a check (one write unit each).

The store the check uses is wrapped: after each of its writes the stored item is read back as DynamoDB keeps
it and measured by DynamoDB's documented item size rules (``bench.cost_measure.item_size``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from local.seed import connection_of_grant
from qbo_health import wiring
from qbo_health.domain.model import (
    Authorizer,
    Connection,
    ConnectionState,
    IssueType,
    OpenIssue,
    PendingNotice,
)
from qbo_health.messages import CheckRequest
from qbo_health.service.health_check import check_connection

ONE_KB = 1024
# AWS KMS's ciphertext of a 256-bit data key is longer than the embedded stack's (moto's): 167 B in the
# AWS CLI's documented ``kms generate-data-key`` example; 184 B is assumed here, to be on the safe side.
KMS_DATA_KEY_BYTES = 184


class MeasuringStore:
    """The real connection store; after each write, the stored item's size as DynamoDB counts it."""

    def __init__(self, stack: Any) -> None:
        self._store = wiring.connection_store()
        self._stack = stack
        self.sizes: list[tuple[str, int]] = []

    def _measure(self, write: str, connection_id: str) -> None:
        from bench.cost_measure import item_size

        item = self._stack.client("dynamodb").get_item(
            TableName=self._stack.resources["ConnectionsTable"].ref,
            Key={"connection_id": {"S": connection_id}},
            ConsistentRead=True,
        )["Item"]
        # As it will be on AWS: the data key's ciphertext at its real length.
        data_key = item.get("tk", {}).get("B", b"")
        real_key = max(0, KMS_DATA_KEY_BYTES - len(data_key)) if data_key else 0
        self.sizes.append((write, item_size(item) + real_key))

    def create(self, connection: Connection) -> Connection:
        created = self._store.create(connection)
        self._measure("create", connection.connection_id)
        return created

    def acquire_lease(self, connection_id: str, owner: str, now: Any, lease_seconds: int) -> Connection:
        leased = self._store.acquire_lease(connection_id, owner, now, lease_seconds)
        self._measure("acquire_lease", connection_id)
        return leased

    def save(self, connection: Connection, **kwargs: Any) -> Connection:
        saved = self._store.save(connection, **kwargs)
        self._measure("save", connection.connection_id)
        return saved

    def release_lease(self, connection_id: str, owner: str) -> None:
        self._store.release_lease(connection_id, owner)
        self._measure("release_lease", connection_id)


def realistic_connection(stack: Any, *, admin: bool = True) -> Connection:
    """UUID ids, three 40-character contacts, a 100-character company name, a display name and locale, the
    authorizer, an open issue three notices in, a pending notice, expected bindings and sealed tokens."""
    control = stack.intuit.control
    company = ("Northwind Landscaping & Design Holdings of the Greater Pacific Northwest Region, " * 2)[:100]
    realm_id = control.create_company(name=company)
    email = "accounts.payable.administrator@example.com"
    user_id = control.add_user(realm_id, email=email, admin=admin)
    granted = control.issue_tokens(realm_id, user_id, refreshed_days_ago=1)
    connection_id = str(uuid.uuid4())
    connection = connection_of_grant(
        stack,
        connection_id,
        realm_id=realm_id,
        tenant_id=str(uuid.uuid4()),
        granted=granted,
        authorizer=Authorizer(user_id, email),
        refreshed_days_ago=1,
        contacts=tuple(f"{name}.{'x' * 40}"[:28] + "@example.com" for name in ("owner", "billing", "it")),
        company_name=company,
    )
    now = stack.clock.now()
    opened = now - timedelta(days=8)
    issue = OpenIssue(
        type=IssueType.ADMIN_ACCESS_LOST,
        episode_id=uuid.uuid4().hex,
        first_seen_at=opened - timedelta(minutes=15),
        opened_at=opened,
        deadline=opened + timedelta(days=14),
        notices=(
            ("NOTICE", opened),
            ("REMINDER_1", opened + timedelta(days=3)),
            ("REMINDER_2", opened + timedelta(days=7)),
        ),
    )
    return replace(
        connection,
        state=ConnectionState.NEEDS_ATTENTION,
        issue=issue,
        pending_notice=PendingNotice("REMINDER_2", issue.episode_id, issue.type),
        display_name="Acme Bookkeeping Cloud",
        locale="fr-CA",
        expected_realm_id=realm_id,
        expected_email=email,
        grant_generation=1,
    )


@pytest.mark.parametrize("still_broken", [True, False], ids=["issue-persists", "issue-heals"])
def test_the_connection_item_stays_under_one_kilobyte_at_every_write_of_a_check(stack, still_broken):
    measuring = MeasuringStore(stack)
    connection = realistic_connection(stack, admin=not still_broken)
    assert all(len(contact) == 40 for contact in connection.contacts)
    measuring.create(connection)

    deps = replace(wiring.check_deps(), store=measuring)
    result = check_connection(CheckRequest(connection_id=connection.connection_id), deps, stack.clock.now())

    assert result.status == "checked"
    writes = [write for write, _ in measuring.sizes]
    assert writes[:2] == ["create", "acquire_lease"] and "save" in writes  # during the lease and after
    assert max(size for _, size in measuring.sizes) <= ONE_KB, measuring.sizes


def test_the_profile_item_holding_the_cold_fields_also_stays_under_one_kilobyte(stack):
    from bench.cost_measure import item_size

    connection = realistic_connection(stack)
    wiring.connection_store().create(connection)
    profile = stack.client("dynamodb").get_item(
        TableName=stack.resources["ConnectionsTable"].ref,
        Key={"connection_id": {"S": f"{connection.connection_id}#profile"}},
        ConsistentRead=True,
    )["Item"]
    assert item_size(profile) <= ONE_KB
    # Read back whole through the store, as the API and the notices see it.
    assert connection.sealed_tokens is not None
    unkeyed = replace(connection.sealed_tokens, key_id="")  # the ciphertext names its key
    assert wiring.connection_store().get(connection.connection_id) == replace(
        connection, sealed_tokens=unkeyed
    )


def _iso(moment: Any) -> dict[str, str]:
    return {"S": moment.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")}


def first_shape_item(connection: Connection) -> dict[str, Any]:
    """The connection as the first stored shape wrote it: long names, ISO times, the key ARN, one item."""
    issue, sealed, tokens = connection.issue, connection.sealed_tokens, connection.tokens
    assert issue is not None and sealed is not None and connection.authorized_by is not None
    return {
        "connection_id": {"S": connection.connection_id},
        "tenant_id": {"S": connection.tenant_id},
        "realm_id": {"S": connection.realm_id},
        "state": {"S": connection.state.value},
        "version": {"N": "3"},
        "contacts": {"L": [{"S": contact} for contact in connection.contacts]},
        "authorized_user_id": {"S": connection.authorized_by.user_id},
        "authorized_email": {"S": connection.authorized_by.email},
        "open_issue": {"S": "OPEN"},
        "issue_type": {"S": issue.type.value},
        "issue_episode": {"S": issue.episode_id},
        "issue_first_seen_at": _iso(issue.first_seen_at),
        "issue_opened_at": _iso(issue.opened_at),
        "issue_deadline": {"S": issue.deadline.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        "issue_notices": {
            "L": [{"S": f"{stage}@{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"} for stage, at in issue.notices]
        },
        "refresh_expires_at": _iso(tokens.refresh_expires_at),
        "hard_expires_at": _iso(tokens.hard_expires_at),
        "refreshed_at": _iso(tokens.refreshed_at),
        "rotated_at": _iso(tokens.rotated_at),
        "token_ciphertext": {"B": sealed.ciphertext},
        "token_data_key": {"B": sealed.encrypted_data_key},
        "token_key_id": {"S": sealed.key_id},
        "created_at": _iso(connection.created_at),
        "last_success_at": _iso(connection.last_success_at),
        "transient_failures": {"N": "0"},
        "on_hold": {"BOOL": False},
        "company": {"S": connection.company_name},
        "display_name": {"S": connection.display_name},
        "locale": {"S": connection.locale},
        "grant_generation": {"N": "1"},
        "expected_realm_id": {"S": connection.expected_realm_id},
        "expected_email": {"S": connection.expected_email},
    }


def test_an_item_of_the_first_stored_shape_loads_unchanged_and_its_check_rewrites_it_small(stack):
    from bench.cost_measure import item_size

    connection = replace(realistic_connection(stack, admin=False), pending_notice=None, version=3)
    dynamodb, table = stack.client("dynamodb"), stack.resources["ConnectionsTable"].ref
    dynamodb.put_item(TableName=table, Item=first_shape_item(connection))
    store = wiring.connection_store()

    loaded = store.get(connection.connection_id)
    assert replace(loaded, sealed_tokens=connection.sealed_tokens) == connection
    assert [c.connection_id for c in store.open_issues()] == [connection.connection_id]  # still indexed

    measuring = MeasuringStore(stack)
    deps = replace(wiring.check_deps(), store=measuring)
    check_connection(CheckRequest(connection_id=connection.connection_id), deps, stack.clock.now())

    item = dynamodb.get_item(TableName=table, Key={"connection_id": {"S": connection.connection_id}})["Item"]
    assert not {"contacts", "company", "token_key_id", "created_at", "issue_notices"} & set(item)
    assert max(size for _, size in measuring.sizes) <= ONE_KB, measuring.sizes  # rewritten with the lease
    after = store.get(connection.connection_id)
    assert (after.contacts, after.company_name, after.locale, after.expected_email) == (
        connection.contacts,
        connection.company_name,
        connection.locale,
        connection.expected_email,
    )
    assert after.issue is not None and after.issue.notices == connection.issue.notices
    assert item_size(item) < item_size(first_shape_item(connection))
