"""A faithful Intuit simulator: OAuth 2.0 (authorize, consent, token, revoke, userinfo, discovery) and
the QuickBooks CompanyInfo API, with Intuit's token rotation, lifetimes, error shapes, limits and injectable
faults.

It reads time only from the :class:`~qbo_health.clock.Clock` it is given, so tests move days forward without
sleeping. See ``local/intuit_sim/README.md``.
"""

from local.intuit_sim.control import SimulatorControl, SimulatorControlError
from local.intuit_sim.server import IntuitSimulator
from local.intuit_sim.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "IntuitSimulator",
    "SimulatorControl",
    "SimulatorControlError",
]
