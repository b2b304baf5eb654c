"""`make local`: the embedded stack and its HTTP front, running until Ctrl-C, to try by hand.

Starts moto, the Intuit simulator and the API's loopback front, seeds a few connections (one of them with a
lost admin), plays the last day of production's schedule so that connection's issue is confirmed and its
first notice sent, then keeps production's schedules running (checks every hour, the escalator, the queue)
and prints what to open: the API, the local credentials, a live reconnect link and the ``export`` lines that
point the ops CLI at the stack.

The clock is the real date (the stack's clock follows the system's); ``--simulated`` keeps a simulated clock
that moves only when told (``POST <control>/clock/advance`` with ``{"days": N}`` or ``{"hours": N}``, which
plays production's schedules over that time). Either way the stack serves its time at ``<control>/clock``:
the ops CLI reads it when ``QBO_HEALTH_CLOCK_URL`` is set (one of the printed export lines).

``INTUIT_ENVIRONMENT=sandbox`` with ``INTUIT_CLIENT_ID`` and ``INTUIT_CLIENT_SECRET`` (a developer's own
Intuit app, with ``http://localhost:PORT/oauth/callback`` registered as a redirect URI) runs against Intuit's
sandbox instead of the simulator: the same settings the functions read on AWS pick Intuit's sandbox hosts, and
the keys go into the stack's credentials secret. Nothing is seeded at Intuit; the printout gives a connect link
for a new connection instead. ``INTUIT_BASE_URL`` then names a stand-in posing as the sandbox (tests only).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the printout says what matters; logs would drown it

from botocore.credentials import Credentials
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local.http_front import HttpFront
from local.production import ProductionSchedule  # imported after the log level is set
from local.runner import LocalLambda
from local.seed import seed_connection
from local.stack import REGION, EmbeddedStack, IntuitTarget
from local.tile_demo import TileDemo
from qbo_health import wiring
from qbo_health.client import QboHealthClient
from qbo_health.clock import SimulatedClock
from qbo_health.domain.model import Connection

DEFAULT_PORT = 8700
# The most a single advance of the simulated clock may cover (each day plays 48 scheduled invocations).
MAX_ADVANCE = timedelta(days=60)
# Exported for the ops CLI: everything the functions read, except what it reads from the stack's Secrets
# Manager as on AWS (the link-signing key, the Intuit keys) and settings that only quiet the functions.
_NOT_EXPORTED = ("LINK_SIGNING_KEY", "INTUIT_CLIENT_ID", "INTUIT_CLIENT_SECRET", "PYDANTIC_DISABLE_PLUGINS")
_NOT_EXPORTED_PREFIXES = ("POWERTOOLS_",)


@dataclass(frozen=True)
class Seeded:
    connection_id: str
    company: str
    broken: bool = False


# A few companies at the simulator, one of whose admin lost the Admin role (another admin can reconnect it).
SEEDS = (
    Seeded("acme-books", "Acme Books"),
    Seeded("northwind-traders", "Northwind Traders"),
    Seeded("summit-dental", "Summit Dental"),
    Seeded("harbor-cafe", "Harbor Cafe", broken=True),
)
NEW_ADMIN = "new.admin@harbor-cafe.example"
SANDBOX_CONNECTION = "my-sandbox-company"


class LocalError(Exception):
    """`make local` cannot start as asked (exit 2, with this message)."""


def intuit_target(environ: Mapping[str, str]) -> IntuitTarget:
    """Which Intuit, from the same variables the functions read: the simulator unless INTUIT_ENVIRONMENT=sandbox."""
    environment = environ.get("INTUIT_ENVIRONMENT", "") or "local"
    if environment == "local":
        return IntuitTarget()
    if environment != "sandbox":
        raise LocalError(
            f"INTUIT_ENVIRONMENT={environment}: `make local` runs on the simulator (unset) or Intuit's sandbox"
            " (sandbox); production keys have no place on a laptop"
        )
    client_id = environ.get("INTUIT_CLIENT_ID", "")
    client_secret = environ.get("INTUIT_CLIENT_SECRET", "")
    if not client_id or not client_secret:
        raise LocalError(
            "INTUIT_ENVIRONMENT=sandbox needs your Intuit app's development keys: INTUIT_CLIENT_ID and"
            " INTUIT_CLIENT_SECRET (README, 'Against Intuit's sandbox')"
        )
    return IntuitTarget("sandbox", client_id, client_secret, environ.get("INTUIT_BASE_URL") or None)


class LocalStack:
    """The stack, its front, production's schedules and the control server, for one `make local` session."""

    def __init__(
        self, *, port: int, control_port: int, tile_port: int, simulated: bool, intuit: IntuitTarget
    ) -> None:
        self.simulated = simulated
        start = SimulatedClock().now() if simulated else datetime.now(UTC)
        if intuit.is_simulator:
            start -= timedelta(days=1)  # the last day is played at start-up: issues confirmed, notices sent
        self.clock = SimulatedClock(start)
        # "localhost": the redirect URI a developer registers at Intuit is http://localhost:PORT/oauth/callback.
        self.stack = EmbeddedStack(self.clock, intuit=intuit, api_port=port, public_host="localhost")
        self.front = HttpFront(self.stack)
        self.control_port = control_port
        # The QBO tile's demo page plays the product at its own origin, which the stack's ProductOrigin names:
        # the tile's reads are allowed from there (CORS) and the reconnect window reports back to it.
        self.tile_demo: TileDemo | None = None
        self.tile_port = tile_port
        self.stack.parameters = {"ProductOrigin": f"http://127.0.0.1:{self.tile_port}"}
        self.lambdas: LocalLambda | None = None
        self.production: ProductionSchedule | None = None
        self.stopping = threading.Event()
        self._time_lock = threading.Lock()  # one mover of the clock at a time: the loop or an advance
        self._control: BaseWSGIServer | None = None

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def intuit(self) -> IntuitTarget:
        return self.stack.intuit_target

    def start(self) -> None:
        self.stack.start()
        try:
            self.front.start()
            self._control = make_server("127.0.0.1", self.control_port, self._wsgi, threaded=True)
        except OSError as error:
            self.stop()
            raise LocalError(f"{error}: choose other ports (make local LOCAL_PORT=...)") from None
        threading.Thread(target=self._control.serve_forever, name="local-control", daemon=True).start()
        self.lambdas = LocalLambda(self.stack)
        self.production = ProductionSchedule(self.lambdas)
        try:
            self.tile_demo = TileDemo(self.front.base_url, self.api_client(), port=self.tile_port).start()
        except OSError as error:
            self.stop()
            raise LocalError(f"{error}: choose other ports (make local LOCAL_PORT=...)") from None

    def tile_demo_url(self) -> str | None:
        """The QBO tile's demo page for the broken connection (docs/tile.md)."""
        broken = next((seeded for seeded in SEEDS if seeded.broken), None)
        if self.tile_demo is None or broken is None or not self.intuit.is_simulator:
            return None
        return self.tile_demo.url_for(broken.connection_id)

    def stop(self) -> None:
        self.stopping.set()
        with self._time_lock:  # let a running advance finish its invocation
            if self._control is not None:
                self._control.shutdown()
                self._control.server_close()
            self.front.stop()
            if self.tile_demo is not None:
                self.tile_demo.stop()
            if self.lambdas is not None:
                self.lambdas.close()
            self.stack.stop()

    # ------------------------------------------------------------------ time

    def play_until(self, end: datetime) -> None:
        """Production's schedules up to ``end``, a day at a time so Ctrl-C never waits long."""
        assert self.production is not None
        while not self.stopping.is_set():
            with self._time_lock:
                step = min(end, self.clock.now() + timedelta(days=1))
                self.production.run_until(step)
            if step >= end:
                return

    def follow_the_real_clock(self) -> None:
        with self._time_lock:
            if not self.stopping.is_set() and self.production is not None:
                self.production.run_until(datetime.now(UTC))

    # ------------------------------------------------------------------ control server

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        status, body = self._control_answer(request)
        response = Response(json.dumps(body), status=status, content_type="application/json")
        return response(environ, start_response)

    def _control_answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        mode = "simulated" if self.simulated else "real"
        if request.path == "/clock" and request.method == "GET":
            return 200, {"now": self.clock.now().isoformat(), "mode": mode}
        if request.path == "/clock/advance" and request.method == "POST":
            if not self.simulated:
                return 409, {"error": "the clock follows the real date; start `make local` with --simulated"}
            try:
                asked = json.loads(request.get_data() or b"{}")
                step = timedelta(days=float(asked.get("days", 0)), hours=float(asked.get("hours", 0)))
            except (ValueError, TypeError, AttributeError):
                return 400, {"error": 'send {"days": N} or {"hours": N}'}
            if not timedelta(0) < step <= MAX_ADVANCE:
                return 400, {"error": f"advance by more than nothing and at most {MAX_ADVANCE.days} days"}
            self.play_until(self.clock.now() + step)
            return 200, {"now": self.clock.now().isoformat(), "mode": mode}
        return 404, {"error": "GET /clock, POST /clock/advance"}

    # ------------------------------------------------------------------ seeding

    def seed(self) -> dict[str, str]:
        """The simulator's companies and their connections; returns connection id -> the admin who can fix it."""
        control = self.stack.intuit.control
        fixers: dict[str, str] = {}
        for seeded in SEEDS:
            others = ((NEW_ADMIN, True),) if seeded.broken else ()
            made = seed_connection(
                self.stack,
                seeded.connection_id,
                tenant_id="local-firm",
                refreshed_days_ago=1,
                contacts=(f"owner@{seeded.connection_id}.example",),
                company_name=seeded.company,
                other_users=others,
            )
            if seeded.broken:
                control.set_admin(made.realm_id, made.user_id, False)  # 3100 on CompanyInfo from now on
                fixers[seeded.connection_id] = NEW_ADMIN
        return fixers

    def api_client(self) -> QboHealthClient:
        return QboHealthClient(
            self.front.base_url, region=REGION, credentials=Credentials("testing", "testing", "testing")
        )

    def connections(self) -> list[Connection]:
        store = wiring.connection_store()
        return [store.get(seeded.connection_id) for seeded in SEEDS]

    def exports(self) -> list[str]:
        lines = [
            f"export {name}={shlex.quote(value)}"
            for name, value in sorted(self.stack.environment.items())
            if value and name not in _NOT_EXPORTED and not name.startswith(_NOT_EXPORTED_PREFIXES)
        ]
        return [*lines, f"export QBO_HEALTH_CLOCK_URL={self.control_url}/clock", "export PYTHONPATH=shared:."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make local", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the API's port (default {DEFAULT_PORT})"
    )
    parser.add_argument("--control-port", type=int, help="the stack's clock and control (default: PORT + 1)")
    parser.add_argument("--tile-port", type=int, help="the QBO tile's demo page (default: PORT + 2)")
    parser.add_argument("--simulated", action="store_true", help="a simulated clock, moved by /clock/advance")
    args = parser.parse_args(argv)
    try:
        target = intuit_target(os.environ)
        if args.simulated and not target.is_simulator:
            raise LocalError("--simulated needs the simulator: Intuit's sandbox lives on the real date")
        local = LocalStack(
            port=args.port,
            control_port=args.control_port or args.port + 1,
            tile_port=args.tile_port or args.port + 2,
            simulated=args.simulated,
            intuit=target,
        )
    except LocalError as error:
        print(f"make local: {error}", file=sys.stderr)
        return 2
    stop_on = (signal.SIGINT, signal.SIGTERM)
    for signum in stop_on:  # Ctrl-C ends the loop below; the stack then stops in order, without a traceback
        signal.signal(signum, lambda *_: local.stopping.set())
    print("QBO Connection Health, running locally (embedded stack: moto + Intuit simulator on loopback)")
    try:
        local.start()
    except LocalError as error:
        print(f"make local: {error}", file=sys.stderr)
        return 2
    try:
        return serve(local)
    finally:
        local.stop()
        print("Stopped: nothing left running.", flush=True)


