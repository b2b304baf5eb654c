"""The one place Logger, Tracer, Metrics and Counts are created. Handlers decorate; everything else imports these.

Metrics are only what an alarm or the dashboard reads: each name is a billed CloudWatch metric. Everything
else worth counting (checks by outcome, events, connections by state, notices by kind) is a ``counts`` log line
per invocation, summed with CloudWatch Logs Insights (docs/ops.md).
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics

SERVICE = "qbo-connection-health"
NAMESPACE = "QboConnectionHealth"

logger = Logger(service=SERVICE)
# Metrics are sent only when an alarm has something to read: an invocation without one is the normal case,
# not worth a warning in every container's log.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

Handler = TypeVar("Handler", bound=Callable[..., Any])


class Counts:
    """Counts of one invocation, logged as one structured line: ``{"message": "counts", "counts": {...}}``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._readers: list[weakref.WeakMethod[Callable[[dict[str, int]], None]]] = []

    def add(self, name: str, value: int = 1) -> None:
        if value:
            with self._lock:
                self._counts[name] += value

    def flush(self) -> dict[str, int]:
        with self._lock:
            counted, self._counts = dict(self._counts), Counter()
        if counted:
            logger.info("counts", extra={"counts": counted})
            for reader in list(self._readers):
                read = reader()
                if read is not None:
                    read(counted)
        return counted

    def subscribe(self, reader: Callable[[dict[str, int]], None]) -> None:
        """A bound method that receives every flushed line (the local runner keeps totals this way)."""
        self._readers = [ref for ref in self._readers if ref() is not None]
        self._readers.append(weakref.WeakMethod(reader))


counts = Counts()


def log_counts(handler: Handler) -> Handler:
    """Logs the invocation's counts when the handler returns or raises."""

    @functools.wraps(handler)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        finally:
            counts.flush()

    return cast(Handler, counted)


class _Metrics(Metrics):
    """Powertools Metrics whose ``log_metrics`` also logs the invocation's counts: one decorator per handler."""

    def log_metrics(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_cold_start_metric: bool = False,
        raise_on_empty_metrics: bool = False,
        default_dimensions: dict[str, str] | None = None,
        **kwargs: dict[str, Any],
    ) -> Callable[..., Any]:
        options: dict[str, Any] = {
            "capture_cold_start_metric": capture_cold_start_metric,
            "raise_on_empty_metrics": raise_on_empty_metrics,
            "default_dimensions": default_dimensions,
            **kwargs,
        }
        if lambda_handler is None:
            return functools.partial(self.log_metrics, **options)
        return super().log_metrics(log_counts(lambda_handler), **options)


metrics = _Metrics(namespace=NAMESPACE, service=SERVICE)


def tracing_enabled() -> bool:
    """X-Ray subsegments (Powertools Tracer) only when the deployment turns them on (``TraceSubsegments``),
    and only inside Lambda, as Powertools decides. Off, the X-Ray SDK is never imported: it is ~30 ms of
    every cold start, and Lambda's active tracing still records each invocation without it."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    return not disabled and bool(os.environ.get("LAMBDA_TASK_ROOT"))


def traced(handler: Handler) -> Handler:
    """``Tracer.capture_lambda_handler`` when tracing is on; the handler unchanged otherwise.

    Never with the response: the API's answers carry access tokens and the OAuth state in a redirect, and
    Powertools would record them as trace metadata (tests/integration/test_traces.py)."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return cast(Handler, Tracer(service=SERVICE).capture_lambda_handler(handler, capture_response=False))
