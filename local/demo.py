"""`make demo`: the daily health check on the embedded stack, end to end, with a summary table.

Starts moto and the Intuit simulator on loopback, seeds a few hundred connections (most healthy; some whose
admin was removed, some suspended, a few whose subscription ended, some idle for 99 days, one whose app the
user disconnected), and plays one simulated day of production's schedules from template.yaml: the scheduler
every hour sends the connections whose slot is due, the worker drains the queue as messages fall due
(confirming re-checks a quarter of an hour later), the escalator runs every hour. Then prints what happened.
Exits 0 and leaves nothing running.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the demo prints its own summary

import requests

from local.http_front import HttpFront
from local.production import Invocation, ProductionSchedule  # imported after the log level is set
from local.runner import LocalLambda
from local.scenario import emails_sent
from local.seed import seed_connection
from local.stack import EmbeddedStack
from local.timeline import Timeline, format_table
from qbo_health import wiring
from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import Connection, ConnectionState, IssueType
from qbo_health.ops.progress import Progress

# Where the demo leaves the e-mails it sent (DEMO_EMAILS overrides).
EMAILS_DIR = Path(os.environ.get("DEMO_EMAILS", "demo-emails")).resolve()


@dataclass(frozen=True)
class Cohort:
    name: str
    count: int
    refreshed_days_ago: float = 1.0


COHORTS = (
    Cohort("healthy", 260),
    Cohort("admin-removed", 12),
    Cohort("suspended", 10),
    Cohort("subscription-ended", 3),
    Cohort("idle-99-days", 15, refreshed_days_ago=99),
    Cohort("app-disconnected", 1),
)


def seed(stack: EmbeddedStack) -> dict[str, str]:
    """Seed every cohort and break the broken ones at the simulator; returns connection id -> cohort."""
    cohort_of: dict[str, str] = {}
    total = sum(cohort.count for cohort in COHORTS)
    progress = Progress(sys.stderr, "  seeding connections", total=total)
    control = stack.intuit.control
    for cohort in COHORTS:
        for index in range(cohort.count):
            connection_id = f"{cohort.name}-{index:03d}"
            seeded = seed_connection(
                stack,
                connection_id,
                tenant_id=f"firm-{index % 40:02d}",
                refreshed_days_ago=cohort.refreshed_days_ago,
            )
            if cohort.name == "admin-removed":
                control.set_admin(seeded.realm_id, seeded.user_id, False)
            elif cohort.name == "suspended":
                control.suspend(seeded.realm_id)  # read-only: CompanyInfo reads SUSPENDED
            elif cohort.name == "subscription-ended":
                control.set_subscription_status(seeded.realm_id, "CANCELED")
            elif cohort.name == "app-disconnected":
                control.disconnect_app(seeded.realm_id)
            cohort_of[connection_id] = cohort.name
            progress.update(len(cohort_of))
    progress.finish(len(cohort_of))
    return cohort_of


def play_one_day(lambdas: LocalLambda) -> tuple[ProductionSchedule, float]:
    """A day of production's schedules on the simulated clock; returns the driver and the wall time taken."""
    progress = Progress(sys.stderr, "  hourly scheduler runs", total=24)
    runs: list[Invocation] = []

    def count(invocation: Invocation) -> None:
        if invocation.function == "check_scheduler":
            runs.append(invocation)
            progress.update(len(runs))

    production = ProductionSchedule(lambdas, after_invocation=count)
    started = time.perf_counter()
    production.run_for(timedelta(days=1))
    seconds = time.perf_counter() - started
    progress.finish(len(runs))
    return production, seconds


