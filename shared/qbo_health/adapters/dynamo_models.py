"""PynamoDB models: the stored shape of each table. Only adapters import this module."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from pynamodb.attributes import (
    Attribute,
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.constants import NUMBER
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from qbo_health.config import StoreSettings

OPEN_ISSUE_MARKER = "OPEN"


class RealmIndex(GlobalSecondaryIndex["ConnectionModel"]):
    class Meta:
        index_name = "by-realm"
        projection = KeysOnlyProjection()

    realm_id = UnicodeAttribute(hash_key=True)


class OpenIssueIndex(GlobalSecondaryIndex["ConnectionModel"]):
    """Sparse: only items carrying ``open_issue`` appear, so reads grow with broken connections."""

    class Meta:
        index_name = "open-issues"
        projection = AllProjection()

    open_issue = UnicodeAttribute(hash_key=True)
    issue_deadline = UnicodeAttribute(range_key=True)


class CheckSlotIndex(GlobalSecondaryIndex["ConnectionModel"]):
    """Sparse: only connections that get checked carry ``check_slot`` (their hour of the day)."""

    class Meta:
        index_name = "check-slots"
        projection = IncludeProjection(["state", "issue_type"])

    check_slot = NumberAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)


class EpochAttribute(Attribute[datetime]):
    """A moment as epoch seconds (a number: 6 bytes for a whole second, where an ISO string takes 32).

    Microseconds are kept exactly as decimal digits; DynamoDB trims trailing zeroes, so they cost nothing
    when absent."""

    attr_type = NUMBER

    def serialize(self, value: datetime) -> str:
        moment = value.astimezone(UTC)
        seconds = calendar.timegm(moment.utctimetuple())
        return f"{seconds}.{moment.microsecond:06d}".rstrip("0").rstrip(".")

    def deserialize(self, value: str) -> datetime:
        seconds, _, fraction = value.partition(".")
        micros = int((fraction + "000000")[:6]) if fraction else 0
        return datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=micros)


class _LegacyConnectionAttributes:
    """The connection item's first stored shape (long names, ISO times), still read: items written before the
    short names load as they are (``LEGACY_NAMES`` maps each field to its old attribute), and a check's lease
    rewrites them in the new shape. ``token_key_id`` is no longer written: the data key's ciphertext names
    its KMS key, so one ARN need not be stored on every item."""

    old_tenant_id = UnicodeAttribute(null=True, attr_name="tenant_id")
    old_contacts = ListAttribute(of=UnicodeAttribute, null=True, attr_name="contacts")
    old_authorized_user_id = UnicodeAttribute(null=True, attr_name="authorized_user_id")
    old_authorized_email = UnicodeAttribute(null=True, attr_name="authorized_email")
    old_issue_episode = UnicodeAttribute(null=True, attr_name="issue_episode")
    old_issue_first_seen_at = UTCDateTimeAttribute(null=True, attr_name="issue_first_seen_at")
    old_issue_opened_at = UTCDateTimeAttribute(null=True, attr_name="issue_opened_at")
    old_issue_notices = ListAttribute(of=UnicodeAttribute, null=True, attr_name="issue_notices")
    old_issue_pauses = ListAttribute(of=UnicodeAttribute, null=True, attr_name="issue_pauses")
    old_issue_healed_at = UTCDateTimeAttribute(null=True, attr_name="issue_healed_at")
    old_suspect_type = UnicodeAttribute(null=True, attr_name="suspect_type")
    old_suspect_first_seen_at = UTCDateTimeAttribute(null=True, attr_name="suspect_first_seen_at")
    old_suspect_intuit_tid = UnicodeAttribute(null=True, attr_name="suspect_intuit_tid")
    old_access_expires_at = UTCDateTimeAttribute(null=True, attr_name="access_expires_at")
    old_refresh_expires_at = UTCDateTimeAttribute(null=True, attr_name="refresh_expires_at")
    old_hard_expires_at = UTCDateTimeAttribute(null=True, attr_name="hard_expires_at")
    old_refreshed_at = UTCDateTimeAttribute(null=True, attr_name="refreshed_at")
    old_rotated_at = UTCDateTimeAttribute(null=True, attr_name="rotated_at")
    old_token_ciphertext = BinaryAttribute(null=True, legacy_encoding=False, attr_name="token_ciphertext")
    old_token_data_key = BinaryAttribute(null=True, legacy_encoding=False, attr_name="token_data_key")
    old_token_key_id = UnicodeAttribute(null=True, attr_name="token_key_id")
    old_created_at = UTCDateTimeAttribute(null=True, attr_name="created_at")
    old_last_check_at = UTCDateTimeAttribute(null=True, attr_name="last_check_at")
    old_last_success_at = UTCDateTimeAttribute(null=True, attr_name="last_success_at")
    old_transient_failures = NumberAttribute(null=True, attr_name="transient_failures")
    old_on_hold = BooleanAttribute(null=True, attr_name="on_hold")
    old_reauth_due_warned_at = UTCDateTimeAttribute(null=True, attr_name="reauth_due_warned_at")
    old_subscription_status = UnicodeAttribute(null=True, attr_name="subscription_status")
    old_company_name = UnicodeAttribute(null=True, attr_name="company")
    old_display_name = UnicodeAttribute(null=True, attr_name="display_name")
    old_locale = UnicodeAttribute(null=True, attr_name="locale")
    old_disconnect_reason = UnicodeAttribute(null=True, attr_name="disconnect_reason")
    old_disconnected_at = UTCDateTimeAttribute(null=True, attr_name="disconnected_at")
    old_pending_notice = UnicodeAttribute(null=True, attr_name="pending_notice")
    old_grant_generation = NumberAttribute(null=True, attr_name="grant_generation")
    old_expected_realm_id = UnicodeAttribute(null=True, attr_name="expected_realm_id")
    old_expected_email = UnicodeAttribute(null=True, attr_name="expected_email")


# The connection's cold fields: in its profile item, read only when needed (never by the daily check).
PROFILE_FIELDS = ("contacts", "company_name", "display_name", "locale", "expected_realm_id", "expected_email")
# Field -> its attribute in the first stored shape (read when the short one is absent, removed when cleared).
LEGACY_NAMES: dict[str, str] = {
    name.removeprefix("old_"): name
    for name in vars(_LegacyConnectionAttributes)
    if name.startswith("old_")
    and name != "old_token_key_id"
    and name.removeprefix("old_") not in PROFILE_FIELDS
}
# Profile field -> its attribute on the connection item in the first stored shape.
LEGACY_PROFILE_NAMES: dict[str, str] = {name: f"old_{name}" for name in PROFILE_FIELDS}
PROFILE_KEY_SUFFIX = "#profile"  # connection ids never hold "#" (CONNECTION_ID_PATTERN)


class ProfileModel(Model):
    """A connection's cold fields, in the connections table under ``<connection id>#profile``: the
    contacts, the company's and the product's names, the language and the first connect's bindings. Read by
    notices, the API and reauthorization; the daily check neither reads nor (unless the company was
    renamed) writes it. The item has no ``state``, so it is in no index and scans skip it."""

    class Meta:
        table_name = "qbo-health-connections"

    connection_id = UnicodeAttribute(hash_key=True)
    contacts = ListAttribute(of=UnicodeAttribute, null=True, attr_name="c")
    company_name = UnicodeAttribute(null=True, attr_name="co")
    display_name = UnicodeAttribute(null=True, attr_name="dn")
    locale = UnicodeAttribute(null=True, attr_name="lo")
    expected_realm_id = UnicodeAttribute(null=True, attr_name="er")
    expected_email = UnicodeAttribute(null=True, attr_name="ee")


class ConnectionModel(_LegacyConnectionAttributes, Model):
    """One connection. Every byte counts: an item under 1 KB makes each write cost one write unit, so stored
    names are short (the key and index attributes keep theirs: renaming them would rebuild the table) and
    times are epoch numbers. See docs/architecture.md for the item's size."""

    class Meta:
        table_name = "qbo-health-connections"

    connection_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute(null=True, attr_name="t")
    realm_id = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    check_slot = NumberAttribute(null=True)
    version = NumberAttribute(default=0)
    authorized_user_id = UnicodeAttribute(null=True, attr_name="au")
    authorized_email = UnicodeAttribute(null=True, attr_name="ae")
    # Confirmed issue; `open_issue` and `issue_deadline` key the sparse index.
    open_issue = UnicodeAttribute(null=True)
    issue_type = UnicodeAttribute(null=True)
    issue_episode = UnicodeAttribute(null=True, attr_name="ie")
    issue_first_seen_at = EpochAttribute(null=True, attr_name="if")
    issue_opened_at = EpochAttribute(null=True, attr_name="io")
    issue_deadline = UnicodeAttribute(null=True)
    # "STAGE@epoch" for each escalation notice of the episode (the claim in history is authoritative).
    issue_notices = ListAttribute(of=UnicodeAttribute, null=True, attr_name="in")
    # "start-end" epoch seconds of each span Intuit did not answer the connection's checks ("start-" while
    # it lasts): escalation stood still meanwhile.
    issue_pauses = ListAttribute(of=UnicodeAttribute, null=True, attr_name="ip")
    # Set when the episode above healed and waits out the damping window (``Connection.recovering``); it
    # stays in the open-issues index so the hourly escalator sends "restored" and closes it in time.
    issue_healed_at = EpochAttribute(null=True, attr_name="ih")
    # Suspected issue awaiting its confirming re-check.
    suspect_type = UnicodeAttribute(null=True, attr_name="xt")
    suspect_first_seen_at = EpochAttribute(null=True, attr_name="xf")
    suspect_intuit_tid = UnicodeAttribute(null=True, attr_name="xi")
    # Token expiry times (values live only in the sealed blob).
    access_expires_at = EpochAttribute(null=True, attr_name="ta")
    refresh_expires_at = EpochAttribute(null=True, attr_name="tr")
    hard_expires_at = EpochAttribute(null=True, attr_name="th")
    refreshed_at = EpochAttribute(null=True, attr_name="rf")
    rotated_at = EpochAttribute(null=True, attr_name="ro")
    token_ciphertext = BinaryAttribute(null=True, legacy_encoding=False, attr_name="tc")
    token_data_key = BinaryAttribute(null=True, legacy_encoding=False, attr_name="tk")
    created_at = EpochAttribute(null=True, attr_name="cr")
    last_check_at = EpochAttribute(null=True, attr_name="lc")
    last_success_at = EpochAttribute(null=True, attr_name="ls")
    transient_failures = NumberAttribute(null=True, attr_name="tx")
    on_hold = BooleanAttribute(null=True, attr_name="oh")
    reauth_due_warned_at = EpochAttribute(null=True, attr_name="rw")
    # CompanyInfo's SubscriptionStatus at the latest successful probe (a short enum value).
    subscription_status = UnicodeAttribute(null=True, attr_name="ss")
    # The first bytes of the SHA-256 of the company name in the profile: a check that reads the same name
    # again writes nothing more; a renamed company also updates the profile.
    company_digest = BinaryAttribute(null=True, legacy_encoding=False, attr_name="cd")
    disconnect_reason = UnicodeAttribute(null=True, attr_name="dr")
    disconnected_at = EpochAttribute(null=True, attr_name="dt")
    # "KIND|episode|issue type" of a notice still to send (``Connection.pending_notice``).
    pending_notice = UnicodeAttribute(null=True, attr_name="pn")
    # Owner-checked lease: one worker (or API call) at a time may refresh.
    lease_owner = UnicodeAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)
    # Set by an API caller waiting on the lease holder for an access token; removed with the lease.
    access_wanted = BooleanAttribute(null=True)
    # Grants stored so far (links carry it: single use).
    grant_generation = NumberAttribute(null=True, attr_name="gg")
    # Evidence for the probe budget, epoch seconds: when the connection was last restored or verified, and
    # the product's latest reported successful and failed call.
    settled_epoch = NumberAttribute(null=True, attr_name="st")
    activity_ok_epoch = NumberAttribute(null=True, attr_name="ao")
    activity_failed_epoch = NumberAttribute(null=True, attr_name="af")
    activity_day = NumberAttribute(null=True, attr_name="ad")  # UTC day of the last activity write

    by_realm = RealmIndex()
    open_issues = OpenIssueIndex()
    check_slots = CheckSlotIndex()

    def legacy_fields(self) -> list[str]:
        """The fields this item still holds in the first shape (``token_key_id`` included)."""
        olds = [*LEGACY_NAMES.items(), *LEGACY_PROFILE_NAMES.items()]
        names = [name for name, old in olds if getattr(self, old) is not None]
        return names + (["token_key_id"] if self.old_token_key_id is not None else [])

    def adopt_legacy(self) -> None:
        """Fill each absent field from its attribute in the first shape (in memory only)."""
        for name, old in LEGACY_NAMES.items():
            if getattr(self, name) is None and getattr(self, old) is not None:
                setattr(self, name, getattr(self, old))


