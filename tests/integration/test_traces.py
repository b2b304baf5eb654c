"""With X-Ray subsegments on (TraceSubsegments=true), no token the simulator issued reaches a recorded trace.

The API handler runs in a child process as Lambda would (LAMBDA_TASK_ROOT, a sampled trace header), against
this test's moto server and Intuit simulator; the X-Ray SDK's own UDP emitter is replaced by one that keeps
every entity it would send. A child process, because the SDK patches boto3, requests and PynamoDB for good.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from local.seed import seed_connection
from qbo_health import wiring

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import importlib.util, json, sys
from datetime import datetime

from qbo_health import clock
clock.install(clock.SimulatedClock(datetime.fromisoformat(sys.argv[1])))

spec = importlib.util.spec_from_file_location("api_app", "functions/api/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

recorded = []

class KeepingEmitter(UDPEmitter):
    def send_entity(self, entity):
        recorded.append(entity.serialize())

xray_recorder.configure(emitter=KeepingEmitter())

class Context:
    function_name = "api"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"
    aws_request_id = "trace-test"
    def get_remaining_time_in_millis(self):
        return 29_000

answers = [module.handler(event, Context()) for event in json.loads(sys.argv[2])]
print(json.dumps({"recorded": recorded, "answers": answers}))
"""


def event(method: str, path: str, route: str, params: dict[str, str]) -> dict:
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "connect.example.com", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "connect.example.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "r-1",
            "routeKey": route,
            "stage": "$default",
            "timeEpoch": 0,
        },
        "pathParameters": params,
        "isBase64Encoded": False,
    }


def test_no_simulator_issued_token_or_oauth_state_reaches_a_recorded_trace(stack):
    seed_connection(stack, "conn-1", refreshed_days_ago=1.5)  # its access token expired: a refresh runs
    now = stack.clock.now()
    link_token = wiring.link_signer().reconnect_url("conn-1", now).rsplit("/", 1)[1]
    events = [
        event(
            "POST",
            "/connections/conn-1/access-token",
            "POST /connections/{id}/access-token",
            {"id": "conn-1"},
        ),
        event("GET", f"/reconnect/{link_token}", "GET /reconnect/{token}", {"token": link_token}),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}",
        "LAMBDA_TASK_ROOT": "/var/task",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, now.isoformat(), json.dumps(events)],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    token_answer, redirect = result["answers"]
    access_token = json.loads(token_answer["body"])["access_token"]
    location = redirect["headers"]["Location"]
    recorded = "\n".join(result["recorded"])

    # The answers did carry secrets, and the trace did record the handler and its Intuit and AWS calls.
    assert access_token and "state=" in location
    assert '"## handler"' in recorded or "## handler" in recorded
    assert "oauth.platform.intuit.com" in recorded or stack.intuit.base_url.split("//")[1] in recorded
    state = location.split("state=", 1)[1].split("&", 1)[0]
    issued = stack.intuit.state
    secrets = {*issued.refresh_index, *issued.access_index, *issued.codes, access_token, state, link_token}
    leaked = sorted(secret[:6] + "..." for secret in secrets if secret and secret in recorded)
    assert leaked == []
