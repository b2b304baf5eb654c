"""Shared bench plumbing: AWS request counting through botocore's event hooks, and result files."""

from __future__ import annotations

import json
import os
import platform
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from qbo_health import wiring
from qbo_health.adapters.dynamo_models import ConnectionModel, ControlModel, HistoryModel

RESULTS = Path(__file__).resolve().parent / "results"


class AwsRequestCounter:
    """Counts every AWS API call our code makes, by service and operation (``before-call`` events)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self) -> AwsRequestCounter:
        clients = [wiring.aws_client("kms"), wiring.aws_client("sqs")]
        clients += [
            model._get_connection().connection.client
            for model in (ConnectionModel, HistoryModel, ControlModel)
        ]
        for client in {id(client): client for client in clients}.values():
            client.meta.events.register("before-call.*.*", self._count)
        return self

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def by_service(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for key, count in self.calls.items():
            totals[key.split(".", 1)[0]] += count
        return dict(totals)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2, default=str))
    return path
