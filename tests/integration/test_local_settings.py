"""What `make local` and the ops CLI beside it refuse, before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.serve import LocalError, intuit_target
from local.stack import free_port
from qbo_health.ops import cli


def test_make_local_runs_on_the_simulator_unless_told_the_sandbox():
    assert intuit_target({}).is_simulator
    sandbox = intuit_target(
        {"INTUIT_ENVIRONMENT": "sandbox", "INTUIT_CLIENT_ID": "AB123", "INTUIT_CLIENT_SECRET": "s3cret-value"}
    )
    assert (sandbox.environment, sandbox.client_id, sandbox.base_url) == ("sandbox", "AB123", None)
    assert "s3cret-value" not in repr(sandbox)


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"INTUIT_ENVIRONMENT": "sandbox", "INTUIT_CLIENT_ID": "AB123"}, "INTUIT_CLIENT_SECRET"),
        (
            {"INTUIT_ENVIRONMENT": "production", "INTUIT_CLIENT_ID": "AB", "INTUIT_CLIENT_SECRET": "x"},
            "laptop",
        ),
    ],
    ids=["sandbox-without-secret", "production"],
)
def test_make_local_refuses_an_incomplete_or_production_intuit(environ, says):
    with pytest.raises(LocalError, match=says):
        intuit_target(environ)


def test_the_ops_cli_refuses_to_guess_when_the_stacks_clock_does_not_answer():
    # A child process, as a user runs it: the entry point points the service's log handler at its stderr.
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": "shared:."}
    environment[cli.CLOCK_URL_VARIABLE] = f"http://127.0.0.1:{free_port()}/clock"
    answer = subprocess.run(
        [sys.executable, "-m", "qbo_health.ops", "list"],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert answer.returncode == cli.FAILED
    assert "is `make local` running?" in answer.stderr
