"""Shared fixtures. The simulator and the embedded stack start once per session and reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.intuit_sim import IntuitSimulator
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
