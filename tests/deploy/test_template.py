"""The embedded stack builds the resources template.yaml declares, and the template stays deployable.

The embedded stack (local/stack.py) reads the template and creates its tables, queues, keys, buses and
secrets in moto; these tests read them back from moto and compare them with the template, so the local
stack cannot drift from what CloudFormation deploys. The tool-based checks (cfn-lint, `sam validate --lint`,
checkov, `sam build` and the handler imports) run in `make deploy-checks`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from local.stack import EmbeddedStack
from local.template import (
    Intrinsic,
    function_environment,
    function_timeouts,
    load_template,
    resources_of_type,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
TABLES = resources_of_type(TEMPLATE, "AWS::DynamoDB::Table")
QUEUES = resources_of_type(TEMPLATE, "AWS::SQS::Queue")


def _sorted(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: item[key])


def _index(index: dict[str, Any]) -> dict[str, Any]:
    projection = {"ProjectionType": index["Projection"]["ProjectionType"]}
    if index["Projection"].get("NonKeyAttributes"):
        projection["NonKeyAttributes"] = sorted(index["Projection"]["NonKeyAttributes"])
    return {"IndexName": index["IndexName"], "KeySchema": index["KeySchema"], "Projection": projection}


def test_the_template_declares_what_the_stack_compares() -> None:
    assert TABLES and QUEUES
    assert any("RedrivePolicy" in props for props in QUEUES.values())


@pytest.mark.parametrize("logical_id", sorted(TABLES))
def test_tables_match_the_template(stack: EmbeddedStack, logical_id: str) -> None:
    declared = TABLES[logical_id]
    dynamodb = stack.client("dynamodb")
    name = stack.resources[logical_id].ref
    table = dynamodb.describe_table(TableName=name)["Table"]

    assert table["KeySchema"] == declared["KeySchema"]
    assert _sorted(table["AttributeDefinitions"], "AttributeName") == _sorted(
        declared["AttributeDefinitions"], "AttributeName"
    )
    created = [_index(index) for index in table.get("GlobalSecondaryIndexes", [])]
    assert _sorted(created, "IndexName") == _sorted(
        [_index(index) for index in declared.get("GlobalSecondaryIndexes", [])], "IndexName"
    )
    assert not table.get("LocalSecondaryIndexes") and not declared.get("LocalSecondaryIndexes")
    assert table["BillingModeSummary"]["BillingMode"] == declared.get("BillingMode", "PROVISIONED")

    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    spec = declared.get("TimeToLiveSpecification")
    if spec and spec["Enabled"]:
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": spec["AttributeName"]}
    else:
        assert ttl["TimeToLiveStatus"] == "DISABLED"


# Values that make every Condition of the template hold, so conditional resources are compared too.
ALL_ON = {"WebhookUrl": "https://hooks.example.com/qbo-health"}


@pytest.mark.parametrize("logical_id", sorted(QUEUES))
def test_queues_match_the_template(stack: EmbeddedStack, logical_id: str) -> None:
    declared = QUEUES[logical_id]
    if "Condition" in TEMPLATE["Resources"][logical_id]:
        stack.reset(parameters=ALL_ON)
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.resources[logical_id].ref, AttributeNames=["All"])[
        "Attributes"
    ]
    assert int(attributes["VisibilityTimeout"]) == int(declared.get("VisibilityTimeout", 30))
    assert int(attributes["MessageRetentionPeriod"]) == int(declared.get("MessageRetentionPeriod", 345600))

    redrive = declared.get("RedrivePolicy")
    if redrive is None:
        assert "RedrivePolicy" not in attributes
        return
    target = redrive["deadLetterTargetArn"]
    assert isinstance(target, Intrinsic) and target.name == "Fn::GetAtt"
    dead_letter_id = target.value.split(".")[0] if isinstance(target.value, str) else target.value[0]
    dead_letter_arn = sqs.get_queue_attributes(
        QueueUrl=stack.resources[dead_letter_id].ref, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": int(redrive["maxReceiveCount"]),
    }


def test_conditional_resources_follow_their_condition(stack: EmbeddedStack) -> None:
    """Off by default (no webhook resources, as CloudFormation deploys with an empty WebhookUrl); on with it."""
    conditional = {
        logical_id
        for logical_id, resource in TEMPLATE["Resources"].items()
        if resource.get("Condition") == "WebhooksOn"
    }
    assert conditional and not conditional & set(stack.resources)
    stack.reset(parameters=ALL_ON)
    created = conditional & set(stack.resources)
    # Everything the embedded stack builds (policies, the function, alarms and outputs are not built locally).
    assert created == {"WebhookSigningSecret", "WebhookQueue", "WebhookDeadLetterQueue", "WebhookRule"}
    assert stack.environment["WEBHOOK_URL"] == ALL_ON["WebhookUrl"]
    stack.reset()


def test_every_global_function_variable_is_in_the_stack_environment(stack: EmbeddedStack) -> None:
    variables = function_environment(TEMPLATE)
    missing = sorted(set(variables) - set(stack.environment))
    assert not missing, f"the embedded stack does not set {missing}"
    for name, value in variables.items():
        if isinstance(value, Intrinsic) and value.name == "Ref" and value.value in stack.resources:
            assert stack.environment[name] == stack.resources[value.value].ref, name
        elif not isinstance(value, Intrinsic):
            assert stack.environment[name] == str(value), name


# --- checkov suppressions, samconfig ----------------------------------------------------------------------


def _checkov_skips() -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical_id, skip)
        for logical_id, resource in TEMPLATE["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


def test_every_checkov_suppression_carries_its_reason() -> None:
    skips = _checkov_skips()
    assert skips
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip.get("id", "")), (logical_id, skip)
        assert len(str(skip.get("comment", "")).split()) >= 8, f"{logical_id} {skip['id']}: say why"


def _samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))


def _overrides(section: dict[str, Any]) -> dict[str, str]:
    raw = section["deploy"]["parameters"].get("parameter_overrides", "")
    return dict(item.split("=", 1) for item in raw.split())


@pytest.mark.parametrize("config_env", ["default", "dev", "prod"])
def test_samconfig_environments_deploy_with_valid_parameters(config_env: str) -> None:
    section = _samconfig()[config_env]
    deploy = section["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert section["global"]["parameters"]["stack_name"]
    parameters = TEMPLATE["Parameters"]
    for name, value in _overrides(section).items():
        assert name in parameters, f"samconfig [{config_env}] overrides unknown parameter {name}"
        assert "Default" in parameters[name], f"{name}: only parameters with a sensible default belong here"
        allowed = parameters[name].get("AllowedValues")
        assert allowed is None or value in [str(v) for v in allowed], (name, value)


def test_prod_deploys_against_production_intuit() -> None:
    assert _overrides(_samconfig()["prod"])["Environment"] == "prod"
    assert _overrides(_samconfig()["prod"])["IntuitEnvironment"] == "production"
    assert _overrides(_samconfig()["dev"])["IntuitEnvironment"] == "sandbox"


def test_every_parameter_guided_deploy_asks_for_is_documented() -> None:
    """`sam deploy --guided` prompts for every template parameter: the README documents each one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    undocumented = sorted(name for name in TEMPLATE["Parameters"] if f"`{name}`" not in readme)
    assert not undocumented, f"README's deploy section does not document: {undocumented}"