def serve(local: LocalStack) -> int:
    if local.intuit.is_simulator:
        fixers = local.seed()
        started = time.perf_counter()
        print(
            f"  seeded {len(SEEDS)} connections; playing the last day of production's schedule ...",
            flush=True,
        )
        local.play_until(local.clock.now() + timedelta(days=1))
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
        print_simulator_session(local, fixers)
    else:
        print_sandbox_session(local)
    print_common(local)
    print("Ready. Ctrl-C stops the stack.", flush=True)
    while not local.stopping.wait(1.0):
        if not local.simulated:
            local.follow_the_real_clock()
    print("\nStopping ...", flush=True)
    return 0


def print_simulator_session(local: LocalStack, fixers: dict[str, str]) -> None:
    api = local.api_client()
    print("\nConnections (the simulator's companies)")
    for connection in local.connections():
        issue = connection.issue.type.value if connection.issue else ""
        print(
            f"  {connection.connection_id:<18} {connection.company_name or '':<18} {connection.state.value:<16} {issue}"
        )
    for connection_id, fixer in fixers.items():
        link = api.status(connection_id).reconnect_url
        print(
            f"\nReconnect link for {connection_id} (its admin lost the Admin role; the notices carry this link):"
        )
        print(f"  {link}")
        print(f"  open it in a browser, choose the user {fixer} (an admin) and press Connect: it heals.")


