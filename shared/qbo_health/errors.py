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
