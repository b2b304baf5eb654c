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
from qbo_health.domain.model import SealedTokens, TokenTimes

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
        ]


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
            "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
            "data_key": base64.b64encode(sealed.encrypted_data_key).decode(),
            "key_id": sealed.key_id,
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
        sealed = SealedTokens(
            ciphertext=base64.b64decode(data["ciphertext"]),
            encrypted_data_key=base64.b64decode(data["data_key"]),
            key_id=data["key_id"],
        )
        times = TokenTimes(**{name: datetime.fromisoformat(value) for name, value in data["times"].items()})
        return sealed, times

    def clear(self, connection_id: str) -> None:
        HistoryModel(connection_id, self.ENTRY).delete()