def test_the_functions_have_time_for_their_slowest_work() -> None:
    """A check or a disconnect cut off by Lambda between Intuit's rotation and our write loses the token: the
    worker must fit at least two of the slowest checks (it starts one only with that much time left), the
    escalator a slowest disconnect with room for its run, and a message must stay hidden while it runs."""
    from datetime import timedelta

    from qbo_health.config import CheckSettings, IntuitSettings
    from qbo_health.service.disconnect import longest_revoke
    from qbo_health.service.health_check import longest_check

    field = IntuitSettings.model_fields["intuit_timeout_seconds"]
    intuit_timeout = timedelta(seconds=field.default)
    highest = timedelta(seconds=next(rule.le for rule in field.metadata if hasattr(rule, "le")))
    timeouts = {name: timedelta(seconds=seconds) for name, seconds in function_timeouts(TEMPLATE).items()}
    assert timeouts["check_worker"] >= 2 * longest_check(intuit_timeout)
    assert timeouts["check_worker"] >= longest_check(highest)  # never a worker that cannot start a check
    lease = CheckSettings.model_fields["lease_seconds"].default
    assert timedelta(seconds=lease) >= longest_check(highest)  # no second worker while a check runs
    assert timeouts["escalator"] >= 2 * (longest_check(highest) + longest_revoke(highest))
    assert timedelta(seconds=QUEUES["CheckQueue"]["VisibilityTimeout"]) >= timeouts["check_worker"]


def test_the_token_key_serves_only_the_vault_and_only_under_its_encryption_context() -> None:
    """Each function may use the token key for the vault's two operations only, with the vault's encryption
    context; the key itself refuses any cryptographic use without it."""
    from qbo_health.adapters.token_vault import KMS_CONTEXT

    expected_condition = {
        "StringEquals": {f"kms:EncryptionContext:{name}": value for name, value in KMS_CONTEXT.items()}
    }
    functions = resources_of_type(TEMPLATE, "AWS::Serverless::Function")
    users = {}
    for name, function in functions.items():
        for policy in function.get("Policies", []):
            assert "KMSDecryptPolicy" not in policy, name  # a managed template without any condition
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                if any(action.startswith("kms:") for action in actions):
                    assert sorted(actions) == ["kms:Decrypt", "kms:GenerateDataKey"], name
                    assert statement["Condition"] == expected_condition, name
                    users[name] = actions
    assert set(users) == {"CheckWorkerFunction", "EscalatorFunction", "ApiFunction"}

    key_policy = resources_of_type(TEMPLATE, "AWS::KMS::Key")["TokenKey"]["KeyPolicy"]
    denials = [statement for statement in key_policy["Statement"] if statement["Effect"] == "Deny"]
    assert len(denials) == 1 and denials[0]["Principal"] == "*"
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(denials[0]["Action"])
    not_equals = denials[0]["Condition"]["StringNotEquals"]
    assert not_equals["kms:EncryptionContext:purpose"] == KMS_CONTEXT["purpose"]
    # Besides the vault's context, only SNS's for the two named topics (alarms; SES's feedback).
    topics = not_equals["kms:EncryptionContext:aws:sns:topicArn"]
    assert sorted(str(t.value).rsplit("}-", 1)[-1] for t in topics) == ["notice-feedback", "ops-alarms"]
    assert set(not_equals) == {"kms:EncryptionContext:purpose", "kms:EncryptionContext:aws:sns:topicArn"}
