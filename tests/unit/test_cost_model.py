"""The cost model (bench/cost.py) prices everything template.yaml creates and every metric the code can send."""

from __future__ import annotations

from dataclasses import replace

from bench import cost
from bench.cost import (
    EVENT_TYPES,
    RESOURCE_TYPES,
    Estimate,
    Workload,
    alarm_metric_names,
    dashboard_metrics,
    emittable_metrics,
    estimate,
    functions,
    log_retention_days,
)
from local.template import load_template

TEMPLATE = load_template()


def test_every_resource_type_in_the_template_is_priced() -> None:
    unknown = sorted({r["Type"] for r in TEMPLATE["Resources"].values()} - set(RESOURCE_TYPES))
    assert not unknown, f"bench/cost.py does not price: {unknown}"


def test_every_function_event_type_is_priced() -> None:
    types = {
        event["Type"] for fn in functions(TEMPLATE).values() for event in fn["Properties"]["Events"].values()
    }
    assert not types - set(EVENT_TYPES), (
        f"bench/cost.py does not price events: {sorted(types - set(EVENT_TYPES))}"
    )


def test_every_metric_name_the_code_can_send_is_counted() -> None:
    """A metric whose name the model cannot count raises; each name is a billed metric once sent."""
    names = emittable_metrics()
    assert alarm_metric_names(TEMPLATE) <= names  # and every alarm reads a metric the code sends


def test_every_metric_is_read_by_an_alarm_or_the_dashboard() -> None:
    """Each custom metric name is $0.30 a month: what nobody reads is a ``counts`` log line instead."""
    unread = emittable_metrics() - alarm_metric_names(TEMPLATE) - dashboard_metrics(TEMPLATE)
    assert not unread, f"metrics no alarm or dashboard reads: {sorted(unread)}"


def test_an_item_past_one_kilobyte_doubles_the_write_units() -> None:
    small = estimate(100_000, replace(Workload(), connection_item_bytes=1024), TEMPLATE)
    large = estimate(100_000, replace(Workload(), connection_item_bytes=1025), TEMPLATE)

    def writes(est: Estimate) -> float:
        return next(line.usd for line in est.variable if line.part == "DynamoDB requests")

    assert writes(large) > 1.9 * writes(small)


def test_fixed_charges_do_not_grow_with_connections_and_variable_ones_do() -> None:
    work = Workload()
    small, large = estimate(10_000, work, TEMPLATE), estimate(1_000_000, work, TEMPLATE)
    assert small.fixed_usd == large.fixed_usd > 0
    # KMS and Secrets Manager calls grow with containers, not checks.
    assert large.variable_usd > 30 * small.variable_usd


def test_intuit_latency_is_billed_as_lambda_time() -> None:
    in_sequence = replace(Workload(), check_concurrency=1)
    fast = estimate(100_000, replace(in_sequence, intuit_latency_s=0.1), TEMPLATE)
    slow = estimate(100_000, replace(in_sequence, intuit_latency_s=0.5), TEMPLATE)

    def lambda_usd(est: Estimate) -> float:
        return next(line.usd for line in est.variable if line.part.startswith("Lambda"))

    assert lambda_usd(slow) > 3 * lambda_usd(fast)


def test_the_dashboard_reads_only_metrics_the_code_or_a_metric_filter_sends() -> None:
    assert dashboard_metrics(TEMPLATE) <= emittable_metrics() | cost.metric_filter_metrics(TEMPLATE)


def test_every_log_group_expires() -> None:
    """A log group without retention is billed for storage forever."""
    kept = log_retention_days(TEMPLATE)
    assert kept and all(days for days in kept.values()), kept


def test_checking_a_batch_five_at_a_time_bills_a_fraction_of_the_waiting() -> None:
    def lambda_usd(in_flight: int) -> float:
        est = estimate(100_000, replace(Workload(), check_concurrency=in_flight), TEMPLATE)
        return next(line.usd for line in est.variable if line.part.startswith("Lambda"))

    assert lambda_usd(5) < lambda_usd(1) / 2  # the CPU of every check is billed either way


def test_the_run_is_modelled_on_the_check_workers_event_source_not_the_webhook_deliveries() -> None:
    template = load_template()
    source = cost.sqs_event(template)
    assert source["Queue"].value == "CheckQueue.Arn"
    assert cost.check_worker(template)["CodeUri"] == "functions/check_worker/"
    hourly = cost.estimate(100_000, cost.Workload(), template).notes["hourly_run"]
    assert hourly["containers"] == source["ScalingConfig"]["MaximumConcurrency"]


def test_only_the_budgets_share_of_checks_pays_for_a_probe_and_its_extra_write() -> None:
    template = load_template()
    budget = cost.metered_call_budget(template)
    small, large = (cost.estimate(n, cost.Workload(), template) for n in (10_000, 1_000_000))
    assert small.notes["probe_share"] == round(budget / (10_000 * cost.DAYS_PER_MONTH), 4)
    assert large.notes["probe_share"] < small.notes["probe_share"] < 1
    everyone = cost.at_fleet(cost.Workload(), 1_000, budget)  # a small fleet: every check can probe
    assert (everyone.intuit_calls_per_check, everyone.updates_per_check) == (2.0, 3.0)
    few = cost.at_fleet(cost.Workload(), 1_000_000, budget)
    assert few.updates_per_check < 2.01 and few.intuit_calls_per_check < 1.01


def test_conditional_resources_are_priced_only_when_their_parameters_deploy_them() -> None:
    default = cost.estimate(100_000, Workload(), TEMPLATE)
    dashboard = cost.estimate(100_000, Workload(), TEMPLATE, {"DeployDashboard": "true"})
    webhooks = cost.estimate(100_000, Workload(), TEMPLATE, {"WebhookUrl": "https://product.example/hooks"})
    # The dashboard, and the metric its burn graph reads (made from the worker's log lines).
    expected = cost.PRICES["cloudwatch_dashboard_month"] + cost.PRICES["cloudwatch_metric_month"]
    assert round(dashboard.fixed_usd - default.fixed_usd, 2) == round(expected, 2)
    # A signing secret, the dead-letter alarm and the delivery queue's idle pollers.
    assert webhooks.fixed_usd - default.fixed_usd > cost.PRICES["secret_month"]
    assert "AWS::CloudWatch::Dashboard" not in {
        r["Type"] for r in cost.deployed(TEMPLATE)["Resources"].values()
    }


def test_the_worker_is_traced_only_when_subsegments_are_asked_for() -> None:
    def traces_usd(parameters: dict[str, str]) -> float:
        est = cost.estimate(100_000, Workload(), TEMPLATE, parameters)
        return next(line.usd for line in est.variable if line.part == "X-Ray traces")

    assert traces_usd({}) == 0
    assert traces_usd({"TraceSubsegments": "true"}) > 0.05
