"""The connections table: stored items become domain objects here and nowhere else."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pynamodb.constants import NONE, UPDATED_OLD
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from qbo_health.adapters.dynamo_models import (
    LEGACY_NAMES,
    LEGACY_PROFILE_NAMES,
    OPEN_ISSUE_MARKER,
    PROFILE_FIELDS,
    PROFILE_KEY_SUFFIX,
    ConnectionModel,
    ProfileModel,
)
from qbo_health.domain.activity import ActivityWrite, StoredActivity
from qbo_health.domain.model import (
    Authorizer,
    Connection,
    ConnectionState,
    DisconnectReason,
    IssueType,
    OpenIssue,
    PauseWindow,
    PendingNotice,
    SealedTokens,
    SubscriptionStatus,
    SuspectedIssue,
    TokenTimes,
)
from qbo_health.domain.probe_budget import Evidence
from qbo_health.domain.schedule import slot_of
from qbo_health.errors import AccessWanted, ConcurrentUpdate, ConnectionNotFound, LeaseHeld

_RELEASE: list[Action] = [
    ConnectionModel.lease_owner.remove(),
    ConnectionModel.lease_expires_at.remove(),
    ConnectionModel.access_wanted.remove(),
]


class SlotMember(NamedTuple):
    connection_id: str
    state: str
    issue_type: str | None


def _condition_failed(error: Exception) -> bool:
    cause = getattr(error, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"


class ConnectionStore:
    def get(self, connection_id: str) -> Connection:
        try:
            item = ConnectionModel.get(connection_id, consistent_read=True)
        except DoesNotExist as error:
            raise ConnectionNotFound(connection_id) from error
        return to_domain(item, _read_profile(connection_id), profile_read=True)

    def complete(self, connection: Connection) -> Connection:
        """The connection with its profile (contacts, names, language, bindings): one read if not loaded."""
        if connection.profile_loaded:
            return connection
        profile = _read_profile(connection.connection_id)
        fields = {name: getattr(profile, name) if profile else None for name in PROFILE_FIELDS}
        return replace(connection, **_profile_domain(fields), profile_loaded=True)

    def create(self, connection: Connection) -> Connection:
        """The connection item and its profile item, together or not at all."""
        attributes = _attributes(connection)
        if connection.company_name:
            attributes["company_digest"] = _digest(connection.company_name)
        item = ConnectionModel(connection.connection_id, **attributes)
        profile = _profile_attributes(connection)
        absent = ConnectionModel.connection_id.does_not_exist()
        try:
            if not any(value is not None for value in profile.values()):
                item.save(condition=absent)
                return connection
            with TransactWrite(connection=ConnectionModel._get_connection().connection) as transaction:
                transaction.save(item, condition=absent)
                transaction.save(ProfileModel(connection.connection_id + PROFILE_KEY_SUFFIX, **profile))
        except (PutError, TransactWriteError) as error:
            if _condition_failed(error) or _first_cancelled(error):
                raise ConcurrentUpdate(f"connection {connection.connection_id} already exists") from error
            raise
        return connection

    def acquire_lease(self, connection_id: str, owner: str, now: datetime, lease_seconds: int) -> Connection:
        """Take the lease in one conditional write; the updated item comes back, so no read is needed."""
        item = ConnectionModel(connection_id)
        now_epoch = int(now.timestamp())
        condition = ConnectionModel.connection_id.exists() & (
            ConnectionModel.lease_owner.does_not_exist()
            | (ConnectionModel.lease_expires_at < now_epoch)
            | (ConnectionModel.lease_owner == owner)
        )
        try:
            item.update(
                actions=[
                    ConnectionModel.lease_owner.set(owner),
                    ConnectionModel.lease_expires_at.set(now_epoch + lease_seconds),
                ],
                condition=condition,
            )
        except UpdateError as error:
            if not _condition_failed(error):
                raise
            self.get(connection_id)  # raises ConnectionNotFound when that is why
            raise LeaseHeld(connection_id) from error
        if item.legacy_fields():
            _rewrite_legacy(item, owner)
        return to_domain(item)  # without the profile: a check needs it only to send a notice

    def release_lease(self, connection_id: str, owner: str) -> None:
        try:
            _update_quietly(connection_id, _RELEASE, ConnectionModel.lease_owner == owner)
        except UpdateError as error:
            if not _condition_failed(error):
                raise

    def request_access(self, connection_id: str, now: datetime) -> bool:
        """Ask the current lease holder to leave its fresh access token behind when it releases.

        Only while a lease is held: a flag set after the release would wait for nobody."""
        try:
            _update_quietly(
                connection_id,
                [ConnectionModel.access_wanted.set(True)],
                ConnectionModel.lease_expires_at >= int(now.timestamp()),
            )
        except UpdateError as error:
            if not _condition_failed(error):
                raise
            return False
        return True

    def save(
        self,
        connection: Connection,
        *,
        changed_from: Connection | None = None,
        lease_owner: str | None = None,
        release_lease: bool = False,
        unless_access_wanted: bool = False,
    ) -> Connection:
        """Write ``connection`` in one conditional write: every field, or only those that differ from
        ``changed_from`` (the version it was read as; smaller writes are cheaper to send and to apply).

        The write succeeds only if the stored version is still ``connection.version`` (and, with
        ``lease_owner``, only while that owner holds the lease). Returns the connection at its new version.
        With ``unless_access_wanted`` it raises ``AccessWanted`` instead while an API caller waits for a token.
        """
        condition = ConnectionModel.version == connection.version
        if lease_owner is not None:
            condition &= ConnectionModel.lease_owner == lease_owner
        if unless_access_wanted:
            condition &= ConnectionModel.access_wanted.does_not_exist()
        actions = _set_actions(connection, changed_from, version=connection.version + 1)
        profile_actions, cleared, company = _profile_actions(connection, changed_from)
        # A cleared field must not come back from the item's first stored shape.
        actions += [getattr(ConnectionModel, LEGACY_PROFILE_NAMES[name]).remove() for name in cleared]
        if company is not None:
            actions.append(ConnectionModel.company_digest.set(_digest(company)))
        elif "company_name" in cleared:
            actions.append(ConnectionModel.company_digest.remove())
        if release_lease:  # (with unless_access_wanted the flag is known absent: nothing to remove)
            actions += _RELEASE[:2] if unless_access_wanted else _RELEASE
        try:
            old = _update_quietly(
                connection.connection_id, actions, condition, return_values=UPDATED_OLD if company else NONE
            )
        except UpdateError as error:
            if not _condition_failed(error):
                raise
            if unless_access_wanted and self._access_wanted_only(connection, lease_owner):
                raise AccessWanted(connection.connection_id) from error
            raise ConcurrentUpdate(f"connection {connection.connection_id} changed underneath") from error
        if company is not None and _stored_digest(old) != _digest(company):  # renamed (or never stored)
            profile_actions.append(ProfileModel.company_name.set(company))
        if profile_actions:
            _write_profile(connection.connection_id, profile_actions, forget_company=company is not None)
        wanted = connection.access_wanted and not release_lease
        return replace(connection, version=connection.version + 1, access_wanted=wanted)

    def _access_wanted_only(self, connection: Connection, lease_owner: str | None) -> bool:
        """Whether the access flag alone refused a write (a rare path, so one consistent read is fine)."""
        item = ConnectionModel.get(connection.connection_id, consistent_read=True)
        owner_ok = lease_owner is None or item.lease_owner == lease_owner
        return bool(item.access_wanted) and int(item.version or 0) == connection.version and owner_ok

    def scan_segment(self, segment: int, total_segments: int) -> Iterator[Connection]:
        # Profile items have no state: the filter skips them.
        scan = ConnectionModel.scan(
            segment=segment, total_segments=total_segments, filter_condition=ConnectionModel.state.exists()
        )
        for item in scan:
            yield to_domain(item)

    def slot_members(self, slot: int) -> Iterator[SlotMember]:
        """The checkable connections due in ``slot`` (id, state, issue), from the sparse slot index."""
        for item in ConnectionModel.check_slots.query(slot):
            yield SlotMember(item.connection_id, item.state, item.issue_type)

    def evidence(self, connection_ids: Sequence[str]) -> list[Evidence]:
        """What the probe budget needs of each connection: a few attributes, read in batches of 100
        (eventually consistent, half a read unit each: the scheduler's hourly share of the fleet)."""
        if not connection_ids:
            return []
        names = [attribute.attr_name for attribute in _EVIDENCE_ATTRIBUTES] + _EVIDENCE_LEGACY
        items = ConnectionModel.batch_get(connection_ids, attributes_to_get=names)
        return [_evidence(item) for item in items]

    def stored_activity(self, connection_ids: Sequence[str]) -> dict[str, StoredActivity | None]:
        """The product's earlier activity reports of each known connection (None: disconnected)."""
        if not connection_ids:
            return {}
        names = [attribute.attr_name for attribute in _ACTIVITY_ATTRIBUTES]
        found: dict[str, StoredActivity | None] = {}
        for item in ConnectionModel.batch_get(connection_ids, attributes_to_get=names):
            if item.state == ConnectionState.DISCONNECTED.value:
                found[item.connection_id] = None
                continue
            found[item.connection_id] = StoredActivity(
                ok_at=_from_epoch(item.activity_ok_epoch),
                failed_at=_from_epoch(item.activity_failed_epoch),
                written_day=int(item.activity_day) if item.activity_day is not None else None,
            )
        return found

    def record_activity(self, writes: Sequence[ActivityWrite]) -> int:
        """One conditional write per connection: only an existing one, only once a UTC day (a report that
        raced another this day loses quietly). The connection's version is left alone: a check holding the
        lease saves over it unhindered, and never writes these attributes."""
        with ThreadPoolExecutor(max_workers=ACTIVITY_WRITERS) as pool:
            return sum(pool.map(_write_activity, writes))

    def ids_for_realm(self, realm_id: str) -> list[str]:
        return [item.connection_id for item in ConnectionModel.by_realm.query(realm_id)]

    def open_issues(self) -> Iterator[Connection]:
        for item in ConnectionModel.open_issues.query(OPEN_ISSUE_MARKER):
            yield to_domain(item)


_EVIDENCE_ATTRIBUTES = (
    ConnectionModel.connection_id,
    ConnectionModel.state,
    ConnectionModel.issue_type,
    ConnectionModel.suspect_type,
    ConnectionModel.created_at,
    ConnectionModel.last_success_at,
    ConnectionModel.subscription_status,
    ConnectionModel.hard_expires_at,
    ConnectionModel.settled_epoch,
    ConnectionModel.activity_ok_epoch,
    ConnectionModel.activity_failed_epoch,
)


# The same fields under their first names, for items not yet rewritten.
_EVIDENCE_LEGACY = [
    getattr(ConnectionModel, LEGACY_NAMES[name]).attr_name
    for name in ("suspect_type", "created_at", "last_success_at", "subscription_status", "hard_expires_at")
]


def _evidence(item: ConnectionModel) -> Evidence:
    item.adopt_legacy()
    return Evidence(
        connection_id=item.connection_id,
        state=ConnectionState(item.state),
        has_issue=bool(item.issue_type),
        has_suspect=bool(item.suspect_type),
        created_at=item.created_at,
        last_success_at=item.last_success_at,
        activity_ok_at=_from_epoch(item.activity_ok_epoch),
        activity_failed_at=_from_epoch(item.activity_failed_epoch),
        settled_at=_from_epoch(item.settled_epoch),
        subscription_status=_subscription_status(item.subscription_status),
        hard_expires_at=item.hard_expires_at,
    )


_ACTIVITY_ATTRIBUTES = (
    ConnectionModel.connection_id,
    ConnectionModel.state,
    ConnectionModel.activity_ok_epoch,
    ConnectionModel.activity_failed_epoch,
    ConnectionModel.activity_day,
)
# Parallel writes: a report of thousands of connections stays well inside the API's 29 seconds.
ACTIVITY_WRITERS = 8


def _write_activity(write: ActivityWrite) -> bool:
    actions: list[Action] = [ConnectionModel.activity_day.set(write.day)]
    if write.ok_at is not None:
        actions.append(ConnectionModel.activity_ok_epoch.set(int(write.ok_at.timestamp())))
    if write.failed_at is not None:
        actions.append(ConnectionModel.activity_failed_epoch.set(int(write.failed_at.timestamp())))
    condition = ConnectionModel.connection_id.exists() & (
        ConnectionModel.activity_day.does_not_exist() | (ConnectionModel.activity_day < write.day)
    )
    try:
        _update_quietly(write.connection_id, actions, condition)
    except UpdateError as error:
        if _condition_failed(error):
            return False
        raise
    return True


def _rewrite_legacy(item: ConnectionModel, owner: str) -> None:
    """Rewrite an item of the first stored shape (long names, ISO times) in the current one, once, by the
    check that leased it: the same content (no new version), a smaller item for every later write."""
    legacy = item.legacy_fields()
    item.adopt_legacy()
    actions: list[Action] = [ConnectionModel.old_token_key_id.remove()]
    cold = {
        name: getattr(item, LEGACY_PROFILE_NAMES[name]) for name in legacy if name in LEGACY_PROFILE_NAMES
    }
    if cold:  # the profile first: until the old attributes go, the profile's values win anyway
        profile = _read_profile(item.connection_id)
        moves = [
            getattr(ProfileModel, name).set(value)
            for name, value in cold.items()
            if profile is None or getattr(profile, name) is None
        ]
        if moves:
            _write_profile(item.connection_id, moves, forget_company=False)
        actions += [getattr(ConnectionModel, LEGACY_PROFILE_NAMES[name]).remove() for name in cold]
        if cold.get("company_name"):
            actions.append(ConnectionModel.company_digest.set(_digest(cold["company_name"])))
    for name in legacy:
        if name not in LEGACY_NAMES:
            continue
        value = getattr(item, name)
        if name == "issue_notices":
            value = [_notice_text(*_notice(str(entry))) for entry in value]
        actions += [
            getattr(ConnectionModel, name).set(value),
            getattr(ConnectionModel, LEGACY_NAMES[name]).remove(),
        ]
    try:
        _update_quietly(item.connection_id, actions, ConnectionModel.lease_owner == owner)
    except UpdateError as error:  # the lease was lost meanwhile: the next check rewrites it
        if not _condition_failed(error):
            raise


def _update_quietly(
    connection_id: str, actions: list[Action], condition: Condition, *, return_values: str = NONE
) -> dict[str, Any]:
    """UpdateItem asking for nothing back (or only the old values of what it set). ``Model.update`` always
    asks for the whole item (ALL_NEW), which DynamoDB then serializes and we parse on every write; only the
    lease acquisition needs it."""
    response = ConnectionModel._get_connection().update_item(
        connection_id, actions=actions, condition=condition, return_values=return_values
    )
    return dict(response or {})


def _first_cancelled(error: Exception) -> bool:
    reasons = getattr(error, "cancellation_reasons", None) or []
    return bool(reasons) and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed"


# ------------------------------------------------------------------ the profile item


def _read_profile(connection_id: str) -> ProfileModel | None:
    try:
        return ProfileModel.get(connection_id + PROFILE_KEY_SUFFIX, consistent_read=True)
    except DoesNotExist:
        return None


def _profile_attributes(connection: Connection) -> dict[str, Any]:
    return {
        "contacts": list(connection.contacts) or None,
        "company_name": connection.company_name,
        "display_name": connection.display_name,
        "locale": connection.locale,
        "expected_realm_id": connection.expected_realm_id,
        "expected_email": connection.expected_email,
    }


def _profile_domain(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "contacts": tuple(str(contact) for contact in fields.get("contacts") or ())}


def _profile_actions(
    connection: Connection, before: Connection | None
) -> tuple[list[Action], list[str], str | None]:
    """The profile's updates for the fields that differ from ``before``, the fields cleared, and the company
    name to store if the stored one differs. Of a connection read without its profile only what it sets is
    written: its empty fields are unknown, not cleared."""
    previous = _profile_attributes(before) if before is not None else {}
    actions: list[Action] = []
    cleared: list[str] = []
    company = None
    for name, value in _profile_attributes(connection).items():
        if before is not None and previous.get(name) == value:
            continue
        if name == "company_name" and value is not None:
            company = value  # written only if the stored digest says it changed
        elif value is not None:
            actions.append(getattr(ProfileModel, name).set(value))
        elif connection.profile_loaded:
            actions.append(getattr(ProfileModel, name).remove())
            cleared.append(name)
    return actions, cleared, company


def _write_profile(connection_id: str, actions: list[Action], *, forget_company: bool) -> None:
    try:
        ProfileModel._get_connection().update_item(
            connection_id + PROFILE_KEY_SUFFIX, actions=actions, return_values=NONE
        )
    except Exception:
        if forget_company:  # the next check that reads the company's name writes it again
            _update_quietly(
                connection_id,
                [ConnectionModel.company_digest.remove()],
                ConnectionModel.connection_id.exists(),
            )
        raise


def _digest(company_name: str) -> bytes:
    return hashlib.sha256(company_name.encode()).digest()[:4]


def _stored_digest(response: dict[str, Any]) -> bytes | None:
    value = response.get("Attributes", {}).get(ConnectionModel.company_digest.attr_name) or {}
    raw = value.get("B")
    if isinstance(raw, str):  # botocore hands binary back as bytes; PynamoDB's connection may not decode
        import base64

        return base64.b64decode(raw)
    return raw if isinstance(raw, bytes) else None


def _attributes(connection: Connection) -> dict[str, Any]:
    """Domain -> stored attribute values (None means absent)."""
    pending = connection.pending_notice
    # An open issue, or a healed episode in its damping window (the same attributes, marked healed).
    issue, suspect, tokens, sealed = (
        connection.issue or connection.recovering,
        connection.suspect,
        connection.tokens,
        connection.sealed_tokens,
    )
    return {
        "tenant_id": connection.tenant_id,
        "realm_id": connection.realm_id,
        "state": connection.state.value,
        "check_slot": slot_of(connection),
        "version": connection.version,
        "authorized_user_id": connection.authorized_by.user_id if connection.authorized_by else None,
        "authorized_email": connection.authorized_by.email if connection.authorized_by else None,
        # A pending notice keeps a disconnected connection in the index (keyed by when it disconnected).
        "open_issue": OPEN_ISSUE_MARKER if issue or pending else None,
        "issue_type": issue.type.value if issue else None,
        "issue_episode": issue.episode_id if issue else None,
        "issue_first_seen_at": issue.first_seen_at if issue else None,
        "issue_opened_at": issue.opened_at if issue else None,
        "issue_deadline": _iso(issue.deadline) if issue else _pending_key(connection),
        "issue_notices": [_notice_text(stage, at) for stage, at in issue.notices] or None if issue else None,
        "issue_pauses": [_pause_text(pause) for pause in issue.pauses] or None if issue else None,
        "issue_healed_at": issue.healed_at if issue else None,
        "suspect_type": suspect.type.value if suspect else None,
        "suspect_first_seen_at": suspect.first_seen_at if suspect else None,
        "suspect_intuit_tid": suspect.intuit_tid if suspect else None,
        "access_expires_at": tokens.access_expires_at,
        "refresh_expires_at": tokens.refresh_expires_at,
        "hard_expires_at": tokens.hard_expires_at,
        "refreshed_at": tokens.refreshed_at,
        "rotated_at": tokens.rotated_at,
        "token_ciphertext": sealed.ciphertext if sealed else None,
        "token_data_key": sealed.encrypted_data_key if sealed else None,
        "created_at": connection.created_at,
        "last_check_at": connection.last_check_at,
        "last_success_at": connection.last_success_at,
        "transient_failures": connection.transient_failures,
        "on_hold": connection.on_hold,
        "reauth_due_warned_at": connection.reauth_due_warned_at,
        "subscription_status": connection.subscription_status.value
        if connection.subscription_status
        else None,
        "disconnect_reason": connection.disconnect_reason.value if connection.disconnect_reason else None,
        "disconnected_at": connection.disconnected_at,
        "grant_generation": connection.grant_generation or None,
        "pending_notice": _pending_text(pending),
        "settled_epoch": _epoch(connection.settled_at),
    }


def _set_actions(connection: Connection, before: Connection | None, *, version: int) -> list[Action]:
    actions: list[Action] = []
    previous = _attributes(before) if before is not None else {}
    for name, value in _attributes(connection).items():
        attribute = getattr(ConnectionModel, name)
        if before is not None and name != "version" and previous.get(name) == value:
            continue
        if name == "version":
            actions.append(attribute.set(version))
        elif value is None:
            actions.append(attribute.remove())
            if name in LEGACY_NAMES:  # an item of the first shape may hold it under its old name
                actions.append(getattr(ConnectionModel, LEGACY_NAMES[name]).remove())
        else:
            actions.append(attribute.set(value))
    return actions


def _pending_key(connection: Connection) -> str | None:
    if connection.pending_notice is None:
        return None
    return _iso(connection.disconnected_at) if connection.disconnected_at else "0"


def _pending_text(pending: PendingNotice | None) -> str | None:
    if pending is None:
        return None
    return f"{pending.kind}|{pending.episode_id}|{pending.issue.value if pending.issue else ''}"


def _pending_of(text: str | None) -> PendingNotice | None:
    if not text:
        return None
    kind, episode_id, issue = [*text.split("|"), "", ""][:3]
    return PendingNotice(kind, episode_id, IssueType(issue) if issue else None)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _notice_text(stage: str, at: datetime) -> str:
    return f"{stage}@{int(at.timestamp())}"


def _notice(entry: str) -> tuple[str, datetime]:
    """``STAGE@epoch``, or ``STAGE@iso-time`` as the first stored shape wrote it."""
    stage, _, at = entry.partition("@")
    if "T" in at:
        return stage, datetime.fromisoformat(at)
    return stage, datetime.fromtimestamp(int(at), UTC)


def _pause_text(pause: PauseWindow) -> str:
    end = "" if pause.end is None else str(int(pause.end.timestamp()))
    return f"{int(pause.start.timestamp())}-{end}"


def _pause(entry: str) -> PauseWindow:
    start, _, end = entry.partition("-")
    return PauseWindow(
        datetime.fromtimestamp(int(start), UTC), datetime.fromtimestamp(int(end), UTC) if end else None
    )


def _subscription_status(value: str | None) -> SubscriptionStatus | None:
    if not value:
        return None
    try:
        return SubscriptionStatus(value)
    except ValueError:
        return SubscriptionStatus.UNKNOWN


def to_domain(
    item: ConnectionModel, profile: ProfileModel | None = None, *, profile_read: bool = False
) -> Connection:
    """The connection of a stored item; its profile fields from ``profile`` (read: ``profile_read``), else
    from the item's first stored shape where it still holds them, else not loaded."""
    item.adopt_legacy()
    cold: dict[str, Any] = {}
    for name, old in LEGACY_PROFILE_NAMES.items():
        value = getattr(profile, name) if profile is not None else None
        cold[name] = value if value is not None else getattr(item, old)
    loaded = profile_read or any(value is not None for value in cold.values())
    issue = None
    opened_at = item.issue_opened_at
    if item.issue_type and item.issue_episode and item.issue_deadline and opened_at:
        issue = OpenIssue(
            type=IssueType(item.issue_type),
            episode_id=item.issue_episode,
            first_seen_at=item.issue_first_seen_at or opened_at,
            opened_at=opened_at,
            deadline=datetime.fromisoformat(item.issue_deadline),
            notices=tuple(_notice(str(entry)) for entry in item.issue_notices or ()),
            pauses=tuple(_pause(str(entry)) for entry in item.issue_pauses or ()),
            healed_at=item.issue_healed_at,
        )
    suspect = None
    if item.suspect_type and item.suspect_first_seen_at:
        suspect = SuspectedIssue(
            type=IssueType(item.suspect_type),
            first_seen_at=item.suspect_first_seen_at,
            intuit_tid=item.suspect_intuit_tid,
        )
    sealed = None
    if item.token_ciphertext and item.token_data_key:
        sealed = SealedTokens(
            ciphertext=item.token_ciphertext,
            encrypted_data_key=item.token_data_key,
            key_id="",  # not stored: the data key's ciphertext names its KMS key
        )
    return Connection(
        connection_id=item.connection_id,
        tenant_id=item.tenant_id or "",
        realm_id=item.realm_id,
        state=ConnectionState(item.state),
        version=int(item.version or 0),
        authorized_by=Authorizer(item.authorized_user_id, item.authorized_email)
        if item.authorized_user_id
        else None,
        issue=issue if issue is None or issue.healed_at is None else None,
        recovering=issue if issue is not None and issue.healed_at is not None else None,
        suspect=suspect,
        tokens=TokenTimes(
            access_expires_at=item.access_expires_at,
            refresh_expires_at=item.refresh_expires_at,
            hard_expires_at=item.hard_expires_at,
            refreshed_at=item.refreshed_at,
            rotated_at=item.rotated_at,
        ),
        sealed_tokens=sealed,
        created_at=item.created_at,
        last_check_at=item.last_check_at,
        last_success_at=item.last_success_at,
        transient_failures=int(item.transient_failures or 0),
        on_hold=bool(item.on_hold),
        reauth_due_warned_at=item.reauth_due_warned_at,
        subscription_status=_subscription_status(item.subscription_status),
        disconnect_reason=DisconnectReason(item.disconnect_reason) if item.disconnect_reason else None,
        disconnected_at=item.disconnected_at,
        pending_notice=_pending_of(item.pending_notice),
        access_wanted=bool(item.access_wanted),
        grant_generation=int(item.grant_generation or 0),
        settled_at=_from_epoch(item.settled_epoch),
        activity_ok_at=_from_epoch(item.activity_ok_epoch),
        activity_failed_at=_from_epoch(item.activity_failed_epoch),
        **_profile_domain(cold),
        profile_loaded=loaded,
    )


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)
