"""Cost model: every billed line template.yaml creates, at us-east-1 list prices, without free tiers.

Fixed per deployment (keys and their rotated versions, secrets, alarms by the metrics they read, the dashboard,
the custom metric names the code can emit, the SQS event source's idle pollers, the scheduled functions'
traces) is split from the variable cost that grows with connections (Lambda requests and duration including
INIT, DynamoDB writes and reads from the item's real size, KMS calls as containers make them, SQS, EventBridge,
SES, CloudWatch Logs with Lambda's platform lines, X-Ray traces, storage and its point-in-time recovery).

The per-check inputs (requests, item size, log bytes, CPU) are measured on the embedded stack by
``python -m bench.cost_measure``; the defaults of ``Workload`` are its last figures. Intuit's latency is a
parameter: on AWS, a check's Lambda time is mostly waiting for Intuit.

    make bench-cost
    python -m bench.cost --latency-ms 300 --broken 0.01
"""

from __future__ import annotations

import argparse
import ast
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from local.template import Intrinsic, condition_holds, load_template, queue_event_sources
from qbo_health.config import CheckSettings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("shared/qbo_health", "functions")
NAMESPACE = "QboConnectionHealth"
HOURS_PER_MONTH = 730  # AWS bills monthly charges as 730 hours
DAYS_PER_MONTH = 30

# us-east-1 list prices (on-demand, no free tier), from each service's pricing page as read for this model
# on 2026-12-05 (aws.amazon.com/<service>/pricing). A price that changed is re-read there, not guessed.
PRICES: dict[str, float] = {
    # aws.amazon.com/lambda/pricing: arm64, first 7.5 billion GB-s tier; INIT is billed like the handler
    # for managed runtimes since 2025-08-01 (AWS Compute Blog, "AWS Lambda standardizes billing for INIT").
    "lambda_gb_second": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    # aws.amazon.com/dynamodb/pricing/on-demand (after the 2024-11-01 cut): per write/read request unit,
    # storage per GB-month, continuous backups (PITR) per GB-month of table size.
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    "dynamodb_storage_gb_month": 0.25,
    "dynamodb_pitr_gb_month": 0.20,
    # aws.amazon.com/sqs/pricing: standard queue, per request (each 64 KB chunk).
    "sqs_request": 0.40 / 1e6,
    # aws.amazon.com/kms/pricing: per customer managed key-month; each rotation adds $1/month for the first
    # two rotations only (pricing change of 2024-05); requests per 10,000.
    "kms_key_month": 1.00,
    "kms_rotated_version_month": 1.00,
    "kms_request": 0.03 / 1e4,
    # aws.amazon.com/secrets-manager/pricing: per secret-month, API calls per 10,000.
    "secret_month": 0.40,
    "secrets_api_call": 0.05 / 1e4,
    # aws.amazon.com/cloudwatch/pricing: custom metric-month (first 10,000 tier, prorated by the hour it is
    # sent), standard-resolution alarm per metric it reads, dashboard-month, logs ingested per GB (EMF too),
    # logs archived per GB-month (compressed).
    "cloudwatch_metric_month": 0.30,
    "cloudwatch_alarm_metric_month": 0.10,
    "cloudwatch_dashboard_month": 3.00,
    "cloudwatch_logs_ingest_gb": 0.50,
    "cloudwatch_logs_storage_gb_month": 0.03,
    # aws.amazon.com/xray/pricing: traces recorded, per trace.
    "xray_trace": 5.00 / 1e6,
    # aws.amazon.com/eventbridge/pricing: custom events published (64 KB chunks); Scheduler invocations.
    "eventbridge_event": 1.00 / 1e6,
    "scheduler_invocation": 1.00 / 1e6,
    # aws.amazon.com/ses/pricing: outbound e-mail.
    "ses_email": 0.10 / 1000,
    # aws.amazon.com/sns/pricing: publishes, e-mail deliveries.
    "sns_publish": 0.50 / 1e6,
    "sns_email": 2.00 / 1e5,
    # aws.amazon.com/api-gateway/pricing: HTTP API, first 300 million requests a month.
    "http_api_request": 1.00 / 1e6,
}

# ---------------------------------------------------------------- what each resource type costs

