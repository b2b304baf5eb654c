"""What the product's backend asks of the service: register, import, hold, check now, report a problem."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from qbo_health.adapters.intuit_faults import parse_failure
from qbo_health.domain.check import ConnectionEvent, EventKind, Transition
from qbo_health.domain.classification import Classification, classify
from qbo_health.domain.model import Connection, ConnectionState, TokenPair, TokenTimes
from qbo_health.domain.subscription import reported_evidence
from qbo_health.errors import AlreadyExists, ConcurrentUpdate
from qbo_health.messages import CheckRequest
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.health_check import CheckResult, check_connection
from qbo_health.service.leased import acquire_lease_waiting, change_under_lease
from qbo_health.service.links import MintedLink

# An imported refresh token's lifetime is unknown until its first refresh; Intuit's window is 100 days.
IMPORTED_REFRESH_WINDOW = timedelta(days=100)


@dataclass(frozen=True)
class Registered:
    connection: Connection
    connect_link: MintedLink


def register_connection(
    deps: ApiDeps,
    now: datetime,
    *,
    tenant_id: str,
    contacts: tuple[str, ...],
    connection_id: str | None = None,
    expected_realm_id: str | None = None,
    expected_email: str | None = None,
    display_name: str | None = None,
    locale: str | None = None,
) -> Registered:
    connection = Connection(
        connection_id=connection_id or uuid.uuid4().hex,
        tenant_id=tenant_id,
        realm_id=None,
        state=ConnectionState.PENDING,
        contacts=contacts,
        created_at=now,
        expected_realm_id=expected_realm_id,
        expected_email=expected_email,
        display_name=display_name,
        locale=locale,
    )
    created = _create(deps, connection)
    return Registered(created, deps.signer.link_for(created, now))


def import_connection(
    deps: ApiDeps,
    now: datetime,
    *,
    tenant_id: str,
    realm_id: str,
    refresh_token: str,
    contacts: tuple[str, ...],
    connection_id: str | None = None,
    display_name: str | None = None,
    locale: str | None = None,
) -> Connection:
    """Adopt a connection the product already has. ``PENDING`` until the first check refreshes the token
    (its times are unknown) and probes CompanyInfo; that check is queued at once."""
    new_id = connection_id or uuid.uuid4().hex
    pair = TokenPair(
        access_token="",
        refresh_token=refresh_token,
        access_expires_at=now,
        refresh_expires_at=now + IMPORTED_REFRESH_WINDOW,
    )
    sealed = deps.check.vault.seal(pair, connection_id=new_id, realm_id=realm_id)
    connection = Connection(
        connection_id=new_id,
        tenant_id=tenant_id,
        realm_id=realm_id,
        state=ConnectionState.PENDING,
        contacts=contacts,
        sealed_tokens=sealed,
        tokens=TokenTimes(),
        created_at=now,
        display_name=display_name,
        locale=locale,
    )
    created = _create(deps, connection)
    deps.check.queue.send([CheckRequest(connection_id=new_id, reason="on_demand")])
    return created


def _create(deps: ApiDeps, connection: Connection) -> Connection:
    try:
        return deps.store.create(connection)
    except ConcurrentUpdate:
        raise AlreadyExists(f"A connection with id {connection.connection_id} already exists.") from None


def set_hold(connection_id: str, on_hold: bool, deps: ApiDeps, now: datetime) -> Connection:
    """Ops' per-connection hold: the escalator sends nothing and disconnects nothing while it is set."""

    def change(connection: Connection) -> Transition:
        if connection.on_hold == on_hold:
            return Transition(connection)
        kind = EventKind.HOLD_SET if on_hold else EventKind.HOLD_RELEASED
        return Transition(replace(connection, on_hold=on_hold), events=(ConnectionEvent(kind, now),))

    owner = f"api:{uuid.uuid4().hex}"

    def take() -> Connection:
        return acquire_lease_waiting(
            deps.check, connection_id, owner, now, sleep=deps.sleep, monotonic=deps.monotonic
        )

    return change_under_lease(deps.check, connection_id, owner, now, change, take=take)


def check_now(connection_id: str, deps: ApiDeps, now: datetime) -> CheckResult:
    deps.store.get(connection_id)  # ConnectionNotFound for an unknown id (the check itself would skip)
    return check_connection(CheckRequest(connection_id=connection_id, reason="on_demand"), deps.check, now)


@dataclass(frozen=True)
class ProblemReport:
    classification: Classification | None
    check: CheckResult


def report_problem(
    connection_id: str,
    status: int,
    body: str,
    content_type: str | None,
    deps: ApiDeps,
    now: datetime,
) -> ProblemReport:
    """The product saw an Intuit error while syncing. It is classified with the worker's rules, but only an
    immediate check of our own decides anything: a report is never trusted blindly."""
    deps.store.get(connection_id)
    failure = parse_failure(status, content_type, body.encode("utf-8"), intuit_tid=None, endpoint="api")
    classification = classify(failure) if failure is not None else None
    reported = reported_evidence(classification)
    result = check_connection(
        CheckRequest(connection_id=connection_id, reason="problem_report", reported_issue=reported),
        deps.check,
        now,
    )
    return ProblemReport(classification, result)
