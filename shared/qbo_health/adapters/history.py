"""The per-connection audit trail: every decision about a connection lands here."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timedelta

from pynamodb.exceptions import DoesNotExist

from qbo_health import clock
from qbo_health.adapters.dynamo_models import HistoryModel
from qbo_health.domain.check import ConnectionEvent
from qbo_health.domain.model import SealedTokens, StoredAccessToken, TokenTimes

# Audit entries live two years; DynamoDB's TTL removes them after.
RETENTION_SECONDS = 2 * 365 * 24 * 3600


class HistoryLog:
    def append(self, connection_id: str, events: Iterable[ConnectionEvent]) -> None:
        for event in events:
            self.record(connection_id, event.kind.value, event.at, _event_detail(event))

    def record(
        self, connection_id: str, kind: str, at: datetime, detail: dict[str, str] | None = None
    ) -> None:
        entry = f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{kind}#{uuid.uuid4().hex[:8]}"
        HistoryModel(
            connection_id,
            entry,
            at=at,
            kind=kind,
            detail=json.dumps(detail, sort_keys=True) if detail else None,
            expires_at=int(at.timestamp()) + RETENTION_SECONDS,
        ).save()

    def entries(self, connection_id: str) -> list[dict[str, object]]:
        return [
            {
                "at": item.at,
                "kind": item.kind,
                "detail": json.loads(item.detail) if item.detail else {},
            }
            for item in HistoryModel.query(connection_id)
            if item.kind not in _NOT_AUDIT
        ]


def _sealed_detail(sealed: SealedTokens) -> dict[str, str]:
    return {
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
        "data_key": base64.b64encode(sealed.encrypted_data_key).decode(),
        "key_id": sealed.key_id,
    }


def _sealed_of(data: dict[str, str]) -> SealedTokens:
    return SealedTokens(
        ciphertext=base64.b64decode(data["ciphertext"]),
        encrypted_data_key=base64.b64decode(data["data_key"]),
        key_id=data["key_id"],
    )


def _event_detail(event: ConnectionEvent) -> dict[str, str]:
    detail = {"issue": event.issue.value if event.issue else None, "episode_id": event.episode_id}
    if event.detail:
        detail["detail"] = event.detail
    return {key: value for key, value in detail.items() if value is not None}


class TokenRecoveryLog:
    """Refreshed token pairs whose write to the connection failed, kept (sealed) in the history table.

    A different table than the one that just failed, and only ever written on that failure path, so the
    healthy path pays nothing. Records expire after a week (treated as absent after that, as moto never
    deletes expired items).
    """

    ENTRY = "TOKEN_RECOVERY"
    KEEP = timedelta(days=7)

    def stash(self, connection_id: str, sealed: SealedTokens, times: TokenTimes, now: datetime) -> None:
        detail = {
            **_sealed_detail(sealed),
            "times": {name: value.isoformat() for name, value in asdict(times).items() if value is not None},
        }
        HistoryModel(
            connection_id,
            self.ENTRY,
            at=now,
            kind=self.ENTRY,
            detail=json.dumps(detail),
            expires_at=int((now + self.KEEP).timestamp()),
        ).save()

    def take(self, connection_id: str) -> tuple[SealedTokens, TokenTimes] | None:
        try:
            item = HistoryModel.get(connection_id, self.ENTRY, consistent_read=True)
        except DoesNotExist:
            return None
        if item.expires_at is not None and item.at + self.KEEP <= clock.now():
            return None
        data = json.loads(item.detail or "{}")
        sealed = _sealed_of(data)
        times = TokenTimes(**{name: datetime.fromisoformat(value) for name, value in data["times"].items()})
        return sealed, times

    def clear(self, connection_id: str) -> None:
        HistoryModel(connection_id, self.ENTRY).delete()


class AccessTokenCache:
    """The connection's current access token (sealed), kept in the history table until it expires.

    Written only when someone hands a token out (the API, or a check an API caller is waiting on), never by
    a plain daily check; DynamoDB's TTL removes it after expiry (and it reads as absent from then on).
    """

    ENTRY = "ACCESS_TOKEN"

    def put(self, connection_id: str, token: StoredAccessToken, now: datetime) -> None:
        HistoryModel(
            connection_id,
            self.ENTRY,
            at=now,
            kind=self.ENTRY,
            detail=json.dumps({**_sealed_detail(token.sealed), "expires_at": token.expires_at.isoformat()}),
            expires_at=int(token.expires_at.timestamp()),
        ).save()

    def get(self, connection_id: str, now: datetime) -> StoredAccessToken | None:
        try:
            item = HistoryModel.get(connection_id, self.ENTRY, consistent_read=True)
        except DoesNotExist:
            return None
        data = json.loads(item.detail or "{}")
        expires_at = datetime.fromisoformat(data["expires_at"])
        if expires_at <= now:
            return None
        return StoredAccessToken(_sealed_of(data), expires_at)

    def delete(self, connection_id: str) -> None:
        HistoryModel(connection_id, self.ENTRY).delete()


# Working records kept beside the audit trail, not part of it.
_NOT_AUDIT = frozenset({TokenRecoveryLog.ENTRY, AccessTokenCache.ENTRY})
