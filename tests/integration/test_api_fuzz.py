"""Fuzzing the API with schemathesis: generated requests from the committed openapi.json against the local
HTTP front (API Gateway HTTP API v2 events, SigV4 on internal routes), checking that no response is a 5xx and
that every response matches the document (status code, content type, headers, body schema).

Requests are signed with botocore's SigV4 for the local credentials (as ``QboHealthClient`` signs), so they
reach the handler instead of stopping at the front's 403. Half of the generated connection ids are replaced by
ids of connections seeded for the test, so the handlers' found-connection paths are exercised too.
Deterministic (``derandomize``) and bounded: about 100 examples per operation, under a minute in all.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.seed import seed_connection

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(OPENAPI))
OPERATIONS = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in SCHEMA.get_all_operations())}
EXAMPLES_PER_OPERATION = 100
MIN_TOTAL_REQUESTS = 1_000
SEEDED_IDS = ("fuzz-conn-1", "fuzz-conn-2", "fuzz-conn-3")

CONFORMANCE_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Known disagreements between the document and the handler, by operation: each keeps that operation's
# conformance test xfail (strict, so a fix removes the mark). None today: the fuzzer found seven routes whose
# documents lacked their 200 response, and the routes now declare it.
KNOWN_MISMATCHES: dict[str, str] = {}


class UndocumentedSuccess(Exception):
    """The known finding: a 2xx answer the document does not list (and nothing else wrong)."""


class SigV4(requests.auth.AuthBase):
    """Signs each prepared request with botocore's SigV4 for execute-api (what API Gateway IAM auth checks)."""

    def __init__(self, credentials: Credentials, region: str = "us-east-1") -> None:
        self.credentials = credentials
        self.region = region

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "x-amz-date")
        }
        signed = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(signed)
        request.headers.update(dict(signed.headers.items()))
        return request


@dataclass
class FuzzRun:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


RUNS: dict[str, FuzzRun] = {}


def _fuzz(label: str, api_url: str) -> FuzzRun:
    operation = OPERATIONS[label]
    session = requests.Session()
    session.auth = SigV4(Credentials("testing", "testing", "testing"))
    run = FuzzRun()
    takes_id = any(p["name"] == "connection_id" for p in operation.definition.raw.get("parameters", []))

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), pick=st.integers(0, 2 * len(SEEDED_IDS) - 1))
    def exercise(case: Any, pick: int) -> None:
        if takes_id and pick < len(SEEDED_IDS):
            case.path_parameters["connection_id"] = SEEDED_IDS[pick]
        response = case.call(base_url=api_url, session=session, timeout=30, allow_redirects=False)
        run.requests += 1
        run.statuses[response.status_code] += 1
        body = case.body if isinstance(case.body, dict | list | str) else None
        request = f"{case.method} {response.request.url} body={str(body)[:200]!r}"
        answer = f"{response.status_code} {response.text[:300]!r}"
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except FailureGroup:
            run.server_errors.append(f"{request} -> {answer}")
        try:
            case.validate_response(response, checks=CONFORMANCE_CHECKS)
        except FailureGroup as failures:
            titles = "; ".join(sorted({failure.title for failure in failures.exceptions}))
            run.mismatches.append(f"{request} -> {answer}: {titles}")

    started = time.perf_counter()
    exercise()
    run.seconds = time.perf_counter() - started
    return run


@pytest.fixture
def fuzz(stack, api_url):
    for connection_id in SEEDED_IDS:
        seed_connection(stack, connection_id, refreshed_days_ago=1)

    def run(label: str) -> FuzzRun:
        if label not in RUNS:
            RUNS[label] = _fuzz(label, api_url)
        return RUNS[label]

    return run


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_fuzz_never_answers_5xx(fuzz, label):
    run = fuzz(label)
    assert run.requests > 0
    assert not run.server_errors, f"{len(run.server_errors)} of {run.requests} 5xx:\n" + "\n".join(
        run.server_errors[:5]
    )


@pytest.mark.parametrize(
    "label",
    [
        pytest.param(
            label,
            marks=pytest.mark.xfail(reason=KNOWN_MISMATCHES[label], raises=UndocumentedSuccess, strict=True),
        )
        if label in KNOWN_MISMATCHES
        else label
        for label in sorted(OPERATIONS)
    ],
)
def test_fuzz_responses_match_document(fuzz, label):
    run = fuzz(label)
    known = [m for m in run.mismatches if label in KNOWN_MISMATCHES and _is_undocumented_success(m)]
    other = [m for m in run.mismatches if m not in known]
    # Anything but the known finding fails the test outright (xfail only accepts UndocumentedSuccess).
    assert not other, f"{len(other)} of {run.requests} do not match openapi.json:\n" + "\n".join(other[:5])
    if known:
        raise UndocumentedSuccess(f"{len(known)} of {run.requests}, e.g. {known[0][:400]}")


def _is_undocumented_success(mismatch: str) -> bool:
    status = mismatch.split(" -> ", 1)[1][:3]
    return status.startswith("2") and mismatch.endswith(": Undocumented status code")


def test_fuzz_sent_at_least_1000_requests(fuzz):
    for label in OPERATIONS:
        fuzz(label)
    total = sum(run.requests for run in RUNS.values())
    seconds = sum(run.seconds for run in RUNS.values())
    statuses = sum((run.statuses for run in RUNS.values()), Counter())
    print(
        f"\nfuzz: {total} requests over {len(RUNS)} operations in {seconds:.1f} s; statuses {dict(statuses)}"
    )
    assert total >= MIN_TOTAL_REQUESTS
