"""Run the simulator by itself: ``python -m local.intuit_sim [--port 8765]``.

It gets its own simulated clock starting at the current time; move it with ``POST /_sim/clock/advance``.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from local.intuit_sim.server import IntuitSimulator
from qbo_health.clock import SimulatedClock


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Intuit simulator until interrupted.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    simulator = IntuitSimulator(SimulatedClock(datetime.now(UTC)), host=args.host, port=args.port)
    simulator.start()
    print(f"Intuit simulator on {simulator.base_url} (discovery: {simulator.discovery_url})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


if __name__ == "__main__":
    main()