def main() -> int:
    print("QBO Connection Health demo (embedded stack: moto + Intuit simulator on loopback)\n")
    print("Part 1: the daily health check")
    stack = EmbeddedStack().start()
    try:
        cohort_of = seed(stack)
        stack.intuit.control.reset_stats()
        day_started = stack.clock.now()
        production, seconds = play_one_day(LocalLambda(stack))
        connections = [wiring.connection_store().get(connection_id) for connection_id in cohort_of]
        print_summary(stack, connections, production, day_started, seconds)
        print_idle_saved(connections, cohort_of, day_started)
        show_reconnect_link(stack, connections)
        write_emails(EMAILS_DIR / "part-1", "day")
        print("Part 2: a new fleet of 14 connections, twenty days of escalation on production's schedule")
        print("(default settings; the stack is emptied first, so part 1's connections are gone)")
        stack.reset()
        run_timeline(stack)
        write_emails(EMAILS_DIR / "part-2", "twenty-days")
        print(f"The e-mails the demo sent (HTML, as SES got them; open them in a browser): {EMAILS_DIR}")
    finally:
        stack.stop()
    print(NEXT_STEP)
    return 0


# The demo stops its stack, so the links it printed are dead by now: `make local` keeps one running.
NEXT_STEP = (
    "\nThe demo's stack has stopped, and its links with it. To try it by hand: `make local` keeps a stack\n"
    "running until Ctrl-C, with a live reconnect link to open in your browser, the API and its local\n"
    "credentials, and the export lines for the ops CLI (README, 'Try it by hand')."
)


