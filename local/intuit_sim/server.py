"""The HTTP face of the simulator: Intuit's OAuth and QuickBooks endpoints and the ``/_sim/`` control API."""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import logging
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.intuit_sim import responses
from local.intuit_sim.control import SimulatorControl
from local.intuit_sim.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SUBSCRIPTION_STATUS,
    KNOWN_SCOPES,
    SCOPE_ACCOUNTING,
    SCOPE_PAYMENT,
    ApiCall,
    ApiRefusal,
    App,
    SimError,
    SimState,
    control_error,
    oauth_error,
    page_error,
)
from local.intuit_sim.tokens import new_intuit_tid
from qbo_health.clock import Clock, SimulatedClock

logger = logging.getLogger(__name__)

HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
_ENDPOINT_CLASS = {"token": "token", "api": "api", "revoke": "revoke", "userinfo": "userinfo"}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Handler = Callable[..., Response]


def _rules() -> list[Rule]:
    public = [
        Rule("/.well-known/openid_configuration", endpoint="discovery", methods=["GET"]),
        Rule("/.well-known/openid_configuration/", endpoint="discovery", methods=["GET"]),
        Rule("/.well-known/openid_sandbox_configuration", endpoint="discovery", methods=["GET"]),
        Rule("/.well-known/openid_sandbox_configuration/", endpoint="discovery", methods=["GET"]),
        Rule("/op/v1/jwks", endpoint="jwks", methods=["GET"]),
        Rule("/connect/oauth2", endpoint="authorize", methods=["GET"]),
        Rule("/connect/oauth2/decision", endpoint="decision", methods=["POST"]),
        Rule("/oauth2/v1/tokens/bearer", endpoint="token", methods=["POST"]),
        Rule("/v2/oauth2/tokens/revoke", endpoint="revoke", methods=["POST"]),
        Rule("/v1/openid_connect/userinfo", endpoint="userinfo", methods=["GET"]),
        Rule("/v3/company/<realm_id>/<path:rest>", endpoint="api"),
    ]
    control = [
        ("/reset", "reset", "POST"),
        ("/apps", "register_app", "POST"),
        ("/companies", "create_company", "POST"),
        ("/companies", "list_companies", "GET"),
        ("/companies/<realm_id>/users", "add_user", "POST"),
        ("/companies/<realm_id>/users/<user_id>/admin", "set_admin", "POST"),
        ("/companies/<realm_id>/users/<user_id>", "remove_user", "DELETE"),
        ("/companies/<realm_id>/suspend", "suspend", "POST"),
        ("/companies/<realm_id>/reactivate", "reactivate", "POST"),
        ("/companies/<realm_id>/subscription", "subscription", "POST"),
        ("/companies/<realm_id>/name", "rename_company", "POST"),
        ("/companies/<realm_id>/disconnect", "disconnect", "POST"),
        ("/companies/<realm_id>/fault_style", "fault_style", "POST"),
        ("/tokens/issue", "issue_tokens", "POST"),
        ("/tokens/expire_access", "expire_access", "POST"),
        ("/tokens/revoke_grant", "revoke_grant", "POST"),
        ("/tokens/status", "grant_status", "POST"),
        ("/tokens/is_current", "is_current", "POST"),
        ("/faults", "faults", "POST"),
        ("/latency", "latency", "POST"),
        ("/rate_limit", "rate_limit", "POST"),
        ("/hold", "hold", "POST"),
        ("/in_flight", "in_flight", "GET"),
        ("/oauth_style", "oauth_style", "POST"),
        ("/metering", "set_metering", "POST"),
        ("/metering", "metering", "GET"),
        ("/clock", "clock", "GET"),
        ("/clock/advance", "advance_clock", "POST"),
        ("/stats", "stats", "GET"),
        ("/stats/reset", "reset_stats", "POST"),
    ]
    return public + [
        Rule(f"/_sim{path}", endpoint=f"sim_{name}", methods=[method]) for path, name, method in control
    ]


class _ConnectionAborted(Exception):
    """Raised after the socket was reset on purpose; the server treats it as a dropped connection."""


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location})


# -- control-body helpers ------------------------------------------------------------------------------


