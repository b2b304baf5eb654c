"""The one place Logger, Tracer and Metrics are created. Handlers decorate; everything else imports these."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics

SERVICE = "qbo-connection-health"
NAMESPACE = "QboConnectionHealth"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])


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