def print_sandbox_session(local: LocalStack) -> None:
    registered = local.api_client().register(
        tenant_id="local-firm", contacts=["you@example.com"], connection_id=SANDBOX_CONNECTION
    )
    print("\nIntuit: the sandbox (your app's development keys, from the stack's credentials secret)")
    print(f"  redirect URI your Intuit app must list: {local.stack.api_base_url}/oauth/callback")
    print(f"\nConnect link for {SANDBOX_CONNECTION} (single-use, for {_connect_minutes(local)} minutes):")
    print(f"  {registered.connect_url}")
    print("  open it, sign in to Intuit and choose a sandbox company. A new link, with the exports below:")
    print(
        f'  .venv/bin/python -c "from qbo_health.client import QboHealthClient as C; '
        f"print(C('{local.front.base_url}', region='{REGION}').connect_link('{SANDBOX_CONNECTION}').connect_url)\""
    )


def _connect_minutes(local: LocalStack) -> str:
    return local.stack.environment.get("CONNECT_LINK_MINUTES", "15")


def print_common(local: LocalStack) -> None:
    now = local.clock.now().strftime("%Y-%m-%d %H:%M UTC")
    if local.simulated:
        clock = f"{now}, simulated: it moves only when told (below)"
    else:
        clock = f"{now}, the real date (production's schedules run on it: a check an hour, the escalator)"
    print(f"\nClock: {clock}")
    print(f"API: {local.front.base_url}")
    print("  internal routes want SigV4 (service execute-api, region us-east-1) with the local credentials:")
    print("  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing")
    tile = local.tile_demo_url()
    if tile is not None:
        print("Tile demo page (the QBO tile, as the product embeds it):")
        print(f"  {tile}")
    print(f"Stack clock: {local.control_url}/clock")
    if local.simulated:
        print(
            f"  move it (plays production's schedules meanwhile): curl -X POST {local.control_url}/clock/advance -d '{{\"days\": 1}}'"
        )
    print("\nThe ops CLI beside the stack: paste these in another shell at the repository's root")
    for line in local.exports():
        print(f"  {line}")
    print("  .venv/bin/python -m qbo_health.ops list")
    print()


if __name__ == "__main__":
    sys.exit(main())
