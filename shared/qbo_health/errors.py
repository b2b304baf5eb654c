"""Every exception the service raises on purpose. Handlers map these to responses in one place."""

from __future__ import annotations

from qbo_health.domain.model import IntuitFailure


class QboHealthError(Exception):
    """Base for expected failures."""


class ConfigurationError(QboHealthError):
    pass


class ConnectionNotFound(QboHealthError):
    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} not found")
        self.connection_id = connection_id


class ConcurrentUpdate(QboHealthError):
    """An optimistic-lock condition failed: someone else wrote the connection first."""


class AccessWanted(ConcurrentUpdate):
    """A write that releases the lease was refused because an API caller is waiting for an access token."""


class LeaseHeld(QboHealthError):
    """Another worker holds the connection's lease."""


class IntuitCallFailed(QboHealthError):
    """Intuit answered with an error (or did not answer). Carries no token values."""

    def __init__(self, failure: IntuitFailure) -> None:
        detail = failure.oauth_error or ",".join(failure.codes) or failure.transport or "error"
        super().__init__(f"Intuit {failure.endpoint} call failed: status={failure.status} {detail}")
        self.failure = failure


class TokenDecryptionFailed(QboHealthError):
    pass


class DisconnectAverted(QboHealthError):
    """The escalator's disconnect found, under the lease, that the connection no longer qualifies: healed,
    reauthorized, in another episode, on hold, or the lease it held was lost. Nothing was revoked."""

    def __init__(self, connection_id: str, reason: str) -> None:
        super().__init__(f"disconnect of {connection_id} averted: {reason}")
        self.connection_id = connection_id
        self.reason = reason


class EmailUndeliverable(QboHealthError):
    """The e-mail service refused the recipients for good (an invalid address, say): retrying cannot help."""


class WebhookRefused(QboHealthError):
    """A webhook was not accepted: the endpoint is not allowed (SSRF guard), unreachable, or answered non-2xx.
    Carries no payload, header or secret values."""


# --- API and reauthorization -------------------------------------------------------------------------------
# Each carries a short ``code`` (the ``error`` of a JSON answer, the id of an HTML page) and an HTTP status;
# the API maps them in one place (``qbo_health.api.errors``). Messages never carry token, code or state values.


class ApiError(QboHealthError):
    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AlreadyExists(ApiError):
    code = "already_exists"
    status = 409


class InvalidState(ApiError):
    """The connection's state does not allow the operation (e.g. a token for a connection never authorized)."""

    code = "invalid_state"
    status = 409


class ConnectionNeedsAttention(ApiError):
    """A token was asked for, but the connection has an open issue or is disconnected: it answers the issue."""

    code = "connection_needs_attention"
    status = 409

    def __init__(self, message: str, *, state: str, issue: str | None) -> None:
        super().__init__(message)
        self.state = state
        self.issue = issue


class ConnectionBusy(ApiError):
    """The lease stayed taken longer than the caller was willing to wait."""

    code = "busy"
    status = 503


class SignInTimedOut(ApiError):
    """The callback had too little time left to exchange the code, or to store the new grant (then revoked)."""

    code = "sign_in_timed_out"
    status = 503


class IntuitUnavailable(ApiError):
    """Intuit did not answer usefully (transient). Not the caller's fault, so a 5xx: retry later."""

    code = "intuit_unavailable"
    status = 503


class ReconnectLinkInvalid(ApiError):
    """A reconnect link that is malformed, forged, for another purpose, or expired (``reason`` says which)."""

    code = "reconnect_link_invalid"
    status = 400

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OAuthStateInvalid(ApiError):
    """The callback's ``state`` is unknown, expired or already used."""

    code = "oauth_state_invalid"
    status = 400


class AuthorizationDenied(ApiError):
    """Intuit sent the user back with an ``error`` (``access_denied`` when they pressed Cancel)."""

    code = "authorization_denied"
    status = 400

    def __init__(self, message: str, *, oauth_error: str, connection_id: str | None = None) -> None:
        super().__init__(message)
        self.oauth_error = oauth_error
        self.connection_id = connection_id


class RealmMismatch(ApiError):
    """The user consented for a different QuickBooks company than the connection's."""

    code = "realm_mismatch"
    status = 400


class NotAnAdmin(ApiError):
    """The user who consented has no admin access to the company (CompanyInfo answered 3100/120)."""

    code = "not_an_admin"
    status = 403


class AuthorizationCodeRejected(ApiError):
    """Intuit refused to exchange the code (expired, already used, redirect mismatch)."""

    code = "authorization_code_rejected"
    status = 400


class NoticeDeliveryFailed(QboHealthError):
    """A notice channel refused the notice; the claim is released so the next run retries."""


class InvalidRequest(ApiError):
    """A parameter is missing, too long or malformed."""

    code = "invalid_request"
    status = 400


class CompanyInactive(ApiError):
    """The company's QuickBooks subscription is not active (CompanyInfo answered 6190)."""

    code = "subscription_inactive"
    status = 409


class IdentityMismatch(ApiError):
    """The QuickBooks user who consented is not the one the product bound the connect link to."""

    code = "identity_mismatch"
    status = 403


class TileTokenInvalid(ApiError):
    """A tile token that is missing, malformed, forged, for another connection or expired (``reason`` says
    which, for the log only: every case answers the same 401, so a caller learns nothing about why)."""

    code = "tile_token_invalid"
    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__("The tile's token is missing, not valid or expired: ask the product for a new one.")
        self.reason = reason