class HistoryModel(Model):
    """The per-connection audit trail, and the claims that make each notice go out once."""

    class Meta:
        table_name = "qbo-health-history"

    connection_id = UnicodeAttribute(hash_key=True)
    entry = UnicodeAttribute(range_key=True)
    at = UTCDateTimeAttribute()
    kind = UnicodeAttribute()
    detail = UnicodeAttribute(null=True)
    # Notice claims only: CLAIMED while a send is under way, SENT once it went out.
    status = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)


class ControlModel(Model):
    """Run heartbeats and service-wide switches (outage pause)."""

    class Meta:
        table_name = "qbo-health-control"

    key = UnicodeAttribute(hash_key=True)
    at = UTCDateTimeAttribute(null=True)
    until = UTCDateTimeAttribute(null=True)
    detail = UnicodeAttribute(null=True)
    # Per-run tallies, added once per worker batch (not per check) to keep writes per check low.
    scheduled = NumberAttribute(null=True)
    checks = NumberAttribute(null=True)
    transient = NumberAttribute(null=True)
    suspected = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    # The month's metered-call budget (``METER#YYYY-MM``): calls granted, and when Intuit refused one.
    spent = NumberAttribute(null=True)
    refused_at = UTCDateTimeAttribute(null=True)


class OAuthStateModel(Model):
    """One OAuth ``state`` in flight, stored by its SHA-256 only; DynamoDB's TTL removes it (eventually)."""

    class Meta:
        table_name = "qbo-health-oauth-states"

    state_hash = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute()
    redirect_uri = UnicodeAttribute()
    link_issued_at = NumberAttribute(null=True)
    link_generation = NumberAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    expires_at = NumberAttribute()
    consumed_at = UTCDateTimeAttribute(null=True)
    # The grant generation the sign-in stored (set after success): a reload of its callback says connected.
    granted_generation = NumberAttribute(null=True)


_MODELS: tuple[tuple[type[Model], str], ...] = (
    (ConnectionModel, "connections_table"),
    (ProfileModel, "connections_table"),
    (HistoryModel, "history_table"),
    (ControlModel, "control_table"),
    (OAuthStateModel, "oauth_states_table"),
)


def bind_tables(settings: StoreSettings) -> None:
    """Point the models at the configured tables (cold start; the embedded stack after a reset)."""
    for model, field_name in _MODELS:
        table_name = getattr(settings, field_name)
        if model.Meta.table_name != table_name or model.Meta.region != settings.aws_region:
            model.Meta.table_name = table_name
            model.Meta.region = settings.aws_region
            model._connection = None
