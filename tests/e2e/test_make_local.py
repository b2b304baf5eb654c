"""`make local` as a user runs it: its entry point in a subprocess on free ports, read from its printout.

Nothing waits on the machine's speed: each step waits for a printed line or an HTTP answer, under generous
timeouts. The first test runs the simulator on a simulated clock (far from the system's date, so an ops CLI
that read the system clock would show it); the second runs against Intuit's sandbox, with the simulator
posing as the sandbox through the same settings a developer uses (their keys, a registered redirect URI).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from botocore.credentials import Credentials

from local.intuit_sim import IntuitSimulator
from local.serve import NEW_ADMIN, SANDBOX_CONNECTION
from local.stack import free_port
from qbo_health.client import QboHealthClient
from qbo_health.clock import SystemClock

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 180  # start-up plays a simulated day: seconds on a laptop, generous for a loaded CI machine
STOP_SECONDS = 60


@dataclass
class LocalRun:
    """The running `make local` entry point and what it printed."""

    process: subprocess.Popen[str]
    port: int
    control_port: int
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def read_until(self, prefix: str, timeout: float = READY_SECONDS) -> str:
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                lines = "\n".join(self.lines)
                raise AssertionError(f"no line starting {prefix!r} in {timeout} s:\n{lines}") from None
            if line is None:
                raise AssertionError(f"make local ended before {prefix!r}:\n" + "\n".join(self.lines))
            if line.startswith(prefix):
                return line

    def value_after(self, prefix: str) -> str:
        return next(line[len(prefix) :].strip() for line in self.lines if line.startswith(prefix))

    def line_after(self, prefix: str) -> str:
        index = next(number for number, line in enumerate(self.lines) if line.startswith(prefix))
        return self.lines[index + 1].strip()

    def exports(self) -> dict[str, str]:
        found = {}
        for line in self.lines:
            if line.strip().startswith("export "):
                name, _, value = line.strip()[len("export ") :].partition("=")
                found[name] = shlex.split(value)[0] if value else ""
        return found

    def api(self) -> QboHealthClient:
        return QboHealthClient(
            self.value_after("API:"),
            region="us-east-1",
            credentials=Credentials("testing", "testing", "testing"),
        )

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_SECONDS)


def _clean_environment(**extra: str) -> dict[str, str]:
    """Only what a shell gives: none of this test session's stack settings leak into the subprocess."""
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {**kept, "PYTHONPATH": "shared:.", "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture
def start_local(tmp_path: Path) -> Iterator:
    runs: list[LocalRun] = []

    def start(*args: str, port: int | None = None, **environment: str) -> LocalRun:
        port, control_port = port or free_port(), free_port()
        stderr = (tmp_path / f"stderr-{len(runs)}.txt").open("w")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "local.serve",
                "--port",
                str(port),
                "--control-port",
                str(control_port),
                "--tile-port",
                str(free_port()),
                *args,
            ],
            cwd=ROOT,
            env=_clean_environment(**environment),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        run = LocalRun(process, port, control_port)

        def pump() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                run.lines.append(raw.rstrip("\n"))
                run._queue.put(raw.rstrip("\n"))
            run._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()
        runs.append(run)
        return run

    yield start
    for run in runs:  # a failed test still leaves nothing running
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(timeout=STOP_SECONDS)


