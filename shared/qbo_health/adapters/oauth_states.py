"""The OAuth states table: a state is stored by its hash, bound to one connection, and used at most once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import PutError, UpdateError

from qbo_health.adapters.dynamo_models import OAuthStateModel


@dataclass(frozen=True)
class StoredState:
    state_hash: str
    connection_id: str
    redirect_uri: str
    created_at: datetime
    expires_at: int
    link_issued_at: int | None = None
    # The connection's grant generation the link carried: the grant is stored only if it is still current.
    link_generation: int = 0
    consumed_at: datetime | None = None
    # The generation of the grant this sign-in stored (None until it stored one).
    granted_generation: int | None = None


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


class OAuthStateStore:
    def put(self, state: StoredState) -> None:
        item = OAuthStateModel(
            state.state_hash,
            connection_id=state.connection_id,
            redirect_uri=state.redirect_uri,
            created_at=state.created_at,
            expires_at=state.expires_at,
            link_issued_at=state.link_issued_at,
            link_generation=state.link_generation,
        )
        try:
            item.save(condition=OAuthStateModel.state_hash.does_not_exist())
        except PutError as error:  # 256 random bits never collide; a collision means a bug, not bad luck
            if _condition_failed(error):
                raise RuntimeError("OAuth state collision") from error
            raise

    def consume(self, state_hash: str, now: datetime) -> StoredState | None:
        """Mark the state used in one conditional write and return it; None when it is unknown, expired
        (TTL deletion is lazy, so an expired item may still be there) or already used. Two deliveries of one
        callback race on this write: exactly one of them gets the state."""
        item = OAuthStateModel(state_hash)
        condition = (
            OAuthStateModel.state_hash.exists()
            & OAuthStateModel.consumed_at.does_not_exist()
            & (OAuthStateModel.expires_at > int(now.timestamp()))
        )
        try:
            item.update(actions=[OAuthStateModel.consumed_at.set(now)], condition=condition)
        except UpdateError as error:
            if _condition_failed(error):
                return None
            raise
        return _stored(item)

    def peek(self, state_hash: str, now: datetime) -> StoredState | None:
        """The state as it is (used or not), or None when it is unknown or expired. Reads only."""
        try:
            item = OAuthStateModel.get(state_hash, consistent_read=True)
        except OAuthStateModel.DoesNotExist:
            return None
        if int(item.expires_at) <= int(now.timestamp()):
            return None
        return _stored(item)

    def mark_granted(self, state_hash: str, generation: int) -> None:
        """Note on a used state the grant generation its sign-in stored."""
        item = OAuthStateModel(state_hash)
        item.update(
            actions=[OAuthStateModel.granted_generation.set(generation)],
            condition=OAuthStateModel.consumed_at.exists(),
        )


def _stored(item: OAuthStateModel) -> StoredState:
    return StoredState(
        state_hash=item.state_hash,
        connection_id=item.connection_id,
        redirect_uri=item.redirect_uri,
        created_at=item.created_at,
        expires_at=int(item.expires_at),
        link_issued_at=int(item.link_issued_at) if item.link_issued_at is not None else None,
        link_generation=int(item.link_generation or 0),
        consumed_at=item.consumed_at,
        granted_generation=int(item.granted_generation) if item.granted_generation is not None else None,
    )