# Every resource type the template may declare, with the model's lines that price it. A type missing here fails
# tests/unit/test_cost_model.py: a new billable resource must be priced before it ships.
RESOURCE_TYPES: dict[str, str] = {
    "AWS::Serverless::Function": "lambda requests + GB-s (handler and INIT), log ingest and storage, X-Ray",
    "AWS::Serverless::LayerVersion": "no charge (code storage within Lambda's 75 GB per account)",
    "AWS::Serverless::HttpApi": "HTTP API requests (the product's use, priced per million apart)",
    "AWS::DynamoDB::Table": "request units, storage, PITR storage (on-demand: no charge while idle)",
    "AWS::SQS::Queue": "requests: sends, the event source's receives and deletes, its idle long polls",
    "AWS::KMS::Key": "key-month, rotated versions, requests",
    "AWS::SecretsManager::Secret": "secret-month, GetSecretValue per cold start",
    "AWS::Events::EventBus": "custom events published (notices)",
    "AWS::Events::Rule": "no charge of its own (the webhook rule: the bus's events are priced when published)",
    "AWS::SQS::QueuePolicy": "no charge",
    "AWS::SNS::Topic": "alarm publishes and e-mail deliveries",
    "AWS::SNS::Subscription": "no charge of its own (deliveries are the topic's)",
    "AWS::SNS::TopicPolicy": "no charge",
    "AWS::SES::ConfigurationSet": "no charge of its own (the notices' e-mails are priced per message sent)",
    "AWS::SES::ConfigurationSetEventDestination": "SNS publishes of bounces and complaints: a handful a day, "
    "priced with the topic (a share of a cent a month)",
    "AWS::CloudWatch::Alarm": "per metric the alarm reads",
    "AWS::CloudWatch::Dashboard": "dashboard-month",
    "AWS::Logs::LogGroup": "ingest and storage (priced with the lines written to it)",
    "AWS::Logs::MetricFilter": "its metric: a custom metric, billed for the hours it is sent",
}
# Events of a serverless function, each creating resources that bill as below.
EVENT_TYPES: dict[str, str] = {
    "ScheduleV2": "EventBridge Scheduler invocations",
    "SQS": "event source mapping: no charge; its pollers' SQS requests are priced",
    "HttpApi": "HTTP API requests",
    "SNS": "SNS deliveries to Lambda (free) and one invocation per bounce or complaint: within the "
    "function's requests, a few a day",
}

# Custom metric names computed at run time, with every name each expression can produce. Names are counted from
# the code (``emittable_metrics``); an expression missing here fails the model's test. None today: every metric
# name is a literal, read by an alarm.
DYNAMIC_METRICS: dict[str, list[str]] = {}
# Metrics sent only when something is wrong: billed by the hour they are sent, so about nothing in a healthy
# month. OpenIssues is sent every hour some connection has an open issue, which a large fleet always has.
ON_TROUBLE_ONLY = frozenset(
    {"OutageSuspected", "ProbeRefusedMetering", "EscalationPaused", "Disconnects", "ChecksStale"}
    | {"EscalationCutShort", "EscalationFailed", "MeteredBudgetEarlyBurn"}
)


def _source_files() -> Iterator[Path]:
    for folder in SOURCES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def metric_expressions() -> dict[str, str]:
    """Each ``add_metric(name=...)`` in the code: the name expression's source, by file:line."""
    found: dict[str, str] = {}
    for path in _source_files():
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric":
                name = next(kw.value for kw in node.keywords if kw.arg == "name")
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found[where] = ast.get_source_segment(text, name) or ""
    return found


def emittable_metrics() -> set[str]:
    """Every custom metric name the code can send (each is a billed metric once sent)."""
    names: set[str] = set()
    for where, expression in metric_expressions().items():
        literal = re.fullmatch(r"\"(\w+)\"", expression)
        if literal:
            names.add(literal.group(1))
        elif expression in DYNAMIC_METRICS:
            names.update(DYNAMIC_METRICS[expression])
        else:
            raise KeyError(f"{where}: metric name {expression} is not in bench.cost.DYNAMIC_METRICS")
    return names


# ---------------------------------------------------------------- the template's fixed lines


