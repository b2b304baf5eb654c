"""The ops CLI: list, show, check, hold/release, escalate --dry-run, redrive-dlq, export-csv, budget,
preview-notice.

It reads the environment the functions read (table names, queue URL, region; ``AWS_ENDPOINT_URL`` points
boto3 and PynamoDB at moto locally) and builds its collaborators with :mod:`qbo_health.wiring`, so one code
path serves AWS and the embedded stack. Commands only call services and adapters and shape their output.

Exit codes: 0 ok, 1 the operation failed, 2 usage error or unknown connection.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from qbo_health import clock, wiring
from qbo_health.domain.model import Connection, ConnectionState, IssueType
from qbo_health.domain.notices import NoticeKind
from qbo_health.domain.probe_budget import (
    Need,
    early_burn,
    evidence_of,
    hourly_allowance,
    projection,
    rank,
    remaining,
)
from qbo_health.errors import ConnectionBusy, ConnectionNotFound, QboHealthError
from qbo_health.i18n import SOURCE_LOCALE, SUPPORTED_LOCALES
from qbo_health.messages import CheckRequest
from qbo_health.observability import SERVICE, metrics
from qbo_health.ops import views
from qbo_health.ops.dead_letters import dead_letter_queue_url, redrive
from qbo_health.ops.preview import SAMPLE_COMPANY, sample_notice, write_preview
from qbo_health.ops.progress import Progress
from qbo_health.ops.table import Cell, format_fields, format_table, one_line
from qbo_health.service.connections import set_hold
from qbo_health.service.escalation import run_escalation
from qbo_health.service.health_check import check_connection

OK, FAILED, USAGE = 0, 1, 2
DEFAULT_SEGMENTS = 4


class UsageError(Exception):
    """The command line asks for something the CLI does not do (exit 2)."""


@dataclass(frozen=True)
class Context:
    out: TextIO
    err: TextIO
    now: datetime


Command = Callable[[argparse.Namespace, Context], int]


def main(
    argv: list[str] | None = None,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    now: datetime | None = None,
) -> int:
    parser = _parser()
    try:
        with redirect_stdout(out), redirect_stderr(err):  # argparse's help and usage errors go there too
            args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else USAGE
    command: Command = args.command
    context = Context(out, err, now or clock.now())
    try:
        return command(args, context)
    except (ConnectionNotFound, UsageError) as error:
        err.write(f"{error}\n")
        return USAGE
    except (QboHealthError, BotoCoreError, ClientError, PynamoDBException) as error:
        err.write(f"error: {error}\n")
        return FAILED


CLOCK_URL_VARIABLE = "QBO_HEALTH_CLOCK_URL"


def run() -> int:
    """The process entry point: service logs go to stderr (stdout carries tables and CSV)."""
    _logs_to_stderr()
    try:
        _use_stack_clock(os.environ.get(CLOCK_URL_VARIABLE, ""))
    except UsageError as error:
        sys.stderr.write(f"{error}\n")
        return FAILED
    return main()


def _use_stack_clock(url: str) -> None:
    """Beside the embedded stack (`make local` prints the export lines), take the stack's time, which may be
    simulated, instead of the system's: ``GET`` on ``url`` answers ``{"now": ISO 8601}``. On AWS it is unset."""
    if not url:
        return
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (a loopback URL the user set)
            moment = datetime.fromisoformat(json.loads(answer.read())["now"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"{CLOCK_URL_VARIABLE}={url} did not give the local stack's time ({error}): is `make local` running?"
        ) from None
    clock.install(clock.OffsetClock.at(moment))


def _logs_to_stderr() -> None:
    service_logger = logging.getLogger(SERVICE)
    if "POWERTOOLS_LOG_LEVEL" not in os.environ and "LOG_LEVEL" not in os.environ:
        service_logger.setLevel(logging.WARNING)
    for handler in service_logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


# --- commands ------------------------------------------------------------------------------------------------


def list_connections(args: argparse.Namespace, ctx: Context) -> int:
    store = wiring.connection_store()
    progress = Progress(ctx.err, "scanned")
    if args.issue is not None:
        # An issue means an open issue: the sparse index has exactly those, no full scan needed.
        found = list(store.open_issues())
        scanned = len(found)
    else:
        found, scanned = _scan(args.segments, progress)

    def wanted(connection: Connection) -> bool:
        if args.state is not None and connection.state is not args.state:
            return False
        return args.issue is None or (connection.issue is not None and connection.issue.type is args.issue)

    matching = views.sort_for_display([c for c in found if wanted(c)])
    shown = matching if args.limit is None else matching[: args.limit]
    shown = [store.complete(connection) for connection in shown]  # their company names (the profile)
    progress.finish(scanned, f", {len(matching)} matching, {len(shown)} shown")
    if not shown:
        ctx.out.write("no connections match\n")
        return OK
    ctx.out.write(format_table(views.LIST_HEADERS, [views.list_row(c, ctx.now) for c in shown]))
    return OK


def _scan(segments: int, progress: Progress) -> tuple[list[Connection], int]:
    """Every connection, read with ``segments`` parallel scan segments."""
    store = wiring.connection_store()
    lock = threading.Lock()
    found: list[Connection] = []

    def read(segment: int) -> None:
        for connection in store.scan_segment(segment, segments):
            with lock:
                found.append(connection)
                progress.update(len(found))

    with ThreadPoolExecutor(max_workers=segments) as pool:
        for future in [pool.submit(read, segment) for segment in range(segments)]:
            future.result()
    return found, len(found)


def show_connection(args: argparse.Namespace, ctx: Context) -> int:
    connection = wiring.connection_store().get(args.connection_id)
    fields = views.connection_fields(connection, ctx.now)
    suppressed = wiring.suppression_store().suppressed(connection.contacts) if connection.contacts else {}
    fields += views.suppressed_fields(connection.contacts, suppressed)
    ctx.out.write(format_fields(fields))
    entries = wiring.history_log().entries(args.connection_id)
    ctx.out.write(f"\nhistory ({len(entries)} entries)\n")
    if entries:
        ctx.out.write(format_table(("TIME", "KIND", "DETAIL"), views.history_rows(entries), max_width=120))
    return OK


def check_now(args: argparse.Namespace, ctx: Context) -> int:
    before = wiring.connection_store().get(args.connection_id)
    request = CheckRequest(connection_id=args.connection_id, reason="on_demand")
    result = check_connection(request, wiring.check_deps(), ctx.now)
    pairs: list[tuple[str, Cell]] = [("connection", result.connection_id), ("status", result.status)]
    if result.skipped_because:
        pairs.append(("skipped because", result.skipped_because))
    if result.outcome is not None:
        pairs += [
            ("outcome", result.outcome.kind.value),
            ("issue", result.outcome.issue.value if result.outcome.issue else None),
            ("reason", result.outcome.reason),
            ("probed", "yes" if result.outcome.probed else "no"),
            ("intuit_tid", result.outcome.intuit_tid),
        ]
    pairs.append(("refreshed", "yes" if result.refreshed else "no"))
    if result.transition is not None:
        after = result.transition.connection
        pairs.append(("state", f"{before.state.value} -> {after.state.value}"))
        pairs.append(("events", ", ".join(event.kind.value for event in result.transition.events) or None))
        if result.transition.recheck_after is not None:
            minutes = int(result.transition.recheck_after.total_seconds() // 60)
            pairs.append(("re-check", f"queued in {minutes} min"))
    ctx.out.write(format_fields(pairs))
    if result.status == "busy":
        ctx.err.write("busy: another check holds the connection's lease; a check was queued for later\n")
        return FAILED
    return OK


def hold(args: argparse.Namespace, ctx: Context) -> int:
    return _set_hold(args.connection_id, True, ctx)


def release(args: argparse.Namespace, ctx: Context) -> int:
    return _set_hold(args.connection_id, False, ctx)


def _set_hold(connection_id: str, on_hold: bool, ctx: Context) -> int:
    before = wiring.connection_store().get(connection_id)
    try:
        set_hold(connection_id, on_hold, wiring.api_deps(), ctx.now)
    except ConnectionBusy as error:
        ctx.err.write(f"error: {error.message}\n")
        return FAILED
    if before.on_hold == on_hold:
        ctx.out.write(f"{connection_id}: {'already on hold' if on_hold else 'not on hold'}\n")
    elif on_hold:
        ctx.out.write(f"{connection_id}: on hold (the escalator sends nothing and disconnects nothing)\n")
    else:
        ctx.out.write(f"{connection_id}: hold released (escalation resumes at its next run)\n")
    return OK


def unsuppress(args: argparse.Namespace, ctx: Context) -> int:
    """Lift an address's suppression (a hard bounce or a complaint): the next notice e-mails it again."""
    address = one_line(args.email)
    lifted = wiring.suppression_store().lift(args.email)
    if lifted is None:
        ctx.out.write(f"{address}: not suppressed (nothing to do)\n")
        return OK
    since = lifted.at.isoformat(timespec="minutes")
    ctx.out.write(f"{address}: e-mails resume (suppressed since {since} for {lifted.reason.value})\n")
    return OK


def escalate(args: argparse.Namespace, ctx: Context) -> int:
    if not args.dry_run:
        raise UsageError("escalate runs only with --dry-run: the escalator itself runs hourly on AWS")
    deps = wiring.escalation_deps()
    dry = replace(deps, dry_run=True, notices=replace(deps.notices, dry_run=True))
    try:
        summary = run_escalation(dry, ctx.now)
    finally:
        metrics.clear_metrics()  # a dry run from a terminal is not a run: it publishes nothing
    ctx.out.write(
        format_fields(
            [
                ("dry run at", views.iso(ctx.now)),
                ("open issues", summary.open_issues),
                ("paused (suspected outage)", "yes" if summary.paused else "no"),
                ("checks fresh", "yes" if summary.checks_fresh else "no"),
                ("blocked", ", ".join(f"{k}={v}" for k, v in sorted(summary.blocked.items())) or None),
            ]
        )
    )
    if summary.would:
        ctx.out.write(f"\nwould do ({len(summary.would)}):\n")
        ctx.out.write("".join(f"  {line}\n" for line in summary.would))
    else:
        ctx.out.write("\nwould do nothing\n")
    ctx.out.write("nothing was sent or saved\n")
    return OK


def redrive_dlq(args: argparse.Namespace, ctx: Context) -> int:
    sqs = wiring.aws_client("sqs")
    queue_url = wiring.check_settings().check_queue_url
    dlq_url = dead_letter_queue_url(sqs, queue_url)
    progress = Progress(ctx.err, "moved")
    result = redrive(sqs, dlq_url, queue_url, max_messages=args.max, on_progress=progress.update)
    progress.finish(result.moved)
    ctx.out.write(
        f"moved {result.moved} message(s) from {_queue_name(dlq_url)} to {_queue_name(queue_url)}\n"
    )
    if result.failed:
        ctx.err.write(f"error: the check queue refused {result.failed} message(s); they stay in the DLQ\n")
        return FAILED
    return OK


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def export_csv(args: argparse.Namespace, ctx: Context) -> int:
    store = wiring.connection_store()
    connections = views.sort_for_display([store.complete(c) for c in store.open_issues()])
    rows = [views.csv_row(connection, ctx.now) for connection in connections if connection.issue]
    with _output(args.output, ctx.out) as stream:
        writer = csv.writer(stream)
        writer.writerow(views.CSV_HEADERS)
        writer.writerows(rows)
    if args.output is not None:
        ctx.err.write(f"wrote {len(rows)} connection(s) needing attention to {args.output}\n")
    return OK


def budget(args: argparse.Namespace, ctx: Context) -> int:
    """The month's metered calls: month to date, projection, and who waits longest for evidence."""
    policy = wiring.budget_policy(wiring.check_settings())
    state = wiring.meter_store().state(ctx.now)
    share = 100.0 * state.spent / policy.monthly_budget if policy.monthly_budget else 0.0
    ctx.out.write(
        format_fields(
            [
                ("month", state.month),
                ("budget", policy.monthly_budget),
                ("month to date", f"{state.spent} ({share:.1f}%)"),
                ("left", remaining(state, policy)),
                ("this hour's allowance", hourly_allowance(state, ctx.now, policy)),
                ("projection", projection(state, ctx.now, policy)),
                ("early burn (80% before day 24)", "yes" if early_burn(state, ctx.now, policy) else "no"),
                ("metering refusal", views.iso(state.refused_at) if state.refused_at else None),
            ]
        )
    )
    found, _ = _scan(args.segments, Progress(ctx.err, "scanned"))
    waiting = []
    for connection in found:
        evidence = evidence_of(connection)
        need = rank(evidence, ctx.now, policy)
        if need.need is Need.NONE:
            continue
        seen = evidence.evidence_at
        hours = (ctx.now - seen).total_seconds() / 3600 if seen else None
        waiting.append((need, hours, connection, seen))
    waiting.sort(
        key=lambda entry: (-(entry[1] if entry[1] is not None else float("inf")), entry[2].connection_id)
    )
    ctx.out.write(f"\nwaiting longest for evidence ({len(waiting)} want a probe, {args.limit} shown):\n")
    rows: list[list[Cell]] = [
        [
            connection.connection_id,
            connection.state.value,
            need.need.name,
            views.iso(seen) if seen else "never",
            round(hours / 24, 1) if hours is not None else None,
            round(need.score),
        ]
        for need, hours, connection, seen in waiting[: args.limit]
    ]
    if rows:
        headers = ("CONNECTION", "STATE", "NEED", "LAST EVIDENCE", "DAYS", "PRIORITY")
        ctx.out.write(format_table(headers, rows))
    return 0


def preview_notice(args: argparse.Namespace, ctx: Context) -> int:
    notice = sample_notice(args.kind, args.issue, args.locale, wiring.brand(), ctx.now, company=args.company)
    preview = write_preview(notice, args.output)
    ctx.out.write(f"subject: {preview.email.subject}\n{preview.html_path}\n{preview.text_path}\n")
    return OK


@contextmanager
def _output(path: Path | None, default: TextIO) -> Iterator[TextIO]:
    if path is None:
        yield default
        return
    with path.open("w", newline="", encoding="utf-8") as stream:
        yield stream


# --- arguments -----------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _enum_of(kind: type[ConnectionState] | type[IssueType] | type[NoticeKind]) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return kind(text.upper())
        except ValueError:
            choices = ", ".join(member.value for member in kind)
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {choices}") from None

    parse.__name__ = kind.__name__
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qbo_health.ops",
        description="Operate QBO Connection Health: inspect connections, check, hold, dry-run, re-drive.",
        epilog="Reads the functions' environment (CONNECTIONS_TABLE, CHECK_QUEUE_URL, AWS_REGION, ...).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="connections by state and issue, as a table")
    listing.add_argument("--state", type=_enum_of(ConnectionState), help="HEALTHY, NEEDS_ATTENTION, ...")
    listing.add_argument("--issue", type=_enum_of(IssueType), help="ADMIN_ACCESS_LOST, ...")
    listing.add_argument("--limit", type=_positive, help="show at most N (most urgent first)")
    listing.add_argument(
        "--segments", type=_positive, default=DEFAULT_SEGMENTS, help="parallel scan segments (default 4)"
    )
    listing.set_defaults(command=list_connections)

    show = commands.add_parser("show", help="one connection: its fields, issue wording and history")
    show.add_argument("connection_id", metavar="ID")
    show.set_defaults(command=show_connection)

    check = commands.add_parser("check", help="check one connection now (the worker's code)")
    check.add_argument("connection_id", metavar="ID")
    check.set_defaults(command=check_now)

    hold_parser = commands.add_parser("hold", help="hold escalation for one connection")
    hold_parser.add_argument("connection_id", metavar="ID")
    hold_parser.set_defaults(command=hold)

    release_parser = commands.add_parser("release", help="release a hold")
    release_parser.add_argument("connection_id", metavar="ID")
    release_parser.set_defaults(command=release)

    escalate_parser = commands.add_parser("escalate", help="what the escalator would do now (--dry-run)")
    escalate_parser.add_argument("--dry-run", action="store_true", help="required: never sends anything")
    escalate_parser.set_defaults(command=escalate)

    redrive_parser = commands.add_parser("redrive-dlq", help="move check messages from the DLQ back")
    redrive_parser.add_argument("--max", type=_positive, help="move at most N messages (default: all)")
    redrive_parser.set_defaults(command=redrive_dlq)

    budget_parser = commands.add_parser(
        "budget", help="metered calls: month to date, projection, connections waiting longest for evidence"
    )
    budget_parser.add_argument("--limit", type=_positive, default=20, help="connections listed (20)")
    budget_parser.add_argument("--segments", type=_positive, default=DEFAULT_SEGMENTS, help="scan segments")
    budget_parser.set_defaults(command=budget)

    unsuppress_parser = commands.add_parser(
        "unsuppress", help="e-mail an address again that a bounce or complaint suppressed"
    )
    unsuppress_parser.add_argument("email", metavar="EMAIL")
    unsuppress_parser.set_defaults(command=unsuppress)

    export = commands.add_parser("export-csv", help="CSV of connections needing attention")
    export.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    export.set_defaults(command=export_csv)

    preview = commands.add_parser("preview-notice", help="write a notice's HTML and text (sends nothing)")
    preview.add_argument("--kind", type=_enum_of(NoticeKind), default=NoticeKind.NOTICE, help="NOTICE, ...")
    preview.add_argument(
        "--issue",
        type=_enum_of(IssueType),
        default=IssueType.ADMIN_ACCESS_LOST,
        help="ADMIN_ACCESS_LOST, ...",
    )
    preview.add_argument("--locale", choices=SUPPORTED_LOCALES, default=SOURCE_LOCALE)
    preview.add_argument("--company", default=SAMPLE_COMPANY, help="the QuickBooks company's name")
    preview.add_argument(
        "--output", type=Path, default=Path("notice-preview"), metavar="DIR", help="(default: notice-preview)"
    )
    preview.set_defaults(command=preview_notice)
    return parser
