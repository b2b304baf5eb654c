"""The per-connection audit trail: every decision about a connection lands here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime

from qbo_health.adapters.dynamo_models import HistoryModel
from qbo_health.domain.check import ConnectionEvent

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
