"""The classification table: which Intuit answers open an issue, and which never do."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbo_health.domain.classification import (
    REASONS,
    Classification,
    FailureKind,
    classify,
    revoke_already_done,
)
from qbo_health.domain.model import IntuitFailure, IssueType

ISSUE = FailureKind.ISSUE
TRANSIENT = FailureKind.TRANSIENT
RETRY = FailureKind.REFRESH_AND_RETRY
MISCONFIGURED = FailureKind.MISCONFIGURED
METERED = FailureKind.METERED


def api(status, *codes):
    return IntuitFailure(status=status, codes=tuple(codes), endpoint="api")


def token(status, oauth_error=None, *codes):
    return IntuitFailure(status=status, codes=tuple(codes), oauth_error=oauth_error, endpoint="token")


TABLE = [
    # (failure, after_fresh_refresh, kind, issue, reason)
    (token(400, "invalid_grant"), False, ISSUE, IssueType.AUTHORIZATION_EXPIRED, "invalid_grant"),
    (token(400, "invalid_grant"), True, ISSUE, IssueType.AUTHORIZATION_EXPIRED, "invalid_grant"),
    (token(200, "invalid_grant"), False, ISSUE, IssueType.AUTHORIZATION_EXPIRED, "invalid_grant"),
    (api(400, "6190"), False, ISSUE, IssueType.SUBSCRIPTION_LAPSED, "subscription_lapsed"),
    (api(200, "6190"), False, ISSUE, IssueType.SUBSCRIPTION_LAPSED, "subscription_lapsed"),
    (api(403, "3100", "6190"), False, ISSUE, IssueType.SUBSCRIPTION_LAPSED, "subscription_lapsed"),
    (api(403, "6190", "3100"), False, ISSUE, IssueType.SUBSCRIPTION_LAPSED, "subscription_lapsed"),
    (api(401, "3200", "6190"), False, ISSUE, IssueType.SUBSCRIPTION_LAPSED, "subscription_lapsed"),
    (api(403, "3100"), False, ISSUE, IssueType.ADMIN_ACCESS_LOST, "admin_access_lost"),
    (api(403, "3100"), True, ISSUE, IssueType.ADMIN_ACCESS_LOST, "admin_access_lost"),
    (api(401, "120"), False, ISSUE, IssueType.ADMIN_ACCESS_LOST, "admin_access_lost"),
    (api(200, "3100"), False, ISSUE, IssueType.ADMIN_ACCESS_LOST, "admin_access_lost"),
    (api(401, "3200"), False, RETRY, None, "access_token_rejected"),
    (api(401, "100"), False, RETRY, None, "access_token_rejected"),
    (api(401, "3200"), True, ISSUE, IssueType.AUTHORIZATION_EXPIRED, "rejected_after_refresh"),
    (api(401, "100"), True, ISSUE, IssueType.AUTHORIZATION_EXPIRED, "rejected_after_refresh"),
    (api(401), False, RETRY, None, "access_token_rejected"),  # bare 401: refreshing is cheap and safe
    (api(401), True, TRANSIENT, None, "unexpected"),  # ...but never an issue on its own
    (
        IntuitFailure(status=401, oauth_error="invalid_token", endpoint="userinfo"),
        False,
        RETRY,
        None,
        "access_token_rejected",
    ),
    (
        IntuitFailure(status=401, oauth_error="invalid_token", endpoint="userinfo"),
        True,
        TRANSIENT,
        None,
        "unexpected",
    ),
    (IntuitFailure(status=401, endpoint="userinfo"), False, RETRY, None, "access_token_rejected"),
    (api(429), False, TRANSIENT, None, "throttled"),
    (api(429, "3001"), False, TRANSIENT, None, "throttled"),
    (api(403, "3001"), False, TRANSIENT, None, "throttled"),
    (api(200, "3001"), False, TRANSIENT, None, "throttled"),
    (token(429), False, TRANSIENT, None, "throttled"),
    (api(500), False, TRANSIENT, None, "server_error"),
    (api(502), False, TRANSIENT, None, "server_error"),
    (api(503, "10000"), False, TRANSIENT, None, "server_error"),
    (token(504), False, TRANSIENT, None, "server_error"),
    (IntuitFailure(status=None, transport="timeout"), False, TRANSIENT, None, "timeout"),
    (IntuitFailure(status=None, transport="timeout", endpoint="token"), True, TRANSIENT, None, "timeout"),
    (IntuitFailure(status=None, transport="connection"), False, TRANSIENT, None, "connection"),
    (IntuitFailure(status=None, transport="dns"), False, TRANSIENT, None, "connection"),
    (
        IntuitFailure(status=None, transport="not_started", endpoint="token"),
        False,
        TRANSIENT,
        None,
        "not_started",
    ),
    # Metering refusal (the wire shape is our assumption: 403, Fault type SERVICE, code 6900): the app's
    # quota, never the customer's issue and never transient.
    (api(403, "6900"), False, METERED, None, "metered_limit_exceeded"),
    (api(403, "6900"), True, METERED, None, "metered_limit_exceeded"),
    (api(429, "6900"), False, METERED, None, "metered_limit_exceeded"),
    (api(403, "6900", "3100"), False, METERED, None, "metered_limit_exceeded"),
    (token(401, "invalid_client"), False, MISCONFIGURED, None, "client_credentials_rejected"),
    (token(400, "invalid_client"), True, MISCONFIGURED, None, "client_credentials_rejected"),
    (token(400, "unauthorized_client"), False, MISCONFIGURED, None, "client_credentials_rejected"),
    (token(400, "Invalid_Client"), False, MISCONFIGURED, None, "client_credentials_rejected"),
    # Unknown answers: transient, never an issue.
    (token(400, "invalid_request"), False, TRANSIENT, None, "unexpected"),
    (token(400, "unsupported_grant_type"), False, TRANSIENT, None, "unexpected"),
    (token(400), False, TRANSIENT, None, "unexpected"),
    (token(401), False, TRANSIENT, None, "unexpected"),
    (api(400, "2010"), False, TRANSIENT, None, "unexpected"),
    (api(400, "6000"), False, TRANSIENT, None, "unexpected"),
    (api(403), False, TRANSIENT, None, "unexpected"),
    (api(404), False, TRANSIENT, None, "unexpected"),
    (api(200), False, TRANSIENT, None, "unexpected"),  # a success body we could not read
    (api(403, "3200"), False, TRANSIENT, None, "unexpected"),  # 3200 only means "refresh" with a 401
    (
        IntuitFailure(status=400, oauth_error="invalid_grant", endpoint="revoke"),
        False,
        TRANSIENT,
        None,
        "unexpected",
    ),
]


@pytest.mark.parametrize(("failure", "after_fresh_refresh", "kind", "issue", "reason"), TABLE)
def test_classification_table(failure, after_fresh_refresh, kind, issue, reason):
    assert classify(failure, after_fresh_refresh=after_fresh_refresh) == Classification(kind, issue, reason)


def test_reasons_are_a_small_fixed_set_of_snake_case_names():
    seen = {classify(row[0], after_fresh_refresh=row[1]).reason for row in TABLE}
    assert seen <= REASONS
    assert seen == REASONS  # the table exercises every reason
    for reason in REASONS:
        assert reason == reason.lower() and " " not in reason and len(reason) <= 32


def test_only_issues_carry_an_issue_type():
    for failure, after, *_ in TABLE:
        result = classify(failure, after_fresh_refresh=after)
        assert (result.issue is not None) == (result.kind is FailureKind.ISSUE)


def test_every_issue_type_is_reachable():
    reached = {classify(row[0], after_fresh_refresh=row[1]).issue for row in TABLE} - {None}
    # A subscription that ended is never a failure: a read-only company reads, and its SubscriptionStatus
    # says so (domain.subscription, tests/unit/test_subscription_status.py).
    assert reached == set(IssueType) - {IssueType.SUBSCRIPTION_ENDED}


def test_classification_is_a_frozen_value():
    result = classify(api(500))
    with pytest.raises(AttributeError):
        result.reason = "other"  # type: ignore[misc]
    assert str(FailureKind.TRANSIENT) == "TRANSIENT"


def test_the_domain_module_is_pure():
    import qbo_health.domain.classification as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    for forbidden in ("boto3", "botocore", "pynamodb", "requests", "import os", "datetime.now"):
        assert forbidden not in source


def test_a_revoke_answered_400_with_an_empty_body_is_already_done():
    empty = IntuitFailure(status=400, endpoint="revoke", empty_body=True)
    assert revoke_already_done(empty)
    assert classify(empty).kind is FailureKind.TRANSIENT  # on its own, never an issue
    # Anything else is a real failure: a body says why, another status or endpoint means something else.
    assert not revoke_already_done(IntuitFailure(status=400, endpoint="revoke"))
    assert not revoke_already_done(
        IntuitFailure(status=400, oauth_error="invalid_request", endpoint="revoke")
    )
    assert not revoke_already_done(IntuitFailure(status=500, endpoint="revoke", empty_body=True))
    assert not revoke_already_done(IntuitFailure(status=400, endpoint="token", empty_body=True))
    assert not revoke_already_done(IntuitFailure(status=None, transport="timeout", endpoint="revoke"))


def test_invalid_grant_never_depends_on_its_description():
    with_text = IntuitFailure(
        status=400, oauth_error="invalid_grant", message="Token invalid", endpoint="token"
    )
    without = IntuitFailure(status=400, oauth_error="invalid_grant", message=None, endpoint="token")
    assert classify(with_text) == classify(without)
    assert classify(without).issue is IssueType.AUTHORIZATION_EXPIRED