def _json_object(request: Request) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise control_error("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise control_error("body must be a JSON object")
    return body


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise control_error(f"{key!r} must be a non-empty string")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise control_error(f"{key!r} must be a string")
    return value or None


def _num(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise control_error(f"{key!r} must be a number")
    return float(value)


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise control_error(f"{key!r} must be true or false")
    return value


def _str_list(body: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = body.get(key, default)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise control_error(f"{key!r} must be a list of strings")
    return value


class SimulatorApp:
    """The WSGI application. Holds no state of its own beyond the routing map."""

    def __init__(self, state: SimState, clock: Clock) -> None:
        self.state = state
        self.clock = clock
        self.base_url = "http://127.0.0.1"
        self._map = Map(_rules())

    # -- plumbing --------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = 1024 * 1024
        try:
            response = self._dispatch(request)
        except _ConnectionAborted:
            raise ConnectionResetError("connection reset by the simulator's fault injection") from None
        except Exception as exc:  # a simulator bug; answer like Intuit's own 500 and never leak a trace
            frames = "".join(traceback.format_tb(exc.__traceback__))
            logger.error(
                "intuit simulator: %s on %s %s\n%s", type(exc).__name__, request.method, request.path, frames
            )
            response = responses.system_fault(True, self.clock.now())
        response.headers["intuit_tid"] = new_intuit_tid()
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        control = request.path.startswith("/_sim/")
        adapter = self._map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except (NotFound, MethodNotAllowed) as exc:
            self._latency(control)
            return self._no_route(request, exc)
        except HTTPException:
            self._latency(control)
            return responses.oauth_error(400, "invalid_request", "Malformed request")
        handler: Handler = getattr(self, f"_{endpoint}")
        # The API's latency is spent while the request is in flight (see _api); everything else waits here.
        self._latency(control or endpoint == "api")
        try:
            if control:
                return handler(request, **args)
            metered = endpoint == "api" and request.method == "GET"
            self.state.count_call(endpoint, args.get("realm_id") if metered else None)
            endpoint_class = _ENDPOINT_CLASS.get(endpoint)
            if endpoint_class is not None:
                fault = self.state.decide_fault(endpoint_class)
                if fault is not None and fault[0] == "lost":
                    self._serve_and_lose(request, handler, args)
                if fault is not None:
                    return self._inject(request, endpoint_class, *fault)
            return handler(request, **args)
        except SimError as error:
            return self._render_error(error)
        except HTTPException as exc:  # e.g. a body over the size limit
            status = exc.code or 400
            if control:
                return responses.json_response({"error": "bad_request", "detail": exc.name}, status)
            return responses.oauth_error(status, "invalid_request", exc.name)

    def _latency(self, skip: bool) -> None:
        delay = 0.0 if skip else self.state.latency_seconds()
        if delay > 0 and self.state.latency_simulated and isinstance(self.clock, SimulatedClock):
            self.clock.advance(delay)  # simulated latency: a time budget reads it on the simulated clock
        elif delay > 0:
            time.sleep(delay)

    def _render_error(self, error: SimError) -> Response:
        if error.kind == "oauth":
            description = error.description
            if error.code == "invalid_grant" and not self.state.invalid_grant_description:
                description = ""
            return responses.oauth_error(error.status, error.code, description)
        if error.kind == "empty":
            return Response(b"", status=error.status)
        if error.kind == "page":
            return responses.error_page(error.status, error.description)
        return responses.json_response({"error": error.code, "detail": error.description}, error.status)

    def _no_route(self, request: Request, exc: HTTPException) -> Response:
        status = exc.code or 404
        if request.path.startswith("/_sim/"):
            return responses.json_response({"error": "not_found", "detail": "no such control route"}, status)
        if request.path.startswith("/v3/"):
            detail = f"Operation Could not find resource for relative : {request.path} is not supported."
            return responses.api_refusal(
                ApiRefusal("unsupported", 400, detail),
                responses.wants_json(request.headers.get("Accept")),
                self.clock.now(),
            )
        return responses.oauth_error(
            status, "invalid_request", "Not Found" if status == 404 else "Method Not Allowed"
        )

    def _inject(self, request: Request, endpoint_class: str, kind: str, hang_seconds: float) -> Response:
        now = self.clock.now()
        if kind == "500":
            if endpoint_class == "api":
                return responses.system_fault(responses.wants_json(request.headers.get("Accept")), now)
            return responses.plain_status_page(500, "Internal Server Error")
        if kind == "503":
            return responses.plain_status_page(503, "Service Unavailable")
        if kind == "429":
            return responses.throttle(now)
        if kind == "timeout":
            time.sleep(hang_seconds)
            return responses.plain_status_page(504, "Gateway Time-out")
        raise self._dropped(request)

    def _serve_and_lose(self, request: Request, handler: Handler, args: Mapping[str, Any]) -> NoReturn:
        """Intuit did the work (a refresh rotated the token), but the answer never reaches the caller: the
        fault a client timeout or a dropped connection after the request arrived looks like."""
        with contextlib.suppress(SimError, HTTPException):  # a refusal's answer is lost as well
            handler(request, **args)
        raise self._dropped(request)

    def _dropped(self, request: Request) -> _ConnectionAborted:
        """Drop the connection without an answer (RST where the platform allows it), for the caller to raise.
        Drain the body first: left in the server's read buffer, it would be parsed as a next request line."""
        request.get_data(cache=False)
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return _ConnectionAborted()

    # -- discovery ------------------------------------------------------------------------------------

    def _discovery(self, request: Request) -> Response:
        base = self.base_url
        return responses.json_response(
            {
                "issuer": self.state.issuer,
                "authorization_endpoint": f"{base}/connect/oauth2",
                "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", "address", "phone"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            }
        )

    def _jwks(self, request: Request) -> Response:
        return responses.json_response(self.state.signer.jwks())

    # -- authorize and consent ------------------------------------------------------------------------

    def _validate_authorization(self, params: dict[str, str]) -> tuple[str, str, frozenset[str]]:
        """Checks an authorization request. Returns (client_id, redirect_uri, scopes).

        An unknown client or an unregistered redirect URI gets an error page (never a redirect to an
        unverified URI); every other problem is reported to the client by redirect.
        """
        client_id = params.get("client_id", "")
        app = self.state.app(client_id) if client_id else None
        if app is None:
            raise page_error(
                "The client_id is invalid or missing. Check the client ID on your app's Keys tab."
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not app.accepts_redirect(redirect_uri):
            raise page_error(
                "The redirect_uri query parameter value is invalid. Make sure it is listed in the Redirect "
                "URIs section on your app's keys tab and matches it exactly."
            )
        state = params.get("state")

        def fail(error: str, description: str) -> SimError:
            query = {"error": error, "error_description": description}
            if state:
                query["state"] = state
            return SimError("redirect", 302, error, _with_query(redirect_uri, query))

        response_type = params.get("response_type")
        if not response_type:
            raise fail("invalid_request", "response_type is required")
        if response_type != "code":
            raise fail("unsupported_response_type", "Only response_type=code is supported")
        scopes = frozenset(params.get("scope", "").split())
        if not scopes:
            raise fail("invalid_scope", "scope is required")
        if not scopes <= KNOWN_SCOPES:
            raise fail("invalid_scope", "Unknown scope: " + " ".join(sorted(scopes - KNOWN_SCOPES)))
        return client_id, redirect_uri, scopes

    def _authorize(self, request: Request) -> Response:
        params = {key: request.args.get(key, "") for key in request.args}
        try:
            client_id, _, _ = self._validate_authorization(params)
        except SimError as error:
            if error.kind == "redirect":
                return _redirect(error.description)
            raise
        return self._consent_page(client_id, params)

    def _consent_page(self, client_id: str, params: dict[str, str]) -> Response:
        esc = html.escape
        carried = ("client_id", "redirect_uri", "response_type", "scope", "state")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{esc(params[name])}">'
            for name in carried
            if name in params
        )
        directory = self.state.directory()
        company_options = "".join(
            f'<option value="{esc(c["realm_id"])}">{esc(c["name"])} ({esc(c["realm_id"])})</option>'
            for c in directory
        )
        user_groups = "".join(
            f'<optgroup label="{esc(c["name"])}" data-realm-id="{esc(c["realm_id"])}">'
            + "".join(
                f'<option value="{esc(u["user_id"])}" data-realm-id="{esc(c["realm_id"])}">'
                f"{esc(u['email'])} ({'Company admin' if u['admin'] else 'Standard user'})</option>"
                for u in c["users"]
            )
            + "</optgroup>"
            for c in directory
        )
        empty = "" if directory else '<p id="no-companies">There are no QuickBooks companies to connect.</p>'
        body = (
            "<h1>Connect to QuickBooks</h1>"
            f'<p id="app">{esc(client_id)} wants to access your QuickBooks Online company data.</p>'
            f"{empty}"
            '<form method="post" action="/connect/oauth2/decision">'
            f"{hidden}"
            '<p><label for="company">Company</label> '
            f'<select name="realm_id" id="company">{company_options}</select></p>'
            '<p><label for="user">Sign in as</label> '
            f'<select name="user_id" id="user">{user_groups}</select></p>'
            '<p><button type="submit" name="decision" value="connect" id="connect">Connect</button> '
            '<button type="submit" name="decision" value="cancel" id="cancel">Cancel</button></p>'
            "</form>"
        )
        return responses.html_page(200, "Intuit - Connect to QuickBooks", body)

    def _decision(self, request: Request) -> Response:
        form = request.form
        params = {key: form.get(key, "") for key in form}
        try:
            client_id, redirect_uri, scopes = self._validate_authorization(params)
        except SimError as error:
            if error.kind == "redirect":
                return _redirect(error.description)
            raise
        state = params.get("state")
        decision = params.get("decision")
        if decision == "cancel":
            query = {"error": "access_denied", "error_description": "The user did not authorize the app"}
            if state:
                query["state"] = state
            return _redirect(_with_query(redirect_uri, query))
        if decision != "connect":
            raise page_error("Choose Connect or Cancel.")
        realm_id = params.get("realm_id", "")
        user_id = params.get("user_id", "")
        if not realm_id or not user_id:
            raise page_error("Choose a company and a user.")
        code = self.state.create_code(client_id, redirect_uri, scopes, realm_id, user_id)
        query = {"code": code}
        if state:
            query["state"] = state
        if SCOPE_ACCOUNTING in scopes or SCOPE_PAYMENT in scopes:
            query["realmId"] = realm_id
        return _redirect(_with_query(redirect_uri, query))

    # -- token, revoke, userinfo ------------------------------------------------------------------------

    def _client(self, request: Request) -> App:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            raise oauth_error(401, "invalid_client")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise oauth_error(401, "invalid_client") from None
        client_id, separator, secret = decoded.partition(":")
        app = self.state.authenticate(client_id, secret) if separator else None
        if app is None:
            raise oauth_error(401, "invalid_client")
        return app

    def _token(self, request: Request) -> Response:
        app = self._client(request)
        if request.mimetype != "application/x-www-form-urlencoded":
            raise oauth_error(400, "invalid_request", "The body must be application/x-www-form-urlencoded")
        form = request.form
        for key in form:
            if len(form.getlist(key)) > 1:
                raise oauth_error(400, "invalid_request", f"Repeated parameter {key}")
        grant_type = form.get("grant_type", "")
        include_hard = request.headers.get(HARD_EXPIRY_HEADER, "").strip().lower() == "true"
        if not grant_type:
            raise oauth_error(400, "invalid_request", "grant_type is required")
        if grant_type == "authorization_code":
            code = form.get("code", "")
            redirect_uri = form.get("redirect_uri", "")
            if not code or not redirect_uri:
                raise oauth_error(400, "invalid_request", "code and redirect_uri are required")
            body = self.state.exchange_code(app, code, redirect_uri, include_hard)
        elif grant_type == "refresh_token":
            refresh_token = form.get("refresh_token", "")
            if not refresh_token:
                raise oauth_error(400, "invalid_request", "refresh_token is required")
            body = self.state.refresh(app, refresh_token, include_hard)
        else:
            raise oauth_error(400, "unsupported_grant_type")
        return responses.json_response(body, headers=_NO_STORE)

    def _revoke(self, request: Request) -> Response:
        app = self._client(request)
        try:
            payload = json.loads(request.get_data(cache=True))
        except (ValueError, UnicodeDecodeError):
            raise oauth_error(400, "invalid_request", "The body must be JSON") from None
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise oauth_error(400, "invalid_request", "token is required")
        self.state.revoke(app, token)
        return Response("", status=200)

    def _bearer(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            return None
        return token

    def _userinfo(self, request: Request) -> Response:
        token = self._bearer(request)
        if token is None:
            raise oauth_error(401, "invalid_token", "A bearer access token is required")
        return responses.json_response(self.state.userinfo(token))

    # -- QuickBooks API -------------------------------------------------------------------------------

    def _api(self, request: Request, realm_id: str, rest: str) -> Response:
        as_json = responses.wants_json(request.headers.get("Accept"))
        now = self.clock.now()
        if not request.headers.get("Authorization", "").strip():
            return responses.gateway_fault(401, "3200", "Token not found: no bearer token", as_json, now)
        token = self._bearer(request)
        if token is None:
            return responses.general_authentication_error(as_json, now)
        parts = rest.strip("/").split("/")
        resource = parts[0].lower()
        write = request.method != "GET"
        try:
            call = self.state.begin_api_call(token, realm_id, write=write)
        except ApiRefusal as refusal:
            return responses.api_refusal(refusal, as_json, now)
        try:
            # A slow Intuit: the request is in flight (it counts towards the 10) while it waits.
            self._latency(False)
            self.state.wait_if_held()
            now = self.clock.now()
            if request.method == "POST" and resource == "customer" and len(parts) == 1:
                return self._create_customer(request, call, as_json, now)
            if request.method != "GET" or len(parts) != 2 or resource != "companyinfo":
                raise ApiRefusal(
                    "unsupported",
                    400,
                    f"Operation Could not find resource for relative : /v3/company/{realm_id}/{rest} "
                    "is not supported.",
                )
            if call.refusal is not None:
                raise call.refusal
            if parts[1] != realm_id:
                raise ApiRefusal(
                    "610", 400, "Object Not Found : Something you're trying to use has been made inactive."
                )
            assert call.company is not None
            return responses.company_info(call.company, self.state.primary_email(realm_id), as_json, now)
        except ApiRefusal as refusal:
            return responses.api_refusal(refusal, as_json, now)
        finally:
            self.state.end_api_call(call)

    def _create_customer(self, request: Request, call: ApiCall, as_json: bool, now: datetime) -> Response:
        """``POST /v3/company/{realm}/customer``: a write, refused with 6190 while the company is read-only."""
        if call.refusal is not None:
            raise call.refusal
        try:
            body = json.loads(request.get_data(cache=True))
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise ApiRefusal("request_parse", 400, "The request body must be a JSON Customer object.")
        fields = {
            key: body[key]
            for key in ("DisplayName", "GivenName", "FamilyName", "CompanyName")
            if isinstance(body.get(key), str) and body[key].strip()
        }
        if not fields:
            raise ApiRefusal(
                "required_param",
                400,
                "Required parameter Name (DisplayName, GivenName or FamilyName) is missing in the request",
            )
        fields.setdefault(
            "DisplayName", " ".join(fields[k] for k in ("GivenName", "FamilyName") if k in fields)
        )
        assert call.company is not None
        customer = self.state.add_customer(call.company.realm_id, fields)
        return responses.customer(customer, as_json, now)

    # -- control API ----------------------------------------------------------------------------------

    def _sim_reset(self, request: Request) -> Response:
        self.state.reset()
        return responses.json_response({"ok": True})

    def _sim_register_app(self, request: Request) -> Response:
        body = _json_object(request)
        result = self.state.register_app(
            _str(body, "client_id"), _str(body, "client_secret"), _str_list(body, "redirect_uris", [])
        )
        return responses.json_response(result)

    def _sim_create_company(self, request: Request) -> Response:
        body = _json_object(request)
        realm_id = self.state.create_company(
            _opt_str(body, "realm_id"), _opt_str(body, "name"), _opt_str(body, "subscription") or "active"
        )
        return responses.json_response({"realm_id": realm_id})

    def _sim_list_companies(self, request: Request) -> Response:
        return responses.json_response(self.state.directory())

    def _sim_add_user(self, request: Request, realm_id: str) -> Response:
        body = _json_object(request)
        user_id = self.state.add_user(
            realm_id,
            _opt_str(body, "user_id"),
            _opt_str(body, "email"),
            _bool(body, "admin", True),
            _opt_str(body, "given_name"),
            _opt_str(body, "family_name"),
        )
        return responses.json_response({"user_id": user_id})

    def _sim_set_admin(self, request: Request, realm_id: str, user_id: str) -> Response:
        self.state.set_admin(realm_id, user_id, _bool(_json_object(request), "admin", True))
        return responses.json_response({"ok": True})

    def _sim_remove_user(self, request: Request, realm_id: str, user_id: str) -> Response:
        self.state.remove_user(realm_id, user_id)
        return responses.json_response({"ok": True})

    def _sim_suspend(self, request: Request, realm_id: str) -> Response:
        status = self.state.set_subscription_status(realm_id, "SUSPENDED")
        return responses.json_response({"ok": True, "subscription_status": status})

    def _sim_reactivate(self, request: Request, realm_id: str) -> Response:
        status = self.state.set_subscription_status(realm_id, DEFAULT_SUBSCRIPTION_STATUS)
        return responses.json_response({"ok": True, "subscription_status": status})

    def _sim_rename_company(self, request: Request, realm_id: str) -> Response:
        self.state.rename_company(realm_id, _str(_json_object(request), "name"))
        return responses.json_response({"ok": True})

    def _sim_subscription(self, request: Request, realm_id: str) -> Response:
        status = self.state.set_subscription_status(realm_id, _str(_json_object(request), "status"))
        return responses.json_response({"ok": True, "subscription_status": status})

    def _sim_disconnect(self, request: Request, realm_id: str) -> Response:
        client_id = _opt_str(_json_object(request), "client_id") or DEFAULT_CLIENT_ID
        return responses.json_response({"revoked": self.state.disconnect_app(realm_id, client_id)})

    def _sim_fault_style(self, request: Request, realm_id: str) -> Response:
        body = _json_object(request)
        status = body.get("status_6190")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            raise control_error("'status_6190' must be 400 or 200")
        self.state.set_fault_style(
            realm_id,
            non_admin_code=_opt_str(body, "non_admin_code"),
            status_6190=status,
            lapsed_reads=_opt_str(body, "lapsed_reads"),
            expired_token=_opt_str(body, "expired_token"),
        )
        return responses.json_response({"ok": True})

    def _sim_issue_tokens(self, request: Request) -> Response:
        body = _json_object(request)
        authorized = body.get("authorized_days_ago")
        result = self.state.issue_tokens(
            _str(body, "realm_id"),
            _str(body, "user_id"),
            _opt_str(body, "client_id") or DEFAULT_CLIENT_ID,
            _num(body, "refreshed_days_ago", 0.0),
            None if authorized is None else _num(body, "authorized_days_ago", 0.0),
            _opt_str(body, "scope"),
        )
        return responses.json_response(result)

    def _sim_expire_access(self, request: Request) -> Response:
        self.state.expire_access_token(_str(_json_object(request), "token"))
        return responses.json_response({"ok": True})

    def _sim_revoke_grant(self, request: Request) -> Response:
        self.state.revoke_grant_of(_str(_json_object(request), "token"))
        return responses.json_response({"ok": True})

    def _sim_grant_status(self, request: Request) -> Response:
        return responses.json_response(self.state.grant_status(_str(_json_object(request), "key")))

    def _sim_is_current(self, request: Request) -> Response:
        token = _str(_json_object(request), "token")
        return responses.json_response({"current": self.state.is_refresh_token_current(token)})

    def _sim_faults(self, request: Request) -> Response:
        body = _json_object(request)
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise control_error("'seed' must be an integer or null")
        self.state.set_faults(
            _num(body, "rate", 0.0),
            _str_list(body, "kinds", ["500", "503", "timeout", "429"]),
            _str_list(body, "endpoints", ["token", "api", "revoke", "userinfo"]),
            _num(body, "hang_seconds", 1.5),
            seed,
        )
        return responses.json_response({"ok": True})

    def _sim_latency(self, request: Request) -> Response:
        body = _json_object(request)
        self.state.set_latency(_num(body, "ms", 0.0), simulated=body.get("simulated") is True)
        return responses.json_response({"ok": True})

    def _sim_rate_limit(self, request: Request) -> Response:
        self.state.set_rate_limit(_bool(_json_object(request), "enabled", True))
        return responses.json_response({"ok": True})

    def _sim_hold(self, request: Request) -> Response:
        self.state.hold(_bool(_json_object(request), "hold", True))
        return responses.json_response({"ok": True})

    def _sim_in_flight(self, request: Request) -> Response:
        realm_id = request.args.get("realm_id") or None
        client_id = request.args.get("client_id") or None
        return responses.json_response({"in_flight": self.state.in_flight(realm_id, client_id)})

    def _sim_oauth_style(self, request: Request) -> Response:
        self.state.set_oauth_style(_bool(_json_object(request), "invalid_grant_description", True))
        return responses.json_response({"ok": True})

    def _sim_set_metering(self, request: Request) -> Response:
        body = _json_object(request)
        allowance = body.get("allowance")
        if allowance is not None and (not isinstance(allowance, int) or isinstance(allowance, bool)):
            raise control_error("'allowance' must be a whole number or null")
        self.state.set_metering(allowance)
        return responses.json_response({"ok": True, "allowance": allowance})

    def _sim_metering(self, request: Request) -> Response:
        month = request.args.get("month") or None
        client_id = request.args.get("client_id") or DEFAULT_CLIENT_ID
        return responses.json_response(self.state.metering_view(month, client_id))

    def _sim_clock(self, request: Request) -> Response:
        return responses.json_response({"now": self.clock.now().isoformat()})

    def _sim_advance_clock(self, request: Request) -> Response:
        seconds = _num(_json_object(request), "seconds", 0.0)
        if seconds < 0:
            raise control_error("the clock never goes backwards")
        if not isinstance(self.clock, SimulatedClock):
            raise control_error("the simulator was given a clock that cannot be advanced", 409, "conflict")
        return responses.json_response({"now": self.clock.advance(seconds).isoformat()})

    def _sim_stats(self, request: Request) -> Response:
        return responses.json_response(self.state.stats_view())

    def _sim_reset_stats(self, request: Request) -> Response:
        self.state.reset_stats()
        return responses.json_response({"ok": True})


class _QuietHandler(WSGIRequestHandler):
    """No access log: request lines are noise in test output (and the simulator never logs tokens)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def version_string(self) -> str:
        return "nginx"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stock error page quotes the malformed request line back; never echo what might be a token.
        super().send_error(code, "Bad request syntax" if code == 400 else None, None)

    def log_error(self, format: str, *args: Any) -> None:
        # http.server echoes a malformed request line here, and that line may carry a token: log the code only.
        code = args[0] if args and isinstance(args[0], int) else "-"
        super().log_error("rejected a malformed request (code %s)", code)


class IntuitSimulator:
    """Intuit's OAuth server and the QuickBooks CompanyInfo API, served on 127.0.0.1 in a daemon thread."""

    def __init__(self, clock: Clock, host: str = "127.0.0.1", port: int = 0) -> None:
        self.clock = clock
        self.host = host
        self.port = port
        self.state = SimState(clock)
        self.app = SimulatorApp(self.state, clock)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        server = make_server(self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler)
        self.port = server.socket.getsockname()[1]
        self._server = server
        self.app.base_url = self.base_url
        self.state.issuer = f"{self.base_url}/op/v1"
        self._thread = threading.Thread(target=server.serve_forever, name="intuit-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        """Wipes companies, users, grants, tokens, faults, latency and stats; keeps the default app."""
        self.state.reset()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid_sandbox_configuration"

    @property
    def control(self) -> SimulatorControl:
        return SimulatorControl(self.base_url)

    def __enter__(self) -> IntuitSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
