"""The embedded stack: moto in server mode, the Intuit simulator and one simulated clock, on loopback.

Resources come from template.yaml and the functions' environment variables are resolved from the template's
Globals, exactly as CloudFormation would wire them, so the schema and the wiring live in one place.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import requests
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from local.intuit_sim import IntuitSimulator
from local.template import (
    Intrinsic,
    condition_holds,
    function_environment,
    load_template,
    own_environment,
    resources_of_type,
)
from qbo_health import clock as clock_module
from qbo_health import wiring
from qbo_health.clock import SimulatedClock

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STACK_NAME = "qbo-health-local"
SIM_CLIENT_ID = "sim-client-id"
SIM_CLIENT_SECRET = "sim-client-secret"

SENDER_EMAIL = "notices@qbo-health.local"
LOCAL_LINK_SIGNING_KEY = "local-link-signing-key-0123456789abcdef0123456789"
# The webhook signing key's local value: 64 letters and digits, valid base64 as the template generates it.
LOCAL_WEBHOOK_SIGNING_KEY = "LocalWebhookSigningKey0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
LOCAL_SECRET_VALUES = {"WebhookSigningSecret": LOCAL_WEBHOOK_SIGNING_KEY}
LOCAL_PARAMETERS = {"SenderEmail": SENDER_EMAIL}

_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class IntuitTarget:
    """Which Intuit the stack's functions talk to, through the same settings as on AWS (``INTUIT_ENVIRONMENT``,
    the credentials secret, ``INTUIT_BASE_URL``).

    The default is the embedded simulator. ``sandbox`` is Intuit's sandbox with a developer's own app keys;
    ``base_url`` there names a stand-in posing as the sandbox (the tests point it at a simulator, since
    Intuit cannot be reached from where they run). The keys go into the stack's Intuit credentials secret,
    never into the environment, as on AWS."""

    environment: str = "local"
    client_id: str = SIM_CLIENT_ID
    client_secret: str = field(default=SIM_CLIENT_SECRET, repr=False)
    base_url: str | None = None  # "local": the embedded simulator's URL when None

    @property
    def is_simulator(self) -> bool:
        return self.environment == "local"


@dataclass
class PhysicalResource:
    """What ``!Ref`` and ``!GetAtt`` resolve to for one created resource."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class _OneDynamoRequestAtATime:
    """DynamoDB checks a conditional write and applies it as one step per item; moto's backend takes no lock,
    so in its threaded server a lease taken by one check can interleave with another check's release of the
    same item and leave it at a version neither wrote (seen as a failed token write, then a second refresh,
    when a batch checks duplicate deliveries side by side). The lab serializes DynamoDB requests: stricter
    than DynamoDB, never looser."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


class _Dispatcher(DomainDispatcherApplication):
    """moto finds a request's service by listing its own package folder (an ``isdir`` per module) on every
    request; the answer for a host never changes while the lab runs, so each host is looked up once."""

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._backend_of: dict[str, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host is None:
            return None
        if host not in self._backend_of:
            backend = super().get_backend_for_host(host)
            if backend is None:
                return None
            self._backend_of[host] = backend
        return self._backend_of[host]


class _AtomicDynamoMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = _OneDynamoRequestAtATime(_Dispatcher(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class EmbeddedStack:
    def __init__(
        self,
        clock: SimulatedClock | None = None,
        *,
        quiet: bool = True,
        intuit: IntuitTarget | None = None,
        api_port: int | None = None,
        public_host: str = "127.0.0.1",
    ) -> None:
        self.clock = clock or SimulatedClock()
        self.intuit_target = intuit or IntuitTarget()
        self.public_host = public_host  # the host in PUBLIC_BASE_URL: "localhost" for an Intuit redirect URI
        self._start_time = self.clock.now()
        self._moto_port = free_port()
        self._moto = _AtomicDynamoMotoServer(ip_address="127.0.0.1", port=self._moto_port, verbose=not quiet)
        self.intuit = IntuitSimulator(clock=self.clock)
        self.template = load_template()
        self.resources: dict[str, PhysicalResource] = {}
        self.environment: dict[str, str] = {}
        # Template parameters given to the last reset (e.g. WebhookUrl); the rest keep their local values.
        self.parameters: dict[str, str] = {}
        # The API's loopback front (local/http_front.py, started by whoever needs it) listens on this port:
        # it is fixed now so PUBLIC_BASE_URL is known before the front starts.
        self.api_port = api_port or free_port()

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._moto_port}"

    @property
    def api_base_url(self) -> str:
        """Where the API's loopback front listens (PUBLIC_BASE_URL of every function)."""
        return f"http://{self.public_host}:{self.api_port}"

    def start(self) -> EmbeddedStack:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns the output
        self._moto.start()
        self.intuit.start()
        clock_module.install(self.clock)
        self._export_environment()
        self._create_resources()
        return self

    def stop(self) -> None:
        self.intuit.stop()
        self._moto.stop()

    def reset(self, start: datetime | None = None, *, parameters: dict[str, str] | None = None) -> None:
        """Empty every table and queue, reset Intuit, and put the clock back to its start. ``parameters`` deploy
        the template with those parameter values (e.g. ``{"WebhookUrl": ...}``) until the next reset."""
        requests.post(f"{self.aws_endpoint}/moto-api/reset", timeout=10).raise_for_status()
        self.parameters = dict(parameters or {})
        self.clock.set(start or self._start_time)
        self.intuit.reset()
        self._create_resources()

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ wiring

    def _export_environment(self) -> None:
        base = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "CHECK_QUEUE_NATIVE_DELAY": "false",
            # The same value as the local LinkSigningSecret; set inline, it wins over the secret (tests that
            # exercise the Secrets Manager path unset it).
            "LINK_SIGNING_KEY": LOCAL_LINK_SIGNING_KEY,
            # Local only: the embedded stack's webhook receivers listen on 127.0.0.1, which production refuses.
            "WEBHOOK_ALLOW_LOOPBACK": "true",
        }
        target = self.intuit_target
        if target.is_simulator:
            base["INTUIT_CLIENT_ID"] = SIM_CLIENT_ID
            base["INTUIT_CLIENT_SECRET"] = SIM_CLIENT_SECRET
        else:
            # Another Intuit: its keys are read from the credentials secret only, as on AWS.
            for name in ("INTUIT_CLIENT_ID", "INTUIT_CLIENT_SECRET"):
                os.environ.pop(name, None)
        base_url = self.intuit.base_url if target.is_simulator else target.base_url
        if base_url:
            base["INTUIT_BASE_URL"] = base_url
        else:
            os.environ.pop("INTUIT_BASE_URL", None)
        os.environ.update(base)
        self.environment.update(base)

    def _of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """The template's resources of a type that CloudFormation would create with these parameters."""
        return resources_of_type(self.template, resource_type, self.condition_holds)

    def condition_holds(self, name: str) -> bool:
        """A named condition of the template, with this stack's parameters."""
        return condition_holds(self.template, name, self._resolve)

    def _create_resources(self) -> None:
        self.resources = {}
        for logical_id, props in self._of_type("AWS::KMS::Key").items():
            key = self.client("kms").create_key(Description=props.get("Description", logical_id))
            self.resources[logical_id] = PhysicalResource(
                ref=key["KeyMetadata"]["KeyId"], attributes={"Arn": key["KeyMetadata"]["Arn"]}
            )
        for logical_id, props in self._of_type("AWS::DynamoDB::Table").items():
            self._create_table(logical_id, props)
        queues = self._of_type("AWS::SQS::Queue")
        # Dead-letter queues first: the others refer to them.
        for logical_id in sorted(queues, key=lambda name: "RedrivePolicy" in queues[name]):
            self._create_queue(logical_id, queues[logical_id])
        self.client("sesv2").create_email_identity(EmailIdentity=SENDER_EMAIL)
        for logical_id in self._of_type("AWS::SES::ConfigurationSet"):
            # SES's bounce and complaint publishing is not emulated: tests deliver those records themselves.
            name = f"{STACK_NAME}-{logical_id}"
            self.client("sesv2").create_configuration_set(ConfigurationSetName=name)
            self.resources[logical_id] = PhysicalResource(ref=name, attributes={})
        for logical_id in self._of_type("AWS::Events::EventBus"):
            name = f"{STACK_NAME}-{logical_id}"
            bus = self.client("events").create_event_bus(Name=name)
            self.resources[logical_id] = PhysicalResource(ref=name, attributes={"Arn": bus["EventBusArn"]})
        for logical_id in self._of_type("AWS::SecretsManager::Secret"):
            # A fixed local value: Powertools caches secrets across the stack's resets.
            secret = self.client("secretsmanager").create_secret(
                Name=f"{STACK_NAME}-{logical_id}",
                SecretString=self._secret_value(logical_id),
            )
            self.resources[logical_id] = PhysicalResource(ref=secret["ARN"], attributes={"Id": secret["ARN"]})
        for logical_id, props in self._of_type("AWS::Events::Rule").items():
            self._create_rule(logical_id, props)
        self._resolve_function_environment()
        wiring.reset()

    def _secret_value(self, logical_id: str) -> str:
        if logical_id == "IntuitCredentialsSecret":
            target = self.intuit_target
            return json.dumps({"client_id": target.client_id, "client_secret": target.client_secret})
        return LOCAL_SECRET_VALUES.get(logical_id, LOCAL_LINK_SIGNING_KEY)

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> None:
        name = f"{STACK_NAME}-{logical_id}"
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(TableName=name, **{k: props[k] for k in _TABLE_KEYS if k in props})
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
            )
        self.resources[logical_id] = PhysicalResource(
            ref=name, attributes={"Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"}
        )

    def _create_queue(self, logical_id: str, props: dict[str, Any]) -> None:
        name = f"{STACK_NAME}-{logical_id}"
        attributes: dict[str, str] = {}
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds"):
            if key in props:
                attributes[key] = str(props[key])
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = self._resolve(redrive["deadLetterTargetArn"])
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": target, "maxReceiveCount": redrive["maxReceiveCount"]}
            )
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.resources[logical_id] = PhysicalResource(
            ref=url, attributes={"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}", "QueueName": name}
        )

    def _create_rule(self, logical_id: str, props: dict[str, Any]) -> None:
        """An EventBridge rule and its targets (moto delivers matching events to SQS targets)."""
        name = f"{STACK_NAME}-{logical_id}"
        bus = self._resolve(props["EventBusName"])
        events = self.client("events")
        rule = events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(props["EventPattern"]))
        targets = [
            {"Id": target["Id"], "Arn": self._resolve(target["Arn"])} for target in props.get("Targets", [])
        ]
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        self.resources[logical_id] = PhysicalResource(ref=name, attributes={"Arn": rule["RuleArn"]})

    def _resolve(self, value: Any) -> str:
        if not isinstance(value, Intrinsic):
            return str(value)
        if value.name == "Ref":
            if value.value in self.resources:
                return self.resources[value.value].ref
            return self._parameter(value.value)
        if value.name == "Fn::GetAtt":
            logical_id, attribute = value.value.split(".", 1) if isinstance(value.value, str) else value.value
            return self.resources[logical_id].attributes[attribute]
        raise ValueError(f"the embedded stack cannot resolve {value.name}")

    def _parameter(self, name: str) -> str:
        """A template parameter's local value: an override for the embedded stack, else its default."""
        if name in self.parameters:
            return self.parameters[name]
        if name in LOCAL_PARAMETERS:
            return LOCAL_PARAMETERS[name]
        if name == "IntuitEnvironment":
            return self.intuit_target.environment
        if name == "PublicBaseUrl":
            return self.api_base_url
        return str(self.template["Parameters"][name]["Default"])

    def _resolve_function_environment(self) -> None:
        resolved = {
            name: self._resolve(value)
            for name, value in function_environment(self.template).items()
            if not isinstance(value, Intrinsic) or value.name in ("Ref", "Fn::GetAtt")
        }
        os.environ.update(resolved)
        self.environment.update(resolved)
        # Each function's own variables, as Lambda sets them; those of a function not deployed are unset.
        for logical_id, resource in self.template["Resources"].items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            deployed = "Condition" not in resource or self.condition_holds(resource["Condition"])
            for name, value in own_environment(self.template, logical_id).items():
                if deployed:
                    os.environ[name] = self.environment[name] = self._resolve(value)
                else:
                    os.environ.pop(name, None)
                    self.environment.pop(name, None)