def write_emails(folder: Path, label: str) -> None:
    """Every e-mail SES (moto) accepted so far, one HTML file each, named by order, recipient and subject."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for number, email in enumerate(emails_sent(), start=1):
        slug = re.sub(r"[^a-z0-9]+", "-", email.subject.lower()).strip("-")[:60]
        (folder / f"{label}-{number:03d}-{slug}.html").write_text(email.body, encoding="utf-8")


def show_reconnect_link(stack: EmbeddedStack, connections: list[Connection]) -> None:
    """Print a reconnect link and prove it works: the API front answers it with a redirect to Intuit."""
    broken = next(c for c in connections if c.issue and c.issue.type is IssueType.ADMIN_ACCESS_LOST)
    front = HttpFront(stack)
    front.start()
    try:
        link = wiring.link_signer().link_for(broken, stack.clock.now()).url
        answer = requests.get(link, allow_redirects=False, timeout=10)
    finally:
        front.stop()
    target = answer.headers.get("Location", "")
    works = answer.status_code == 302 and target.startswith(stack.intuit.base_url + "/connect/oauth2")
    print(f"Reconnect link for {broken.connection_id} (signed, valid 30 days; the e-mails carry it):")
    print(f"  {link}")
    print(
        f"  opened it: HTTP {answer.status_code} -> {'Intuit consent page' if works else target or 'no redirect'}\n"
    )


def run_timeline(stack: EmbeddedStack) -> None:
    """Six connections break on day 0: one customer pays on day 5, one admin is re-added on day 10, four
    are never fixed. Intuit is down on days 8 and 9: escalation pauses, so the final warning comes on day 14
    and the disconnect on day 16 instead of days 12 and 14."""
    # Default settings: far too few checks an hour for the fleet-wide outage guard; each connection's own
    # pause (Intuit not answering its checks) is what holds its escalation during the outage.
    lambdas = LocalLambda(stack)
    stack.clock.set(stack.clock.now().replace(hour=0, minute=0))
    healthy = [f"healthy-{n:02d}" for n in range(8)]
    broken = ["pays-day-5", "admin-back-day-10", "never-a", "never-b", "never-c", "never-d"]
    seeded = {name: seed_connection(stack, name, refreshed_days_ago=1) for name in healthy + broken}
    control = stack.intuit.control

    def break_them() -> None:
        control.suspend(seeded["pays-day-5"].realm_id)
        for name in ("admin-back-day-10", "never-a", "never-b"):
            control.set_admin(seeded[name].realm_id, seeded[name].user_id, False)
        control.suspend(seeded["never-c"].realm_id)
        control.disconnect_app(seeded["never-d"].realm_id)

    def intuit_back() -> None:
        control.clear_faults()
        admin = seeded["admin-back-day-10"]
        control.set_admin(admin.realm_id, admin.user_id, True)

    timeline = Timeline(lambdas, seeded)
    progress = Progress(sys.stderr, "  simulated days", total=20)
    events = {
        0: break_them,
        5: lambda: control.reactivate(seeded["pays-day-5"].realm_id),
        8: lambda: control.set_faults(rate=1.0, kinds=["503"], seed=1),
        10: intuit_back,
    }
    for day in range(20):
        timeline.run(1, events)
        progress.update(day + 1)
    progress.finish(20)
    print()
    print(format_table(timeline.days))
    print(
        "\nDays 8-9: Intuit outage (every call 503). Each broken connection's escalation stood still from the"
        " first check Intuit\nleft unanswered until it answered again ('held': escalator runs that held one"
        " back), so the final warning\nmoved from day 12 to day 14 and the disconnect from day 14 to day 16."
        " Restored notices: day 5 (payment)\nand day 10 (admin re-added).\n"
    )


def print_idle_saved(connections: list[Connection], cohort_of: dict[str, str], day_started: datetime) -> None:
    """Name the connections unused for 99 days: Intuit would have let their refresh tokens die tomorrow."""
    idle = sorted(c.connection_id for c in connections if cohort_of[c.connection_id] == "idle-99-days")
    saved = [
        c.connection_id
        for c in connections
        if c.connection_id in idle and c.tokens.refreshed_at and c.tokens.refreshed_at > day_started
    ]
    print(
        f"Idle for 99 days (Intuit lets a refresh token die after 100 days unused): {len(idle)} connections"
    )
    print(f"  refreshed today, so they live another 100 days: {len(saved)} of {len(idle)}")
    for start in range(0, len(idle), 5):
        print("  " + ", ".join(idle[start : start + 5]))
    print()


def print_summary(
    stack: EmbeddedStack,
    connections: list[Connection],
    production: ProductionSchedule,
    day_started: datetime,
    seconds: float,
) -> None:
    stats = stack.intuit.control.stats()
    states = Counter(connection.state for connection in connections)
    issues = Counter(connection.issue.type for connection in connections if connection.issue)
    refreshed = sum(1 for c in connections if c.tokens.refreshed_at and c.tokens.refreshed_at > day_started)
    checked = sum(1 for c in connections if c.last_check_at and c.last_check_at > day_started)
    transient = sum(connection.transient_failures for connection in connections)
    runs = production.of("check_scheduler")
    scheduled = sum(int(run.result["scheduled"]) for run in runs if run.result)
    notices = sum(sum(run.result["notices"].values()) for run in production.of("escalator") if run.result)
    rows = [
        ("scheduler runs (hourly, by slot)", f"{len(runs)}, {scheduled} connections sent to the queue"),
        ("connections checked", f"{checked} of {len(connections)}"),
        ("healthy", f"{states[ConnectionState.HEALTHY]}"),
        ("tokens refreshed", f"{refreshed}"),
        ("needs attention", f"{states[ConnectionState.NEEDS_ATTENTION]}"),
        ("transient failures", f"{transient}"),
        ("metered Intuit calls", f"{sum(stats['metered'].values())} (CompanyInfo)"),
        ("notices sent by the escalator", f"{notices}"),
        ("Lambda errors", f"{len(production.errors)}"),
        ("wall time for the simulated day", f"{seconds:.1f} s"),
    ]
    print("\nResult")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print("\nIssues opened (what the customer sees)")
    for issue_type in IssueType:
        if issues[issue_type]:
            guidance = guidance_for(issue_type)
            print(f"  {issue_type.value:<22} {issues[issue_type]:>4}  {guidance.user_message}")
            print(f"  {'':<22} {'':>4}  Remedy: {guidance.remedy}")
    print()


if __name__ == "__main__":
    sys.exit(main())
