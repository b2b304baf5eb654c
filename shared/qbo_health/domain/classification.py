"""What an Intuit failure means for the connection. Pure: no I/O, no clock.

The rules come from ``docs/intuit.md``. The one principle behind them: an answer we do not recognise is
never the customer's problem. Only the specific codes below open an issue; everything else is transient
(retry later) or, when Intuit rejects *our* client credentials, a misconfiguration for the operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from qbo_health.domain.model import IntuitFailure, IssueType


class FailureKind(StrEnum):
    ISSUE = "ISSUE"  # the customer has to act (see ``issue``)
    TRANSIENT = "TRANSIENT"  # try again later; says nothing about the connection's health
    REFRESH_AND_RETRY = "REFRESH_AND_RETRY"  # access token rejected: refresh once, then call again
    MISCONFIGURED = "MISCONFIGURED"  # our app credentials are wrong: page the operators, never the customer
    # Intuit refused a metered call (the app is past its monthly allowance of CorePlus reads): the app's
    # problem, until the next month or a higher tier; it says nothing about the connection.
    METERED = "METERED"


@dataclass(frozen=True)
class Classification:
    kind: FailureKind
    issue: IssueType | None
    reason: str  # short snake_case, one of REASONS (used as a metric dimension)


# Reasons, a small fixed set.
REASON_INVALID_GRANT = "invalid_grant"
REASON_SUBSCRIPTION_LAPSED = "subscription_lapsed"
REASON_ADMIN_ACCESS_LOST = "admin_access_lost"
REASON_ACCESS_TOKEN_REJECTED = "access_token_rejected"  # noqa: S105 - a reason name, not a secret
REASON_REJECTED_AFTER_REFRESH = "rejected_after_refresh"
REASON_THROTTLED = "throttled"
REASON_SERVER_ERROR = "server_error"
REASON_TIMEOUT = "timeout"
REASON_CONNECTION = "connection"
# Not sent: too little of the invocation was left to refresh and store the answer (see refresh_and_persist).
REASON_NOT_STARTED = "not_started"
REASON_CLIENT_CREDENTIALS_REJECTED = "client_credentials_rejected"
REASON_UNEXPECTED = "unexpected"
REASON_METERED = "metered_limit_exceeded"

REASONS: frozenset[str] = frozenset(
    {
        REASON_INVALID_GRANT,
        REASON_SUBSCRIPTION_LAPSED,
        REASON_ADMIN_ACCESS_LOST,
        REASON_ACCESS_TOKEN_REJECTED,
        REASON_REJECTED_AFTER_REFRESH,
        REASON_THROTTLED,
        REASON_SERVER_ERROR,
        REASON_TIMEOUT,
        REASON_CONNECTION,
        REASON_NOT_STARTED,
        REASON_CLIENT_CREDENTIALS_REJECTED,
        REASON_UNEXPECTED,
        REASON_METERED,
    }
)

CODE_SUBSCRIPTION_LAPSED = "6190"  # Invalid Company Status
CODES_ADMIN_ACCESS_LOST = frozenset({"3100", "120"})  # ApplicationAuthorizationFailed, AuthorizationFailure
CODES_AUTHENTICATION_FAILED = frozenset({"3200", "100"})  # AuthenticationFailed, General Authentication Error
CODE_THROTTLED = "3001"  # ThrottleExceeded
# The metering refusal: Intuit does not document its wire shape. We expect a Fault of type SERVICE with code
# 6900 "MeteredLimitExceeded" and HTTP 403 (an assumption, modelled the same way by the simulator); the code
# alone decides, whatever the status.
CODE_METERED = "6900"
OAUTH_ERRORS_MISCONFIGURED = frozenset({"invalid_client", "unauthorized_client"})


def classify(failure: IntuitFailure, *, after_fresh_refresh: bool = False) -> Classification:
    """Classify one failed Intuit call.

    ``after_fresh_refresh`` says the call was made with an access token obtained moments ago: a 401
    authentication fault then means the authorization itself is gone, not that the token aged out.
    """
    codes = frozenset(failure.codes)
    oauth_error = (failure.oauth_error or "").strip().lower()

    if failure.transport is not None:
        reasons = {"timeout": REASON_TIMEOUT, "not_started": REASON_NOT_STARTED}
        return _transient(reasons.get(failure.transport, REASON_CONNECTION))

    if oauth_error in OAUTH_ERRORS_MISCONFIGURED:
        return Classification(FailureKind.MISCONFIGURED, None, REASON_CLIENT_CREDENTIALS_REJECTED)

    if oauth_error == "invalid_grant" and failure.endpoint == "token":
        # Refresh token expired (100 days unused), revoked (app disconnected in QBO), or superseded.
        return _issue(IssueType.AUTHORIZATION_EXPIRED, REASON_INVALID_GRANT)

    if CODE_METERED in codes:
        return Classification(FailureKind.METERED, None, REASON_METERED)

    # 6190 first: a lapsed company can also answer 3100, and paying is the fix, not a new admin.
    if CODE_SUBSCRIPTION_LAPSED in codes:
        return _issue(IssueType.SUBSCRIPTION_LAPSED, REASON_SUBSCRIPTION_LAPSED)

    if codes & CODES_ADMIN_ACCESS_LOST:
        return _issue(IssueType.ADMIN_ACCESS_LOST, REASON_ADMIN_ACCESS_LOST)

    if failure.status == 401 and codes & CODES_AUTHENTICATION_FAILED:
        if after_fresh_refresh:
            return _issue(IssueType.AUTHORIZATION_EXPIRED, REASON_REJECTED_AFTER_REFRESH)
        return Classification(FailureKind.REFRESH_AND_RETRY, None, REASON_ACCESS_TOKEN_REJECTED)

    if (
        failure.status == 401
        and not codes
        and oauth_error in ("", "invalid_token")
        and failure.endpoint in ("api", "userinfo")
        and not after_fresh_refresh
    ):
        # A bare 401 (or RFC 6750 invalid_token) from a resource endpoint: refreshing is cheap and safe.
        # The same answer after a fresh refresh is unknown, hence transient below: an unknown answer never
        # opens an issue.
        return Classification(FailureKind.REFRESH_AND_RETRY, None, REASON_ACCESS_TOKEN_REJECTED)

    if failure.status == 429 or CODE_THROTTLED in codes:
        return _transient(REASON_THROTTLED)

    if failure.status is not None and failure.status >= 500:
        return _transient(REASON_SERVER_ERROR)

    return _transient(REASON_UNEXPECTED)


def revoke_already_done(failure: IntuitFailure) -> bool:
    """Whether a failed revoke means the token was already revoked (or never known): nothing left to do.

    Intuit answers the revoke of an already revoked or unknown token with HTTP 400 and an empty body
    (oauth-jsclient issues 18 and 71). Any other answer is a real failure (a body we could read says why).
    """
    return (
        failure.endpoint == "revoke"
        and failure.status == 400
        and failure.transport is None
        and failure.empty_body
    )


def _issue(issue: IssueType, reason: str) -> Classification:
    return Classification(FailureKind.ISSUE, issue, reason)


def _transient(reason: str) -> Classification:
    return Classification(FailureKind.TRANSIENT, None, reason)