def _ops(run: LocalRun, *argv: str, env: dict[str, str] | None = None) -> str:
    answer = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "qbo_health.ops", *argv],
        cwd=ROOT,
        env=_clean_environment(**(run.exports() if env is None else env)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def _days_left(listing: str, connection_id: str) -> int:
    header, _, *rows = listing.splitlines()
    column = header.index("DAYS LEFT")
    row = next(row for row in rows if row.startswith(connection_id))
    return int(row[column : column + len("DAYS LEFT")].strip())


def _assert_stopped_cleanly(run: LocalRun, tmp_path: Path) -> None:
    assert run.stop() == 0
    run.read_until("Stopped", timeout=STOP_SECONDS)
    errors = "".join(path.read_text() for path in tmp_path.glob("stderr-*.txt"))
    assert "Traceback" not in errors, errors


def test_make_local_serves_a_broken_connection_ops_on_its_clock_and_a_live_reconnect_link(
    start_local, page, tmp_path
):
    run = start_local("--simulated")
    run.read_until("Ready.")

    # The API, signed with the printed local credentials.
    api = run.api()
    broken = api.status("harbor-cafe")
    assert broken.state == "NEEDS_ATTENTION" and broken.issue == "ADMIN_ACCESS_LOST"
    assert api.status("acme-books").state == "HEALTHY"
    link = run.line_after("Reconnect link for harbor-cafe")
    assert link == broken.reconnect_url

    # The ops CLI with the printed exports runs on the stack's simulated date, not the system's.
    clock_url = run.exports()["QBO_HEALTH_CLOCK_URL"]
    stack_now = datetime.fromisoformat(requests.get(clock_url, timeout=30).json()["now"])
    assert abs((stack_now - datetime.now(UTC)).days) > 30  # so a CLI on the system date would be way off
    listing = _ops(run, "list", "--issue", "ADMIN_ACCESS_LOST")
    assert _days_left(listing, "harbor-cafe") == broken.days_left == 14
    on_system_date = {name: value for name, value in run.exports().items() if name != "QBO_HEALTH_CLOCK_URL"}
    assert (
        _days_left(_ops(run, "list", "--issue", "ADMIN_ACCESS_LOST", env=on_system_date), "harbor-cafe") == 0
    )
    dry_run = _ops(run, "escalate", "--dry-run")
    assert re.search(r"checks fresh\s+yes", dry_run)
    assert re.search(rf"dry run at\s+{stack_now:%Y-%m-%d}", dry_run)

    # Two simulated days later (production's schedules play them): two days fewer, checks still fresh.
    moved = requests.post(f"http://127.0.0.1:{run.control_port}/clock/advance", json={"days": 2}, timeout=120)
    assert moved.status_code == 200, moved.text
    assert _days_left(_ops(run, "list", "--issue", "ADMIN_ACCESS_LOST"), "harbor-cafe") == 12
    assert re.search(r"checks fresh\s+yes", _ops(run, "escalate", "--dry-run"))

    # The printed tile demo page shows the QBO tile as the product embeds it: the problem and its days left.
    page.goto(run.line_after("Tile demo page"))
    tile = page.locator("qbo-connection-tile")
    tile.get_by_role("heading", name="Updates are not syncing with QBO").wait_for()
    assert "Harbor Cafe" in tile.locator("section").inner_text()
    assert "12 days left" in tile.locator("section").inner_text()

    # The printed link is live: Intuit's consent page (the simulator), another admin connects, it heals.
    page.goto(link)
    page.wait_for_selector("#connect")
    admin = page.locator("#user option", has_text=NEW_ADMIN)
    page.select_option("#company", admin.get_attribute("data-realm-id"))
    page.select_option("#user", admin.get_attribute("value"))
    page.click("#connect")
    page.wait_for_selector("main#connected")
    healed = api.status("harbor-cafe")
    assert healed.state == "HEALTHY" and healed.issue is None

    _assert_stopped_cleanly(run, tmp_path)


@pytest.fixture
def sandbox_stand_in() -> Iterator[IntuitSimulator]:
    """The simulator posing as Intuit's sandbox, on the real date like the sandbox."""
    simulator = IntuitSimulator(clock=SystemClock())
    simulator.start()
    yield simulator
    simulator.stop()


def test_make_local_connects_a_sandbox_company_with_the_developers_own_keys(
    start_local, sandbox_stand_in, page, tmp_path
):
    control = sandbox_stand_in.control
    client_id, client_secret = "ABdevelopersOwnClientId", "developers-own-client-secret-0123456789"
    port = free_port()
    control.register_app(client_id, client_secret, [f"http://localhost:{port}/oauth/callback"])
    realm = control.create_company(name="Sandbox Company_US_1")
    control.add_user(realm, email="developer@example.com", admin=True)

    run = start_local(
        port=port,  # fixed, as the redirect URI registered at Intuit names it
        INTUIT_ENVIRONMENT="sandbox",
        INTUIT_CLIENT_ID=client_id,
        INTUIT_CLIENT_SECRET=client_secret,
        INTUIT_BASE_URL=sandbox_stand_in.base_url,
    )
    run.read_until("Ready.")

    printed = "\n".join(run.lines)
    assert client_secret not in printed
    assert f"http://localhost:{port}/oauth/callback" in printed
    assert "INTUIT_CLIENT_SECRET" not in run.exports()
    assert datetime.fromisoformat(run.value_after("Clock:")[:16].replace(" ", "T") + "+00:00").date() == (
        datetime.now(UTC).date()
    )
    assert run.api().status(SANDBOX_CONNECTION).state == "PENDING"

    page.goto(run.line_after(f"Connect link for {SANDBOX_CONNECTION}"))
    page.wait_for_selector("#connect")  # the stand-in's consent page: the configured authorize endpoint
    page.click("#connect")
    page.wait_for_selector("main#connected")

    status = run.api().status(SANDBOX_CONNECTION)
    assert status.state == "HEALTHY" and status.company_name == "Sandbox Company_US_1"
    (grant,) = control.grants_of(realm)
    assert grant["client_id"] == client_id  # the developer's app, its keys read from the stack's secret
    _assert_stopped_cleanly(run, tmp_path)
