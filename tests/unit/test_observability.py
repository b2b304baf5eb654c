"""X-Ray subsegments are a deployment choice (TraceSubsegments): off, the X-Ray SDK is not even imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"

PROBE = """
import sys
from qbo_health.observability import traced

def handler(event, context):
    return "ok"

wrapped = traced(handler)
print(wrapped is handler, "aws_xray_sdk" in sys.modules)
"""


def run_probe(**environment: str) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("LAMBDA_TASK_ROOT",)}
    env.update(environment, PYTHONPATH=str(SHARED))
    done = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_with_tracing_off_the_handler_is_unchanged_and_the_xray_sdk_never_loads():
    assert run_probe(POWERTOOLS_TRACE_DISABLED="true", LAMBDA_TASK_ROOT="/var/task") == "True False"


def test_outside_lambda_tracing_stays_off_as_powertools_decides():
    assert run_probe(POWERTOOLS_TRACE_DISABLED="false") == "True False"


def test_with_trace_subsegments_on_inside_lambda_the_handler_is_traced():
    assert run_probe(POWERTOOLS_TRACE_DISABLED="false", LAMBDA_TASK_ROOT="/var/task") == "False True"