def deployed(template: dict[str, Any], parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The template as a stack with these parameter values (the defaults otherwise) creates it: resources
    whose condition is false are left out."""
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(parameters or {})

    def resolve(operand: Any) -> str:
        return values[operand.value] if isinstance(operand, Intrinsic) else str(operand)

    conditions = {name: condition_holds(template, name, resolve) for name in template.get("Conditions", {})}
    kept = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    return {**template, "Resources": kept, "DeployedWith": values, "DeployedConditions": conditions}


def resolved(template: dict[str, Any], value: Any) -> Any:
    """A property's value in a ``deployed`` template: ``!If`` picks its branch by the condition."""
    if isinstance(value, Intrinsic) and value.name == "Fn::If":
        condition, when_true, when_false = value.value
        return resolved(template, when_true if template["DeployedConditions"][condition] else when_false)
    return value


def tracing_mode(template: dict[str, Any], function: dict[str, Any]) -> str:
    """A function's X-Ray mode (its own, else the Globals'): Active samples every invocation's trace (1 a
    second, then 5%); PassThrough records only what a sampled caller's trace header asks for."""
    mode = function.get("Tracing", template["Globals"]["Function"].get("Tracing", "PassThrough"))
    return str(resolved(template, mode))


def _evaluate(expression: Any, values: dict[str, str], conditions: dict[str, bool]) -> Any:
    """Fn::Equals, Fn::Not, Fn::And, Fn::Or, Ref and Condition: what the template's conditions use."""
    if not isinstance(expression, Intrinsic):
        return expression
    name, argument = expression.name, expression.value
    if name == "Ref":
        return values[argument]
    if name == "Condition":
        return conditions[argument]
    operands = [_evaluate(operand, values, conditions) for operand in argument]
    if name == "Fn::Equals":
        return str(operands[0]) == str(operands[1])
    if name == "Fn::Not":
        return not operands[0]
    if name == "Fn::And":
        return all(operands)
    if name == "Fn::Or":
        return any(operands)
    raise ValueError(f"condition function {name} is not modelled")


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def alarm_metrics(alarm: dict[str, Any]) -> int:
    """Metrics an alarm reads (a metric-math alarm pays for each metric in its expression)."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return 1
    return sum(1 for query in props.get("Metrics", []) if "MetricStat" in query)


def dashboard_metrics(template: dict[str, Any]) -> set[str]:
    """Custom metric names the dashboard's widgets read."""
    names: set[str] = set()
    for dashboard in _resources(template, "AWS::CloudWatch::Dashboard").values():
        body = dashboard["Properties"]["DashboardBody"]
        text = body.value[0] if isinstance(body, Intrinsic) else str(body)
        names.update(re.findall(rf'\["{NAMESPACE}", "(\w+)"', text))
        names.update(re.findall(r'\[\s*"\.",\s*"(\w+)"', text))
    return names


def metric_filter_metrics(template: dict[str, Any]) -> set[str]:
    """Custom metrics made from log lines by the template's metric filters (none in the code)."""
    return {
        transformation["MetricName"]
        for metric_filter in _resources(template, "AWS::Logs::MetricFilter").values()
        for transformation in metric_filter["Properties"]["MetricTransformations"]
    }


def alarm_metric_names(template: dict[str, Any]) -> set[str]:
    return {
        alarm["Properties"]["MetricName"]
        for alarm in _resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == NAMESPACE
    }


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _resources(template, "AWS::Serverless::Function")


def _memory_gb(template: dict[str, Any], props: dict[str, Any]) -> float:
    return float(props.get("MemorySize", template["Globals"]["Function"].get("MemorySize", 128))) / 1024


CHECK_WORKER = "check_worker"  # its folder under functions/


def check_worker(template: dict[str, Any]) -> dict[str, Any]:
    """The check worker's properties (not the webhook delivery function's, which reads a queue of its own)."""
    for fn in functions(template).values():
        if str(fn["Properties"]["CodeUri"]).rstrip("/").endswith(CHECK_WORKER):
            return dict(fn["Properties"])
    raise LookupError(f"no {CHECK_WORKER} function in the template")


def sqs_event(template: dict[str, Any]) -> dict[str, Any]:
    """The check worker's event source (batch size, concurrency)."""
    return dict(queue_event_sources(template)[CHECK_WORKER][1])


def metered_call_budget(template: dict[str, Any]) -> int:
    return int(template["Parameters"]["MeteredCallBudget"]["Default"])


def probe_share(connections: int, budget: int) -> float:
    """The share of daily checks that read CompanyInfo: the month's probes never exceed the metered-call
    budget (domain.probe_budget), and a connection is probed at most once a day by its check."""
    return min(1.0, budget / (connections * DAYS_PER_MONTH))


def log_retention_days(template: dict[str, Any]) -> dict[str, int | None]:
    """Retention of every log group: declared ones, and the one Lambda makes for a function that names none
    (None: kept forever)."""
    kept: dict[str, int | None] = {}
    for logical_id, group in _resources(template, "AWS::Logs::LogGroup").items():
        days = group["Properties"].get("RetentionInDays")
        if isinstance(days, Intrinsic):  # !Ref a parameter: its default
            days = template["Parameters"][days.value]["Default"]
        kept[logical_id] = int(days) if days is not None else None
    for logical_id, fn in functions(template).items():
        group = fn["Properties"].get("LoggingConfig", {}).get("LogGroup")
        if not (isinstance(group, Intrinsic) and group.value in kept):
            kept[f"{logical_id} (made by Lambda)"] = None
    return kept


# ---------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Workload:
    """A day of checks and what each costs in requests and bytes. Defaults: bench.cost_measure, 2026-12-05."""

    intuit_latency_s: float = 0.300  # per Intuit call (token refresh, CompanyInfo); a parameter, not measured
    # Per check: the token refresh, plus a CompanyInfo read for the share the budget grants (set per fleet
    # from the template's MeteredCallBudget by ``at_fleet``; 2.0 and 3 writes when every check probes).
    intuit_calls_per_check: float = 2.0
    check_concurrency: int = CheckSettings.model_fields[
        "check_concurrency"
    ].default  # checks of a batch at once
    aws_call_s: float = 0.008  # one DynamoDB/KMS/SQS round trip from Lambda in-region (a guess: 5-10 ms)
    aws_calls_per_check: float = 3.1  # the connection's writes + KMS and bookkeeping
    # Our code and its libraries on one full core, warm medians of `bench.worker` (2026-12-06, 10 checks at a
    # time): a check that probes (three writes) and one with recent evidence (two writes, no read). The
    # check's figure is their mix at the fleet's probe share (``at_fleet``).
    cpu_probed_s: float = 0.0142
    cpu_unprobed_s: float = 0.0074
    worker_cpu_s_per_check: float = 0.0142
    # DynamoDB size rules, the largest at any write of a check with realistic data (UUID ids, three contacts,
    # a 100-character company name, an open issue, AWS's data-key length): tests/integration/test_item_size.py
    connection_item_bytes: int = 951
    # Lease, then the refreshed tokens with the outcome; a probed check writes its tokens before the read.
    updates_per_check: float = 3.0
    puts_per_check: float = 0.003  # run tallies
    history_bytes_per_connection: int = 0  # kept history (healthy checks write none)
    log_bytes_per_check: float = 45.0  # our JSON lines (the counts line of each batch), per check
    platform_log_bytes_per_invocation: int = 450  # START, END, REPORT (with X-Ray's trace id) lines
    init_log_bytes: int = 120  # INIT_START line of a cold start
    init_s: float = 0.37  # cold start (import + init) of a function (bench.coldstart, process wall)
    data_key_seconds: int = 300  # TokenVault's data-key cache lifetime
    # Problem connections: the share with an open issue, and the notices each sends in a month.
    broken_share: float = 0.01
    notices_per_broken_month: float = 2.5  # notice, reminders, final warning, restored over a 14-day episode
    contacts_per_connection: float = 1.5
    index_entry_bytes: int = 60  # check-slots index entry: keys, state, issue type
    sqs_idle_pollers: int = 5  # the SQS event source long-polls with 5 pollers when idle (AWS docs)
    xray_reservoir_per_s: float = 1.0  # Lambda's default sampling: 1 trace a second, then 5%
    xray_rate: float = 0.05
    logs_compression: float = 0.15  # archived size over ingested size for JSON lines (a guess)


@dataclass
class Line:
    part: str
    usd: float
    detail: str


@dataclass
class Estimate:
    connections: int
    fixed: list[Line] = field(default_factory=list)
    variable: list[Line] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def fixed_usd(self) -> float:
        return sum(line.usd for line in self.fixed)

    @property
    def variable_usd(self) -> float:
        return sum(line.usd for line in self.variable)


# ---------------------------------------------------------------- the daily run on paper


@dataclass(frozen=True)
class HourlyRun:
    """One hourly slot's checks through the queue, at the template's batch size and concurrency."""

    checks: float
    batch_size: int
    concurrency: int
    batch_s: float  # one batch's time (batch_seconds)

    @property
    def batches(self) -> float:
        return math.ceil(self.checks / self.batch_size)

    @property
    def containers(self) -> int:
        return int(min(self.concurrency, self.batches))

    @property
    def drain_s(self) -> float:
        """Wall time of the slot: each container takes its batches one after another."""
        per_container = math.ceil(self.batches / max(1, self.containers))
        return per_container * self.batch_s


# Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB (docs.aws.amazon.com/lambda,
# "Configuring function memory"). The CPU measured on a full core takes this much longer below that.
FULL_CORE_MB = 1769


def batch_seconds(work: Workload, memory_mb: float, batch: int) -> float:
    """A batch's billed time: its checks in rounds of ``check_concurrency``, each round waiting on Intuit and
    AWS once, plus the CPU of every check one after another on the function's share of a vCPU (an upper
    bound: CPU overlaps the other checks' waiting)."""
    wait = work.intuit_calls_per_check * work.intuit_latency_s + work.aws_calls_per_check * work.aws_call_s
    cpu = work.worker_cpu_s_per_check * max(1.0, FULL_CORE_MB / memory_mb)
    return math.ceil(batch / work.check_concurrency) * wait + batch * cpu


def kms_calls_per_run(run: HourlyRun, data_key_seconds: int) -> float:
    """Decrypts and GenerateDataKeys of one hourly run, as containers make them.

    Yesterday's run sealed this slot's tokens under one data key per container and key lifetime; today each
    container decrypts every one of those keys it meets, again after each cache expiry (one per key and
    window), and makes its own data keys for what it seals."""
    windows = max(1, math.ceil(run.drain_s / data_key_seconds))
    keys = run.containers * windows  # data keys sealed yesterday in this slot
    checks_per_window = run.checks / (run.containers * windows)
    met = keys * (1 - math.exp(-checks_per_window / keys))  # distinct keys a container meets in a window
    decrypts = min(run.checks, run.containers * windows * met)
    return decrypts + keys


# Limits the hourly run could meet, each from its documentation (2026-12-05):
# Intuit: 500 requests a minute and 10 in flight per realm (developer.intuit.com, "API rate limits"); each
# connection is its own realm and a check makes 2 calls, so no realm comes near it.
# DynamoDB on-demand: a new table serves up to 4,000 write units a second at once, and more as traffic grows
# (docs.aws.amazon.com/amazondynamodb, "On-demand capacity mode", initial throughput).
# KMS: 50,000 symmetric cryptographic requests a second shared by the account in us-east-1 (KMS quotas).
DYNAMODB_INITIAL_WRU_PER_S = 4000
KMS_REQUESTS_PER_S = 50_000


def run_limits(run: HourlyRun, work: Workload) -> dict[str, Any]:
    """The share of each limit an hourly run uses (1.0 binds; the largest binds first): the hour itself at the
    event source's MaximumConcurrency, and the service limits at the run's rate."""
    checks_per_s = run.checks / run.drain_s if run.drain_s else 0.0
    capacity_per_hour = run.concurrency * 3600 / run.batch_s * run.batch_size
    return {
        "checks_per_second": round(checks_per_s, 1),
        "slot_minutes": round(run.drain_s / 60, 1),
        "hour_used_at_MaximumConcurrency": round(run.checks / capacity_per_hour, 3),
        "dynamodb_write_units": round(checks_per_s * work.updates_per_check / DYNAMODB_INITIAL_WRU_PER_S, 4),
        "kms_requests": round(checks_per_s * 0.25 / KMS_REQUESTS_PER_S, 6),
        "intuit_per_realm": round(work.intuit_calls_per_check / 500, 4),  # one check a day per realm
        "largest_fleet_per_hourly_slot": int(capacity_per_hour * 24),
    }


def xray_traces(invocations: float, active_s: float, work: Workload) -> float:
    reservoir = min(invocations, active_s * work.xray_reservoir_per_s)
    return reservoir + work.xray_rate * (invocations - reservoir)


# ---------------------------------------------------------------- the model


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def estimate(
    connections: int,
    work: Workload,
    template: dict[str, Any] | None = None,
    parameters: dict[str, str] | None = None,
) -> Estimate:
    """A deployment with the template's default parameters, or with ``parameters`` over them."""
    template = deployed(template or load_template(), parameters)
    est = Estimate(connections)
    _fixed(est, template, work)
    fleet_work = at_fleet(work, connections, metered_call_budget(template))
    est.notes["probe_share"] = round(probe_share(connections, metered_call_budget(template)), 4)
    est.notes["worker_cpu_ms_per_check"] = round(fleet_work.worker_cpu_s_per_check * 1000, 2)
    _variable(est, template, fleet_work)
    return est


def at_fleet(work: Workload, connections: int, budget: int) -> Workload:
    """The workload of a fleet under the metered-call budget: every check refreshes (1 Intuit call) and
    writes twice (lease, then tokens with the outcome); a probed one also reads CompanyInfo and writes its
    tokens before that read."""
    share = probe_share(connections, budget)
    return replace(
        work,
        intuit_calls_per_check=1 + share,
        updates_per_check=2 + share,
        aws_calls_per_check=2 + share + 0.1,
        worker_cpu_s_per_check=share * work.cpu_probed_s + (1 - share) * work.cpu_unprobed_s,
    )


def _fixed(est: Estimate, template: dict[str, Any], work: Workload) -> None:
    keys = _resources(template, "AWS::KMS::Key")
    rotating = sum(1 for key in keys.values() if key["Properties"].get("EnableKeyRotation"))
    # Rotated versions: $1 each for the first two yearly rotations, so $1, $2, then $3 a key from year 3.
    steady = len(keys) * PRICES["kms_key_month"] + rotating * 2 * PRICES["kms_rotated_version_month"]
    est.fixed.append(Line("KMS keys", steady, f"{len(keys)} keys, {rotating} rotating yearly (year 3 on)"))
    est.notes["kms_keys_year_1_usd"] = len(keys) * PRICES["kms_key_month"]
    secrets = _resources(template, "AWS::SecretsManager::Secret")
    est.fixed.append(
        Line("Secrets Manager", len(secrets) * PRICES["secret_month"], f"{len(secrets)} secrets")
    )
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    alarm_reads = sum(alarm_metrics(alarm) for alarm in alarms.values())
    est.fixed.append(
        Line(
            "CloudWatch alarms",
            alarm_reads * PRICES["cloudwatch_alarm_metric_month"],
            f"{len(alarms)} alarms reading {alarm_reads} metrics",
        )
    )
    dashboards = _resources(template, "AWS::CloudWatch::Dashboard")
    est.fixed.append(
        Line(
            "CloudWatch dashboard",
            len(dashboards) * PRICES["cloudwatch_dashboard_month"],
            f"{len(dashboards)} dashboard",
        )
    )
    names = emittable_metrics()
    filtered = metric_filter_metrics(template)  # the worker sends a count every hour of the day
    hourly = (names - ON_TROUBLE_ONLY) | filtered
    est.fixed.append(
        Line(
            "CloudWatch custom metrics",
            len(hourly) * PRICES["cloudwatch_metric_month"],
            f"{len(names)} names the code can send, {len(filtered)} from log lines;"
            f" {len(hourly)} sent each hour (billed by the hour sent)",
        )
    )
    est.notes["metric_names"] = sorted(names)
    sources = len(queue_event_sources(template))  # each SQS event source polls its queue on its own
    polls = sources * work.sqs_idle_pollers * 3 * 60 * 24 * DAYS_PER_MONTH  # 20 s long polls, all month
    est.fixed.append(
        Line(
            "SQS idle polling",
            polls * PRICES["sqs_request"],
            f"{sources} queues x {work.sqs_idle_pollers} pollers, 20 s polls",
        )
    )
    scheduled = _scheduled_runs(template)
    runs = scheduled * 24 * DAYS_PER_MONTH
    # The scheduler and escalator themselves: one cold invocation an hour each (their time grows little).
    gb = 0.25
    fixed_lambda = runs * (
        PRICES["lambda_request"]
        + (work.init_s + 1.0) * gb * PRICES["lambda_gb_second"]
        + PRICES["xray_trace"]
    )
    est.fixed.append(
        Line(
            "Scheduled runs",
            fixed_lambda + runs * PRICES["scheduler_invocation"],
            f"{runs} invocations a month (Scheduler, Lambda, X-Ray), escalator with no open issue",
        )
    )


def _scheduled_runs(template: dict[str, Any]) -> int:
    return sum(
        1
        for fn in functions(template).values()
        for event in fn["Properties"].get("Events", {}).values()
        if event["Type"] == "ScheduleV2"
    )


def _variable(est: Estimate, template: dict[str, Any], work: Workload) -> None:
    n = est.connections
    checks = n * DAYS_PER_MONTH
    runs = 24 * DAYS_PER_MONTH
    source = sqs_event(template)
    worker = check_worker(template)
    memory = _memory_gb(template, worker)
    batch = int(source["BatchSize"])
    concurrency = int(source.get("ScalingConfig", {}).get("MaximumConcurrency", 1000))
    run = HourlyRun(
        checks=n / 24,
        batch_size=batch,
        concurrency=concurrency,
        batch_s=batch_seconds(work, memory * 1024, batch),
    )
    est.notes["limits"] = run_limits(run, work)
    est.notes["hourly_run"] = {
        "checks": round(run.checks),
        "batches": run.batches,
        "containers": run.containers,
        "drain_minutes": round(run.drain_s / 60, 1),
        "batch_seconds": round(run.batch_s, 2),
    }

    invocations = checks / batch
    cold_starts = runs * run.containers  # an hour apart, containers are gone: each run starts cold
    gb_s = (invocations * run.batch_s + cold_starts * work.init_s) * memory
    lambda_usd = invocations * PRICES["lambda_request"] + gb_s * PRICES["lambda_gb_second"]
    est.variable.append(
        Line(
            "Lambda (worker)",
            lambda_usd,
            f"{invocations:,.0f} invocations, {gb_s:,.0f} GB-s at {memory * 1024:.0f} MB"
            f" ({run.batch_s:.2f} s a batch of {batch}, {work.check_concurrency} checks at a time;"
            f" {cold_starts:,} INITs)",
        )
    )

    item_wru = write_units(work.connection_item_bytes)
    writes = checks * (work.updates_per_check + work.puts_per_check)
    # A connection with an open issue is in the open-issues index (projection ALL): each write writes it too.
    index_writes = checks * work.broken_share * work.updates_per_check
    wru = (writes + index_writes) * item_wru
    slot_entries = n / 24
    rru = runs * max(1, math.ceil(slot_entries * work.index_entry_bytes / 4096)) / 2  # eventually consistent
    rru += runs * max(1, n * work.broken_share * work.connection_item_bytes / 4096) / 2  # open issues
    est.variable.append(
        Line(
            "DynamoDB requests",
            wru * PRICES["dynamodb_wru"] + rru * PRICES["dynamodb_rru"],
            f"{wru:,.0f} WRU ({item_wru} a write: item {work.connection_item_bytes} B), {rru:,.0f} RRU",
        )
    )
    stored_gb = n * (work.connection_item_bytes + work.history_bytes_per_connection) / 1e9
    stored_gb += n * work.broken_share * work.connection_item_bytes / 1e9  # open-issues index copy
    est.variable.append(
        Line(
            "DynamoDB storage + PITR",
            stored_gb * (PRICES["dynamodb_storage_gb_month"] + PRICES["dynamodb_pitr_gb_month"]),
            f"{stored_gb:.3f} GB",
        )
    )

    kms = runs * kms_calls_per_run(run, work.data_key_seconds)
    est.variable.append(
        Line("KMS requests", kms * PRICES["kms_request"], f"{kms:,.0f} calls ({kms / checks:.3f} a check)")
    )
    est.notes["kms_calls_per_check"] = round(kms / checks, 3)
    secrets = cold_starts * len(_resources(template, "AWS::SecretsManager::Secret"))
    est.variable.append(
        Line("Secrets Manager calls", secrets * PRICES["secrets_api_call"], f"{secrets:,} GetSecretValue")
    )

    sqs = checks * (0.1 + 0.1 + 0.1)  # the scheduler's sends, the poller's receives and deletes, 10 a call
    est.variable.append(Line("SQS requests", sqs * PRICES["sqs_request"], f"{sqs:,.0f} requests"))

    notices = n * work.broken_share * work.notices_per_broken_month
    emails = notices * work.contacts_per_connection
    est.variable.append(
        Line(
            "EventBridge + SES (notices)",
            notices * PRICES["eventbridge_event"] + emails * PRICES["ses_email"],
            f"{notices:,.0f} events, {emails:,.0f} e-mails",
        )
    )

    # Lambda's own START/END/REPORT and INIT lines are INFO: a SystemLogLevel of WARN drops them.
    system_level = worker.get("LoggingConfig", {}).get("SystemLogLevel", "INFO")
    platform = (
        invocations * work.platform_log_bytes_per_invocation + cold_starts * work.init_log_bytes
        if system_level in ("DEBUG", "INFO")
        else 0.0
    )
    log_gb = (checks * work.log_bytes_per_check + platform) / 1e9
    retention = log_retention_days(template)
    kept_months = max((days or 0) for days in retention.values()) / 30
    forever = any(days is None for days in retention.values())
    stored = log_gb * work.logs_compression * (12 if forever else kept_months)
    est.variable.append(
        Line(
            "CloudWatch Logs",
            log_gb * PRICES["cloudwatch_logs_ingest_gb"]
            + stored * PRICES["cloudwatch_logs_storage_gb_month"],
            f"{log_gb:.2f} GB ingested ({platform / log_gb / 1e9:.0%} Lambda's lines, system level"
            f" {system_level}); "
            + ("kept forever: storage after a year" if forever else f"kept {kept_months:.0f} months"),
        )
    )
    # PassThrough: the worker's invocations come from SQS batches, which carry no sampled header to follow
    # (a guess from Lambda's documented modes: we found no statement on SQS batches either way).
    active = tracing_mode(template, worker) == "Active"
    traces = runs * xray_traces(invocations / runs, run.drain_s, work) if active else 0.0
    est.variable.append(
        Line(
            "X-Ray traces",
            traces * PRICES["xray_trace"],
            f"{traces:,.0f} of {invocations:,.0f} sampled"
            if active
            else "worker traced only with TraceSubsegments=true",
        )
    )


# ---------------------------------------------------------------- printing


# Parameters that add fixed charges, priced apart from the default deployment.
OPTIONS = {
    "with DeployDashboard=true": {"DeployDashboard": "true"},
    "with a WebhookUrl": {"WebhookUrl": "https://product.example/hooks"},
}


def report(sizes: tuple[int, ...], work: Workload) -> list[Estimate]:
    template = load_template()
    estimates = [estimate(n, work, template) for n in sizes]
    print(
        f"us-east-1 list prices (read 2026-12-05), no free tiers; Intuit {work.intuit_latency_s * 1000:.0f} ms"
    )
    print("\nfixed per deployment, $/month:")
    for line in estimates[0].fixed:
        print(f"  {line.part:<28}{line.usd:>8.2f}  {line.detail}")
    print(f"  {'total':<28}{estimates[0].fixed_usd:>8.2f}")
    for label, parameters in OPTIONS.items():
        extra = estimate(sizes[0], work, template, parameters).fixed_usd - estimates[0].fixed_usd
        print(f"  {'+ ' + label:<28}{extra:>8.2f}")
    header = "".join(f"{n:>12,}" for n in sizes)
    print(f"\nvariable, $/month for {header.strip()} connections:")
    for index, line in enumerate(estimates[0].variable):
        cells = "".join(f"{est.variable[index].usd:>12.2f}" for est in estimates)
        print(f"  {line.part:<28}{cells}")
    print(f"  {'total':<28}" + "".join(f"{est.variable_usd:>12.2f}" for est in estimates))
    print(
        "  per 100,000 connections    "
        + "".join(f"{est.variable_usd / est.connections * 1e5:>12.2f}" for est in estimates)
    )
    print(
        f"  {'with the fixed cost':<28}"
        + "".join(f"{est.variable_usd + est.fixed_usd:>12.2f}" for est in estimates)
    )
    for est in estimates:
        print(f"\n{est.connections:,} connections:")
        for line in est.variable:
            print(f"  {line.part:<28}{line.detail}")
        print(f"  hourly run: {est.notes['hourly_run']}")
        print(f"  share of each limit an hourly run uses: {est.notes['limits']}")
    print(
        f"\nHTTP API (the product's use, apart): ${PRICES['http_api_request'] * 1e6:.2f} per million requests"
        " plus the API function's Lambda time and logs."
    )
    return estimates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=300.0, help="Intuit's latency per call")
    parser.add_argument(
        "--broken", type=float, default=Workload.broken_share, help="share with an open issue"
    )
    parser.add_argument("--in-flight", type=int, default=Workload.check_concurrency, help="checks at once")
    args = parser.parse_args()
    work = replace(
        Workload(),
        intuit_latency_s=args.latency_ms / 1000,
        broken_share=args.broken,
        check_concurrency=args.in_flight,
    )
    estimates = report((10_000, 100_000, 1_000_000), work)
    from bench.common import write_result

    write_result(
        "cost",
        {
            "prices": PRICES,
            "workload": asdict(work),
            "estimates": [
                {
                    "connections": est.connections,
                    "fixed_usd": round(est.fixed_usd, 2),
                    "variable_usd": round(est.variable_usd, 2),
                    "fixed": [asdict(line) for line in est.fixed],
                    "variable": [asdict(line) for line in est.variable],
                    "notes": est.notes,
                }
                for est in estimates
            ],
        },
    )


if __name__ == "__main__":
    main()
