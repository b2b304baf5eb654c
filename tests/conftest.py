"""Shared fixtures. The simulator and the embedded stack start once per session and reset per test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from local.http_front import HttpFront
from local.intuit_sim import IntuitSimulator
from local.runner import LocalLambda
from local.stack import EmbeddedStack
from qbo_health.clock import SimulatedClock
from qbo_health.observability import SERVICE


@pytest.fixture(scope="session")
def sim_clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture(scope="session")
def _intuit_server(sim_clock: SimulatedClock) -> Iterator[IntuitSimulator]:
    simulator = IntuitSimulator(clock=sim_clock)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def intuit(_intuit_server: IntuitSimulator, _log_capture: _LogCapture) -> Iterator[IntuitSimulator]:
    """The Intuit simulator, empty but for the default app, with faults and latency off."""
    _intuit_server.reset()
    since = len(_log_capture.lines)
    yield _intuit_server
    _assert_no_secret_logged(_log_capture, since, _intuit_server)


@pytest.fixture(scope="session")
def _embedded_stack(sim_clock: SimulatedClock) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(clock=sim_clock).start()
    yield stack
    stack.stop()


@pytest.fixture
def stack(_embedded_stack: EmbeddedStack, _log_capture: _LogCapture) -> Iterator[EmbeddedStack]:
    """The embedded stack with empty tables and queues, a reset simulator, and the clock at its start."""
    _embedded_stack.reset()
    since = len(_log_capture.lines)
    yield _embedded_stack
    _assert_no_secret_logged(_log_capture, since, _embedded_stack.intuit)


@pytest.fixture
def lambdas(stack: EmbeddedStack) -> Iterator[LocalLambda]:
    runner = LocalLambda(stack)
    yield runner
    runner.close()


class _LogCapture(logging.Handler):
    """Keeps every log record of the run (message and structured extras) to search for leaked secrets."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__!r}")


@pytest.fixture(scope="session")
def _log_capture() -> Iterator[_LogCapture]:
    capture = _LogCapture()
    watched = [logging.getLogger(), logging.getLogger(SERVICE), logging.getLogger("werkzeug")]
    for watched_logger in watched:
        watched_logger.addHandler(capture)
    yield capture
    for watched_logger in watched:
        watched_logger.removeHandler(capture)


def _secrets_known_to(simulator: IntuitSimulator) -> set[str]:
    state = simulator.state
    return set(state.refresh_index) | set(state.access_index) | set(state.codes)


def _assert_no_secret_logged(capture: _LogCapture, since: int, simulator: IntuitSimulator) -> None:
    """Across the whole suite: no token or code the simulator issued appears in any log line."""
    secrets = _secrets_known_to(simulator)
    leaked = [line for line in capture.lines[since:] for secret in secrets if secret in line]
    assert not leaked, f"{len(leaked)} log lines contain a token or code value"


# --- API (local HTTP front) ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _api_front(_embedded_stack: EmbeddedStack) -> Iterator[HttpFront]:
    front = HttpFront(_embedded_stack)
    front.start()
    yield front
    front.stop()


@pytest.fixture
def api_front(stack: EmbeddedStack, _api_front: HttpFront) -> HttpFront:
    """The API's loopback front (API Gateway HTTP API v2 events, IAM auth on internal routes)."""
    return _api_front


@pytest.fixture
def api_url(api_front: HttpFront) -> str:
    return api_front.base_url


@pytest.fixture
def api_client(api_url: str):  # -> QboHealthClient
    """The product-side Python client, signing with the local test credentials."""
    from botocore.credentials import Credentials

    from qbo_health.client import QboHealthClient

    return QboHealthClient(
        api_url, region="us-east-1", credentials=Credentials("testing", "testing", "testing")
    )
