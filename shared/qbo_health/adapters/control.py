"""Service-wide control items: check-run tallies, the worker heartbeat and the suspected-outage flag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pynamodb.exceptions import DoesNotExist

from qbo_health.adapters.dynamo_models import ControlModel

RUN_RETENTION = timedelta(days=30)
LATEST_RUN_KEY = "LATEST_RUN"
HEARTBEAT_KEY = "HEARTBEAT#check-worker"
OUTAGE_KEY = "OUTAGE"


@dataclass(frozen=True)
class RunTally:
    run_id: str
    started_at: datetime | None
    scheduled: int
    transient: int
    suspected: int


class ControlStore:
    def start_run(self, run_id: str, now: datetime, scheduled: int) -> None:
        expires = int((now + RUN_RETENTION).timestamp())
        ControlModel(f"RUN#{run_id}", at=now, scheduled=scheduled, expires_at=expires).save()
        ControlModel(LATEST_RUN_KEY, at=now, detail=run_id).save()

    def add_to_run(self, run_id: str, *, transient: int, suspected: int) -> RunTally:
        """Add one batch's trouble to the run, atomically, and return the run's totals."""
        item = ControlModel(f"RUN#{run_id}")
        item.update(actions=[ControlModel.transient.add(transient), ControlModel.suspected.add(suspected)])
        return _tally(run_id, item)

    def run(self, run_id: str) -> RunTally | None:
        try:
            return _tally(run_id, ControlModel.get(f"RUN#{run_id}", consistent_read=True))
        except DoesNotExist:
            return None

    def beat(self, now: datetime) -> None:
        ControlModel(HEARTBEAT_KEY, at=now).save()

    def last_beat(self) -> datetime | None:
        return self._time_of(HEARTBEAT_KEY)

    def mark_outage(self, now: datetime, run_id: str) -> None:
        """Refreshed by every batch that still looks like an outage; it lapses on its own when they stop."""
        ControlModel(OUTAGE_KEY, at=now, detail=run_id).save()

    def outage_seen_at(self) -> datetime | None:
        return self._time_of(OUTAGE_KEY)

    def _time_of(self, key: str) -> datetime | None:
        try:
            return ControlModel.get(key, consistent_read=True).at
        except DoesNotExist:
            return None


def _tally(run_id: str, item: ControlModel) -> RunTally:
    return RunTally(
        run_id=run_id,
        started_at=item.at,
        scheduled=int(item.scheduled or 0),
        transient=int(item.transient or 0),
        suspected=int(item.suspected or 0),
    )
