"""Shared fixtures. The simulator and the embedded stack start once per session and reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.intuit_sim import IntuitSimulator
from local.runner import LocalLambda
from local.stack import EmbeddedStack
from qbo_health.clock import SimulatedClock


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
def intuit(_intuit_server: IntuitSimulator) -> IntuitSimulator:
    """The Intuit simulator, empty but for the default app, with faults and latency off."""
    _intuit_server.reset()
    return _intuit_server


@pytest.fixture(scope="session")
def _embedded_stack(sim_clock: SimulatedClock) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(clock=sim_clock).start()
    yield stack
    stack.stop()


@pytest.fixture
def stack(_embedded_stack: EmbeddedStack) -> EmbeddedStack:
    """The embedded stack with empty tables and queues, a reset simulator, and the clock at its start."""
    _embedded_stack.reset()
    return _embedded_stack


@pytest.fixture
def lambdas(stack: EmbeddedStack) -> LocalLambda:
    return LocalLambda(stack)
