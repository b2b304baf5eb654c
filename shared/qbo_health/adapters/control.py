"""Service-wide control items: check-run tallies, the worker heartbeat and the suspected-outage flag."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from pynamodb.exceptions import DoesNotExist, PutError

from qbo_health.adapters.dynamo_models import ControlModel
from qbo_health.domain.escalation import PauseWindow
from qbo_health.domain.outage import RunSummary

RUN_RETENTION = timedelta(days=30)
LATEST_RUN_KEY = "LATEST_RUN"
HEARTBEAT_KEY = "HEARTBEAT#check-worker"
OUTAGE_KEY = "OUTAGE"
PAUSES_KEY = "PAUSE_WINDOWS"
# Closed pause windows older than this no longer matter (no episode lasts that long).
PAUSE_MEMORY = timedelta(days=120)
DISCONNECT_RECHECK_PREFIX = "DISCONNECT_RECHECK#"


@dataclass(frozen=True)
class RunTally:
    run_id: str
    started_at: datetime | None
    scheduled: int
    transient: int
    suspected: int


class ControlStore:
    def claim_disconnect_recheck(self, realm_id: str, now: datetime, window: timedelta) -> bool:
        """One conditional write: True for the first landing of this realm in ``window``, False after.

        The item expires by itself (TTL on ``expires_at``); TTL deletion is lazy, so the condition also
        accepts an item whose time has passed."""
        until = int((now + window).timestamp())
        item = ControlModel(f"{DISCONNECT_RECHECK_PREFIX}{realm_id}", at=now, expires_at=until)
        condition = ControlModel.key.does_not_exist() | (ControlModel.expires_at <= int(now.timestamp()))
        try:
            item.save(condition=condition)
        except PutError as error:
            if getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

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

    def latest_run(self) -> RunSummary | None:
        try:
            run_id = ControlModel.get(LATEST_RUN_KEY, consistent_read=True).detail
        except DoesNotExist:
            return None
        tally = self.run(run_id or "")
        if tally is None or tally.started_at is None:
            return None
        return RunSummary(tally.started_at, tally.scheduled, tally.transient, tally.suspected)

    def mark_outage(self, now: datetime, run_id: str) -> None:
        """Start the suspected outage (if none is running) and note when it was last seen."""
        ControlModel(OUTAGE_KEY).update(
            actions=[
                ControlModel.at.set(ControlModel.at | now),  # if_not_exists: the start stays put
                ControlModel.until.set(now),
                ControlModel.detail.set(run_id),
            ]
        )

    def outage(self) -> PauseWindow | None:
        """The running suspected outage: ``start`` and, in ``end``, when it was last seen."""
        try:
            item = ControlModel.get(OUTAGE_KEY, consistent_read=True)
        except DoesNotExist:
            return None
        if item.at is None:
            return None
        return PauseWindow(start=item.at, end=item.until)

    def end_outage(self, now: datetime) -> None:
        """Close the running outage: it becomes a pause window that stays on record."""
        outage = self.outage()
        if outage is None:
            return
        windows = [w for w in self._closed_windows() if w.end and now - w.end < PAUSE_MEMORY]
        windows.append(PauseWindow(outage.start, now))
        encoded = [[w.start.isoformat(), (w.end or now).isoformat()] for w in windows]
        ControlModel(PAUSES_KEY, at=now, detail=json.dumps(encoded)).save()
        ControlModel(OUTAGE_KEY).delete()

    def pause_windows(self) -> list[PauseWindow]:
        """Every pause that may still matter; a running outage appears with ``end=None``."""
        windows = self._closed_windows()
        running = self.outage()
        if running is not None:
            windows.append(PauseWindow(running.start, None))
        return windows

    def _closed_windows(self) -> list[PauseWindow]:
        try:
            item = ControlModel.get(PAUSES_KEY, consistent_read=True)
        except DoesNotExist:
            return []
        return [
            PauseWindow(datetime.fromisoformat(start), datetime.fromisoformat(end))
            for start, end in json.loads(item.detail or "[]")
        ]

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


class CachedOutageFlag:
    """The suspected-outage flag as a worker sees it: read at most once a minute per container, so a storm
    of transient failures costs one read a minute, not one per failure."""

    def __init__(self, control: ControlStore, max_age: timedelta = timedelta(minutes=1)) -> None:
        self._control, self._max_age = control, max_age
        self._read_at: datetime | None = None
        self._on = False
        self._lock = threading.Lock()

    def suspected(self, now: datetime) -> bool:
        with self._lock:
            fresh = self._read_at is not None and timedelta(0) <= now - self._read_at < self._max_age
            if not fresh:
                self._on = self._control.outage() is not None
                self._read_at = now
            return self._on

    def raised_here(self, now: datetime) -> None:
        with self._lock:
            self._on, self._read_at = True, now
