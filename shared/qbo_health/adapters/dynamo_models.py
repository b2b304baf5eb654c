"""PynamoDB models: the stored shape of each table. Only adapters import this module."""

from __future__ import annotations

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
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


class ConnectionModel(Model):
    class Meta:
        table_name = "qbo-health-connections"

    connection_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    realm_id = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    check_slot = NumberAttribute(null=True)
    version = NumberAttribute(default=0)
    contacts = ListAttribute(of=UnicodeAttribute, null=True)
    authorized_user_id = UnicodeAttribute(null=True)
    authorized_email = UnicodeAttribute(null=True)
    # Confirmed issue; `open_issue` and `issue_deadline` key the sparse index.
    open_issue = UnicodeAttribute(null=True)
    issue_type = UnicodeAttribute(null=True)
    issue_episode = UnicodeAttribute(null=True)
    issue_first_seen_at = UTCDateTimeAttribute(null=True)
    issue_opened_at = UTCDateTimeAttribute(null=True)
    issue_deadline = UnicodeAttribute(null=True)
    # "STAGE@iso-time" for each escalation notice of the episode (the claim in history is authoritative).
    issue_notices = ListAttribute(of=UnicodeAttribute, null=True)
    # "start-end" epoch seconds of each span Intuit did not answer the connection's checks ("start-" while
    # it lasts): escalation stood still meanwhile.
    issue_pauses = ListAttribute(of=UnicodeAttribute, null=True)
    # Set when the episode above healed and waits out the damping window (``Connection.recovering``); it
    # stays in the open-issues index so the hourly escalator sends "restored" and closes it in time.
    issue_healed_at = UTCDateTimeAttribute(null=True)
    # Suspected issue awaiting its confirming re-check.
    suspect_type = UnicodeAttribute(null=True)
    suspect_first_seen_at = UTCDateTimeAttribute(null=True)
    suspect_intuit_tid = UnicodeAttribute(null=True)
    # Token expiry times (values live only in the sealed blob).
    access_expires_at = UTCDateTimeAttribute(null=True)
    refresh_expires_at = UTCDateTimeAttribute(null=True)
    hard_expires_at = UTCDateTimeAttribute(null=True)
    refreshed_at = UTCDateTimeAttribute(null=True)
    rotated_at = UTCDateTimeAttribute(null=True)
    token_ciphertext = BinaryAttribute(null=True, legacy_encoding=False)
    token_data_key = BinaryAttribute(null=True, legacy_encoding=False)
    token_key_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    last_check_at = UTCDateTimeAttribute(null=True)
    last_success_at = UTCDateTimeAttribute(null=True)
    transient_failures = NumberAttribute(default=0)
    on_hold = BooleanAttribute(default=False)
    reauth_due_warned_at = UTCDateTimeAttribute(null=True)
    # CompanyInfo's SubscriptionStatus at the latest successful probe (a short enum value).
    subscription_status = UnicodeAttribute(null=True)
    # QuickBooks' CompanyName as last read (customer-facing text: escaped wherever shown). A short stored
    # name: every byte counts towards the 1 KB that makes a write cost one unit.
    company_name = UnicodeAttribute(null=True, attr_name="company")
    # Per-tenant overrides of the product's name and the notices' language (absent: the configured ones).
    display_name = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    disconnect_reason = UnicodeAttribute(null=True)
    disconnected_at = UTCDateTimeAttribute(null=True)
    # "KIND|episode|issue type" of a notice still to send (``Connection.pending_notice``).
    pending_notice = UnicodeAttribute(null=True)
    # Owner-checked lease: one worker (or API call) at a time may refresh.
    lease_owner = UnicodeAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)
    # Set by an API caller waiting on the lease holder for an access token; removed with the lease.
    access_wanted = BooleanAttribute(null=True)
    # Grants stored so far (links carry it: single use); the first connect's optional bindings.
    grant_generation = NumberAttribute(null=True)
    expected_realm_id = UnicodeAttribute(null=True)
    expected_email = UnicodeAttribute(null=True)
    # Evidence for the probe budget, epoch seconds under short names (the item stays under 1 KB): when the
    # connection was last restored or verified, and the product's latest reported successful and failed call.
    settled_epoch = NumberAttribute(null=True, attr_name="st")
    activity_ok_epoch = NumberAttribute(null=True, attr_name="ao")
    activity_failed_epoch = NumberAttribute(null=True, attr_name="af")
    activity_day = NumberAttribute(null=True, attr_name="ad")  # UTC day of the last activity write

    by_realm = RealmIndex()
    open_issues = OpenIssueIndex()
    check_slots = CheckSlotIndex()


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
