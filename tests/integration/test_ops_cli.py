"""The ops CLI over the embedded stack: every command in-process, against seeded and broken connections."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from moto.ses.models import ses_backends

from local.seed import SeededConnection, seed_connection
from local.stack import ACCOUNT_ID, REGION
from qbo_health import wiring
from qbo_health.domain.issues import guidance_for
from qbo_health.domain.model import ConnectionState, IssueType
from qbo_health.messages import CheckRequest
from qbo_health.ops.cli import main
from qbo_health.service.health_check import check_connection

CONFIRM_DELAY = timedelta(minutes=15)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str


def ops(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class Fleet:
    healthy: SeededConnection
    broken: SeededConnection


@pytest.fixture
def fleet(stack, lambdas) -> Fleet:
    """Given one healthy connection and one whose admin lost access, confirmed by the 15-minute re-check."""
    healthy = seed_connection(stack, "conn-ok", tenant_id="tenant-ok")
    broken = seed_connection(stack, "conn-admin", tenant_id="tenant-admin", contacts=("a@x.test", "b@x.test"))
    stack.clock.advance(timedelta(days=1))
    stack.intuit.control.set_admin(broken.realm_id, broken.user_id, False)
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()
    assert stored("conn-admin").state is ConnectionState.NEEDS_ATTENTION
    return Fleet(healthy, broken)


def stored(connection_id):
    return wiring.connection_store().get(connection_id)


def kinds(connection_id):
    return [entry["kind"] for entry in wiring.history_log().entries(connection_id)]


def table_rows(text):
    """The rows of a table under its header and rule, split on the header's column starts."""
    lines = text.splitlines()
    header, rule, body = lines[0], lines[1], lines[2:]
    starts = [0] + [i + 2 for i in range(len(rule) - 1) if rule[i : i + 2] == "  "]
    names = [header[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {
            name: line[start:end].strip()
            for name, start, end in zip(names, starts, [*starts[1:], None], strict=True)
        }
        for line in body
    ]


# --- list ----------------------------------------------------------------------------------------------------


def test_list_shows_every_connection_in_aligned_columns_broken_first(fleet):
    result = ops("list")

    assert result.code == 0
    rows = table_rows(result.out)
    assert [row["ID"] for row in rows] == ["conn-admin", "conn-ok"]
    broken, healthy = rows
    assert broken["TENANT"] == "tenant-admin" and broken["COMPANY"] == "Company of conn-admin"
    assert broken["STATE"] == "NEEDS_ATTENTION" and broken["ISSUE"] == "ADMIN_ACCESS_LOST"
    assert broken["DAYS LEFT"] == "14"
    assert broken["LAST CHECK"] == "2026-01-06 06:15Z" and broken["LAST SUCCESS"] == "2026-01-05 06:00Z"
    assert broken["TRANSIENT"] == "0" and broken["HOLD"] == ""
    assert healthy["STATE"] == "HEALTHY" and healthy["ISSUE"] == "-" and healthy["DAYS LEFT"] == "-"
    assert "scanned: 2, 2 matching, 2 shown" in result.err


def test_list_filters_by_state_and_issue_and_limits(fleet):
    assert [row["ID"] for row in table_rows(ops("list", "--state", "healthy").out)] == ["conn-ok"]
    by_issue = ops("list", "--issue", "ADMIN_ACCESS_LOST")
    assert [row["ID"] for row in table_rows(by_issue.out)] == ["conn-admin"]
    assert ops("list", "--issue", "SUBSCRIPTION_LAPSED").out == "no connections match\n"
    limited = ops("list", "--limit", "1", "--segments", "3")
    assert [row["ID"] for row in table_rows(limited.out)] == ["conn-admin"]
    assert "2 matching, 1 shown" in limited.err


def test_list_usage_errors_exit_2(stack):
    bad_state = ops("list", "--state", "BROKEN")
    assert bad_state.code == 2 and "'BROKEN' is not one of PENDING, HEALTHY" in bad_state.err
    assert ops("list", "--limit", "0").code == 2
    assert ops().code == 2
    assert ops("frobnicate").code == 2


# --- show ----------------------------------------------------------------------------------------------------


def test_show_prints_fields_issue_wording_and_history(fleet):
    result = ops("show", "conn-admin")

    assert result.code == 0
    fields, _, history = result.out.partition("\nhistory (")
    values = dict(line.split(None, 1) if " " in line else (line, "") for line in fields.splitlines())
    guidance = guidance_for(IssueType.ADMIN_ACCESS_LOST)
    assert values["tenant_id"] == "tenant-admin"
    assert values["company_name"] == "Company of conn-admin"
    assert values["realm_id"] == fleet.broken.realm_id
    assert values["contacts"] == "a@x.test, b@x.test"
    assert values["authorized_by.email"] == fleet.broken.email
    assert values["issue.type"] == "ADMIN_ACCESS_LOST"
    assert values["issue.deadline"] == "2026-01-20T06:15:00Z"
    assert values["issue.days_left"] == "14"
    assert values["issue.user_message"] == guidance.user_message
    assert values["issue.remedy"] == guidance.remedy
    assert values["tokens.sealed"] == "present"
    assert values["on_hold"] == "no"
    assert not any("ciphertext" in name or "data_key" in name for name in values)
    assert [row["KIND"] for row in table_rows(history.split("\n", 1)[1])] == [
        "ISSUE_SUSPECTED",
        "ISSUE_OPENED",
    ]


def test_show_a_healthy_connection_has_no_issue_wording(fleet):
    result = ops("show", "conn-ok")
    assert result.code == 0
    assert "issue.user_message" not in result.out
    assert "history (0 entries)" in result.out


@pytest.mark.parametrize("command", ["show", "check", "hold", "release"])
def test_an_unknown_connection_exits_2_with_a_clear_message(stack, command):
    result = ops(command, "no-such-id")
    assert result.code == 2
    assert result.err == "connection 'no-such-id' not found\n"
    assert result.out == ""


# --- check ---------------------------------------------------------------------------------------------------


def test_check_runs_the_workers_check_now_and_closes_a_fixed_issue(stack, fleet):
    # Given the admin got their access back
    stack.intuit.control.set_admin(fleet.broken.realm_id, fleet.broken.user_id, True)

    result = ops("check", "conn-admin")

    assert result.code == 0
    assert "status      checked" in result.out
    assert "outcome     HEALTHY" in result.out
    assert "state       NEEDS_ATTENTION -> HEALTHY" in result.out
    assert "ISSUE_CLOSED" in result.out
    assert stored("conn-admin").state is ConnectionState.HEALTHY
    assert "ISSUE_CLOSED" in kinds("conn-admin")


def test_check_of_a_still_broken_connection_reports_the_problem(fleet):
    result = ops("check", "conn-admin")
    assert result.code == 0
    assert "outcome     PROBLEM" in result.out
    assert "issue       ADMIN_ACCESS_LOST" in result.out
    assert stored("conn-admin").issue is not None


# --- hold / release and the escalator's dry run --------------------------------------------------------------


def test_escalate_dry_run_prints_what_it_would_do_and_sends_nothing(stack, fleet):
    before = stored("conn-admin")
    history_before = kinds("conn-admin")

    result = ops("escalate", "--dry-run")

    assert result.code == 0
    assert "open issues                1" in result.out
    assert "conn-admin: send NOTICE" in result.out
    assert "nothing was sent or saved" in result.out
    after = stored("conn-admin")
    assert after.issue == before.issue and after.version == before.version
    assert kinds("conn-admin") == history_before
    assert _emails_sent() == 0


def test_escalate_without_dry_run_is_refused(fleet):
    result = ops("escalate")
    assert result.code == 2
    assert "--dry-run" in result.err
    assert stored("conn-admin").issue.notices == ()


def test_hold_blocks_escalation_until_released(stack, fleet):
    stack.clock.advance(timedelta(minutes=1))
    held = ops("hold", "conn-admin")
    assert held.code == 0 and "on hold" in held.out
    assert stored("conn-admin").on_hold is True
    assert "yes" in table_rows(ops("list", "--state", "NEEDS_ATTENTION").out)[0]["HOLD"]
    assert "conn-admin: blocked: HELD" in ops("escalate", "--dry-run").out
    assert "already on hold" in ops("hold", "conn-admin").out
    stack.clock.advance(timedelta(minutes=1))

    released = ops("release", "conn-admin")

    assert released.code == 0 and "hold released" in released.out
    assert stored("conn-admin").on_hold is False
    assert kinds("conn-admin")[-2:] == ["HOLD_SET", "HOLD_RELEASED"]
    assert "conn-admin: send NOTICE" in ops("escalate", "--dry-run").out
    assert "not on hold" in ops("release", "conn-admin").out


# --- redrive-dlq ---------------------------------------------------------------------------------------------


def _dlq_url(stack):
    return stack.resources["CheckDeadLetterQueue"].ref


def _depth(stack, url):
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _dead_letter(stack, connection_id, count=1):
    sqs = stack.client("sqs")
    for _ in range(count):
        body = CheckRequest(connection_id=connection_id, reason="scheduled").model_dump_json()
        sqs.send_message(QueueUrl=_dlq_url(stack), MessageBody=body)


def test_redrive_moves_dead_letters_back_to_the_check_queue_and_the_worker_checks_them(stack, lambdas):
    seed_connection(stack, "conn-1")
    stack.clock.advance(timedelta(days=1))
    _dead_letter(stack, "conn-1")

    result = ops("redrive-dlq")

    assert result.code == 0
    assert result.out == (
        "moved 1 message(s) from qbo-health-local-CheckDeadLetterQueue to qbo-health-local-CheckQueue\n"
    )
    assert "moved: 1" in result.err
    assert _depth(stack, _dlq_url(stack)) == 0
    assert lambdas.drain_checks().processed == 1
    assert stored("conn-1").last_check_at == stack.clock.now()


def test_redrive_max_moves_at_most_n_and_leaves_the_rest(stack):
    _dead_letter(stack, "conn-1", count=13)

    result = ops("redrive-dlq", "--max", "12")

    assert result.code == 0 and "moved 12 message(s)" in result.out
    assert _depth(stack, stack.resources["CheckQueue"].ref) == 12
    assert _depth(stack, _dlq_url(stack)) == 1
    bodies = _receive_all(stack, stack.resources["CheckQueue"].ref)
    assert {json.loads(body)["connection_id"] for body in bodies} == {"conn-1"}


def _receive_all(stack, url):
    sqs, bodies = stack.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [message["Body"] for message in messages]
    return bodies


# --- export-csv ----------------------------------------------------------------------------------------------


def test_export_csv_lists_connections_needing_attention(fleet):
    result = ops("export-csv")

    assert result.code == 0
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert len(rows) == 1
    row = rows[0]
    guidance = guidance_for(IssueType.ADMIN_ACCESS_LOST)
    assert row == {
        "connection_id": "conn-admin",
        "tenant_id": "tenant-admin",
        "realm_id": fleet.broken.realm_id,
        "company_name": "Company of conn-admin",
        "issue": "ADMIN_ACCESS_LOST",
        "user_message": guidance.user_message,
        "remedy": guidance.remedy,
        "opened_at": "2026-01-06T06:15:00Z",
        "deadline": "2026-01-20T06:15:00Z",
        "days_left": "14",
        "contacts": "a@x.test; b@x.test",
        "notices_sent": "",
    }


def test_export_csv_to_a_file_keeps_formulas_inert(stack, lambdas, tmp_path):
    seeded = seed_connection(stack, "conn-x", tenant_id='=HYPERLINK("http://evil")')
    stack.clock.advance(timedelta(days=1))
    stack.intuit.control.suspend(seeded.realm_id)
    lambdas.run_scheduler(all_slots=True)
    lambdas.drain_checks()
    stack.clock.advance(CONFIRM_DELAY)
    lambdas.drain_checks()
    target = tmp_path / "attention.csv"

    result = ops("export-csv", "--output", str(target))

    assert result.code == 0 and result.out == ""
    assert f"wrote 1 connection(s) needing attention to {target}" in result.err
    with target.open(newline="", encoding="utf-8") as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["issue"] == "SUBSCRIPTION_LAPSED"
    assert row["tenant_id"] == '\'=HYPERLINK("http://evil")'


def test_export_csv_with_nothing_broken_is_just_the_header(stack):
    seed_connection(stack, "conn-1")
    result = ops("export-csv")
    assert result.code == 0
    assert result.out.splitlines() == [
        "connection_id,tenant_id,realm_id,company_name,issue,user_message,remedy,opened_at,deadline,days_left,"
        "contacts,notices_sent"
    ]


# --- no secrets, and the real entry point --------------------------------------------------------------------


def test_no_token_value_appears_in_any_output(stack, fleet):
    stack.intuit.control.set_admin(fleet.broken.realm_id, fleet.broken.user_id, True)
    runs = [
        ops("list"),
        ops("show", "conn-admin"),
        ops("show", "conn-ok"),
        ops("check", "conn-ok"),
        ops("hold", "conn-admin"),
        ops("escalate", "--dry-run"),
        ops("release", "conn-admin"),
        ops("export-csv"),
        ops("check", "conn-admin"),
        ops("show", "conn-admin"),
        ops("redrive-dlq"),
    ]
    state = stack.intuit.state
    secrets = set(state.refresh_index) | set(state.access_index) | set(state.codes)
    assert secrets  # the simulator issued tokens, so the check below means something
    sealed = stored("conn-ok").sealed_tokens
    assert sealed is not None
    text = "".join(run.out + run.err for run in runs)
    assert all(run.code == 0 for run in runs)
    assert not [secret for secret in secrets if secret in text]
    assert repr(sealed.ciphertext)[2:30] not in text


def test_python_m_entry_point_runs_against_the_embedded_stack(stack, fleet):
    """The functions' environment is all it needs (a separate process, on the system clock); its logs go
    to stderr so stdout stays a clean table."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "shared"), str(REPO)]),
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }

    def python_m(*argv):
        return subprocess.run(  # noqa: S603 (our own interpreter and module, fixed arguments)
            [sys.executable, "-m", "qbo_health.ops", *argv],
            capture_output=True,
            text=True,
            env=environment,
            cwd=REPO,
            timeout=60,
            check=False,
        )

    listed = python_m("list", "--state", "NEEDS_ATTENTION")
    assert listed.returncode == 0, listed.stderr
    assert [row["ID"] for row in table_rows(listed.stdout)] == ["conn-admin"]

    dry_run = python_m("escalate", "--dry-run")
    assert dry_run.returncode == 0, dry_run.stderr
    assert "conn-admin: " in dry_run.stdout
    assert '"level"' not in dry_run.stdout and '"message":"dry run"' in dry_run.stderr
    assert python_m("show", "missing").returncode == 2


def _emails_sent():
    """Messages moto's SES recorded (the moto server runs in this process)."""
    return len(ses_backends[ACCOUNT_ID][REGION].sent_messages)


def test_list_and_show_keep_a_company_name_from_quickbooks_on_one_line_without_control_codes(stack):
    seeded = seed_connection(stack, "conn-x", company_name="Acme")
    stack.intuit.control.rename_company(seeded.realm_id, "Evil\x1b]0;owned\x07 Co")
    stack.clock.advance(timedelta(days=1))
    check_connection(CheckRequest(connection_id="conn-x"), wiring.check_deps(), stack.clock.now())

    for output in (ops("list").out, ops("show", "conn-x").out):
        assert "\x1b" not in output and "\x07" not in output
    assert table_rows(ops("list").out)[0]["COMPANY"] == "Evil]0;owned Co"


def test_preview_notice_writes_the_html_and_text_of_a_notice_in_its_language(tmp_path):
    result = ops(
        "preview-notice",
        "--kind",
        "FINAL_WARNING",
        "--issue",
        "ADMIN_ACCESS_LOST",
        "--locale",
        "fr-CA",
        "--company",
        "Acme <b>Ltée</b>",
        "--output",
        str(tmp_path),
    )

    assert result.code == 0, result.err
    html_file = tmp_path / "final_warning-admin_access_lost-fr-CA.html"
    text_file = tmp_path / "final_warning-admin_access_lost-fr-CA.txt"
    assert str(html_file) in result.out and str(text_file) in result.out
    page, text = html_file.read_text(encoding="utf-8"), text_file.read_text(encoding="utf-8")
    assert '<html lang="fr-CA">' in page and "Acme &lt;b&gt;Ltée&lt;/b&gt;" in page
    assert text.startswith("Subject: Dernier avertissement") and "Réautoriser" in text
    assert guidance_for(IssueType.ADMIN_ACCESS_LOST, "fr-CA").remedy in text
    assert ops("preview-notice", "--locale", "de-DE").code == 2
