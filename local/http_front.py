"""A loopback HTTP front for the ``api`` function: API Gateway HTTP API (payload v2) in one process.

Each request becomes a v2 event (``routeKey``, ``rawPath``, ``rawQueryString``, ``cookies``, lower-cased
``headers``, ``queryStringParameters``, ``pathParameters``, ``requestContext.http``, ``body`` /
``isBase64Encoded``) for the real handler, and its answer becomes the HTTP response. Routes and their auth come
from template.yaml (the ApiFunction's HttpApi events), as API Gateway would take them: an unknown route gets
API Gateway's 404 without invoking the function, an internal route without a valid SigV4 signature for the
local credentials gets its 403 ``{"message":"Forbidden"}``.

Lambda runs one event per execution environment at a time, and a Powertools resolver keeps the current event
on itself; so concurrent requests each get their own "container" (the handler module loaded once more),
taken from a pool the way Lambda scales out.
"""

from __future__ import annotations

import base64
import hmac
import importlib.util
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local.runner import FUNCTIONS_DIR, LambdaInvocationContext, load_handler, wall_seconds
from local.template import function_timeouts

if TYPE_CHECKING:
    from local.stack import EmbeddedStack

Handler = Callable[[dict[str, Any], Any], Any]
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;.-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
MAX_CLOCK_SKEW_SECONDS = 15 * 60
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str  # "/connections/{id}"
    iam: bool

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def routes_from_template(template: dict[str, Any], function: str = "ApiFunction") -> list[ApiRoute]:
    events = template["Resources"][function]["Properties"]["Events"]
    found = []
    for event in events.values():
        if event["Type"] != "HttpApi":
            continue
        props = event["Properties"]
        authorizer = (props.get("Auth") or {}).get("Authorizer")
        found.append(ApiRoute(props["Method"].upper(), props["Path"], authorizer == "AWS_IAM"))
    # Literal paths win over parameterized ones, as in API Gateway.
    return sorted(found, key=lambda route: route.path.count("{"))


class _Containers:
    """Idle execution environments of one function; a busy one is never shared."""

    def __init__(self, function: str) -> None:
        self._function = function
        self._idle: queue.SimpleQueue[Handler] = queue.SimpleQueue()
        self._count = 0
        self._lock = threading.Lock()

    def take(self) -> Handler:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            self._count += 1
            number = self._count
        if number == 1:
            return load_handler(self._function)
        path = FUNCTIONS_DIR / self._function / "app.py"
        spec = importlib.util.spec_from_file_location(f"lambda_{self._function}_app_{number}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler: Handler = module.handler
        return handler

    def give_back(self, handler: Handler) -> None:
        self._idle.put(handler)


class HttpFront:
    def __init__(self, stack: EmbeddedStack, *, function: str = "api") -> None:
        self.stack = stack
        self.port = stack.api_port
        self.function = function
        self.timeout_seconds = function_timeouts(stack.template)[function]
        # What a request's time budget runs on: the wall clock, as on Lambda, or (see
        # ``use_simulated_invocation_time``) the simulated clock, which the simulator's simulated latency moves.
        self.invocation_seconds: Callable[[], float] = wall_seconds
        self.routes = routes_from_template(stack.template)
        self._containers = _Containers(function)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def use_simulated_invocation_time(self) -> None:
        """Requests measure their time left on the simulated clock: a time-budget test then gives the same
        answer on any machine (``use_wall_time`` goes back)."""
        clock = self.stack.clock
        self.invocation_seconds = lambda: clock.now().timestamp()

    def use_wall_time(self) -> None:
        self.invocation_seconds = wall_seconds

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="api-front", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self._respond(request, environ)
        return response(environ, start_response)

    def _respond(self, request: Request, environ: dict[str, Any]) -> Response:
        raw_uri = str(environ.get("REQUEST_URI") or environ.get("RAW_URI") or request.path)
        raw_path, _, raw_query = raw_uri.partition("?")
        path = unquote(raw_path)
        method = request.method.upper()
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                break
        else:
            return _json(404, {"message": "Not Found"})
        body = request.get_data(cache=True)
        if len(body) > MAX_BODY_BYTES:
            return _json(413, {"message": "Request Entity Too Large"})
        identity: dict[str, Any] | None = None
        if route.iam:
            identity = self._verify_sigv4(request, raw_path, raw_query, body)
            if identity is None:
                return _json(403, {"message": "Forbidden"})
        event = _event(request, route, params, raw_path, raw_query, body, identity)
        handler = self._containers.take()
        try:
            context = LambdaInvocationContext(
                function_name=self.function,
                timeout_seconds=self.timeout_seconds,
                seconds=self.invocation_seconds,
            )
            result = handler(event, context)
        except Exception:  # an unhandled error is a 500 at API Gateway, as on AWS
            return _json(500, {"message": "Internal Server Error"})
        finally:
            self._containers.give_back(handler)
        return _response(result)

    def _verify_sigv4(
        self, request: Request, raw_path: str, raw_query: str, body: bytes
    ) -> dict[str, Any] | None:
        """Recompute the signature for the local credentials; the caller's identity, or None."""
        found = _AUTH.match(request.headers.get("Authorization", ""))
        environment = self.stack.environment
        access_key = environment.get("AWS_ACCESS_KEY_ID", "testing")
        secret_key = environment.get("AWS_SECRET_ACCESS_KEY", "testing")
        region = environment.get("AWS_REGION", "us-east-1")
        if found is None or found["service"] != "execute-api" or found["region"] != region:
            return None
        if not hmac.compare_digest(found["key"], access_key):
            return None
        amz_date = request.headers.get("X-Amz-Date", "")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        if amz_date[:8] != found["date"] or abs(time.time() - signed_at.timestamp()) > MAX_CLOCK_SKEW_SECONDS:
            return None
        signed = found["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return None
        headers = {name: request.headers.get(name, "") for name in signed}
        token = headers.get("x-amz-security-token")
        url = f"http://{request.host}{raw_path}" + (f"?{raw_query}" if raw_query else "")
        copy = AWSRequest(method=request.method, url=url, data=body, headers=headers)
        copy.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(access_key, secret_key, token), "execute-api", region)
        canonical = signer.canonical_request(copy)
        expected = signer.signature(signer.string_to_sign(copy, canonical), copy)
        if not hmac.compare_digest(expected, found["signature"]):
            return None
        return {
            "accessKey": access_key,
            "accountId": "123456789012",
            "callerId": access_key,
            "userArn": "arn:aws:iam::123456789012:user/local",
            "userId": access_key,
        }


def _event(
    request: Request,
    route: ApiRoute,
    params: dict[str, str],
    raw_path: str,
    raw_query: str,
    body: bytes,
    identity: dict[str, Any] | None,
) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key == "cookie":
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers["x-forwarded-proto"] = "http"  # as API Gateway tells the scheme ("https" there)
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    cookies = [part.strip() for part in request.headers.get("Cookie", "").split(";") if part.strip()]
    now = datetime.now(UTC)
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": request.host.split(".")[0],
            "http": {
                "method": request.method.upper(),
                "path": raw_path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if identity is not None:
        event["requestContext"]["authorizer"] = {"iam": identity}
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
    return event


def _response(result: Any) -> Response:
    if not isinstance(result, dict) or "statusCode" not in result:  # payload v2 also allows a bare body
        return Response(json.dumps(result), status=200, content_type="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    response = Response(data, status=int(result["statusCode"]))
    response.headers.remove("Content-Type")
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
