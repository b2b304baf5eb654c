"""The Intuit client: OAuth 2.0 token calls, revoke, userinfo and the CompanyInfo health probe.

Every failure becomes :class:`~qbo_health.errors.IntuitCallFailed` carrying an
:class:`~qbo_health.domain.model.IntuitFailure` (parsed by :mod:`.intuit_faults`); what the failure *means*
is decided by :mod:`qbo_health.domain.classification`, not here.

Token calls go through requests-oauthlib; a compliance hook turns any non-2xx or non-JSON answer into
``IntuitCallFailed`` before oauthlib tries to read it. One :class:`~requests.adapters.HTTPAdapter` (one
connection pool per host) is shared by the API session and by every short-lived ``OAuth2Session``, so
connections are reused across calls and threads. The client keeps no per-call state: one instance can serve
many threads at once.

Token values never appear in exceptions, reprs or log lines. This module does not log; requests-oauthlib's
debug lines (which print token responses) are filtered out.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
from oauthlib.oauth2 import OAuth2Error
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from qbo_health.adapters.intuit_faults import parse_failure, redact
from qbo_health.clock import Clock
from qbo_health.domain.model import IntuitFailure, TokenPair
from qbo_health.errors import ConfigurationError, IntuitCallFailed

DEFAULT_SCOPES: tuple[str, ...] = ("com.intuit.quickbooks.accounting", "openid", "email", "profile")
DEFAULT_MINOR_VERSION = 75
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
TID_HEADER = "intuit_tid"
SUBSCRIPTION_STATUS = "SubscriptionStatus"  # a NameValue entry of CompanyInfo
_MAX_NAME_VALUE_CHARS = 64

DEFAULT_ACCESS_SECONDS = 3600  # when Intuit leaves out expires_in
DEFAULT_REFRESH_SECONDS = 100 * 24 * 3600  # when Intuit leaves out x_refresh_token_expires_in
_LOOPBACK_NAMES = frozenset({"localhost"})


class _DropDebug(logging.Filter):
    """requests-oauthlib logs request bodies and token responses at DEBUG: never let those through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


for _name in ("requests_oauthlib.oauth2_session", "requests_oauthlib.oauth2_auth"):
    logging.getLogger(_name).addFilter(_DropDebug())


# --- endpoints -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntuitEndpoints:
    authorize_url: str
    token_url: str
    revoke_url: str
    userinfo_url: str
    api_base: str

    def __post_init__(self) -> None:
        for url in self.urls():
            if not _is_https(url) and not _is_loopback_http(url):
                raise ConfigurationError(f"Intuit endpoint must be https (or http on localhost): {url!r}")
        object.__setattr__(self, "api_base", self.api_base.rstrip("/"))

    @classmethod
    def production(cls) -> IntuitEndpoints:
        return cls(
            authorize_url="https://appcenter.intuit.com/connect/oauth2",
            token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",  # noqa: S106
            revoke_url="https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
            userinfo_url="https://accounts.platform.intuit.com/v1/openid_connect/userinfo",
            api_base="https://quickbooks.api.intuit.com",
        )

    @classmethod
    def sandbox(cls) -> IntuitEndpoints:
        return cls(
            authorize_url="https://appcenter.intuit.com/connect/oauth2",
            token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",  # noqa: S106
            revoke_url="https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
            userinfo_url="https://sandbox-accounts.platform.intuit.com/v1/openid_connect/userinfo",
            api_base="https://sandbox-quickbooks.api.intuit.com",
        )

    @classmethod
    def on_host(cls, base_url: str) -> IntuitEndpoints:
        """Every endpoint on one host, at Intuit's paths: how the simulator is reached."""
        base = base_url.rstrip("/")
        return cls(
            authorize_url=f"{base}/connect/oauth2",
            token_url=f"{base}/oauth2/v1/tokens/bearer",
            revoke_url=f"{base}/v2/oauth2/tokens/revoke",
            userinfo_url=f"{base}/v1/openid_connect/userinfo",
            api_base=base,
        )

    @classmethod
    def of_environment(cls, environment: str, base_url: str | None = None) -> IntuitEndpoints:
        """The one place configuration selects Intuit's endpoints (``INTUIT_ENVIRONMENT``, ``INTUIT_BASE_URL``):
        a base URL puts them all on that host (the simulator, or a stand-in for the sandbox); otherwise
        Intuit's production or sandbox hosts. ``IntuitSettings`` refuses a base URL for production."""
        if base_url:
            return cls.on_host(base_url)
        if environment == "production":
            return cls.production()
        if environment == "sandbox":
            return cls.sandbox()
        raise ConfigurationError(f"no Intuit endpoints for environment {environment!r} without a base URL")

    def urls(self) -> tuple[str, ...]:
        return (self.authorize_url, self.token_url, self.revoke_url, self.userinfo_url, self.api_base)

    @property
    def uses_loopback_http(self) -> bool:
        return any(_is_loopback_http(url) for url in self.urls())


def _is_https(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname)


def _is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    host = parts.hostname.lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantedTokens:
    """What a token call returned. ``pair`` and ``id_token`` are secrets: neither shows in the repr."""

    pair: TokenPair
    id_token: str | None = field(default=None, repr=False)
    intuit_tid: str | None = None
    realm_id: str | None = None


@dataclass(frozen=True)
class CompanyInfo:
    company_name: str
    intuit_tid: str | None = None
    # The raw ``SubscriptionStatus`` of CompanyInfo's ``NameValue`` list (None when absent); what it means is
    # decided by ``qbo_health.domain.subscription``.
    subscription_status: str | None = None


@dataclass(frozen=True)
class UserIdentity:
    user_id: str
    email: str | None = None


# --- client ----------------------------------------------------------------------------------------------


class IntuitClient:
    def __init__(
        self,
        endpoints: IntuitEndpoints,
        client_id: str,
        client_secret: str,
        *,
        clock: Clock,
        timeout_seconds: float = 10.0,
        minor_version: int = DEFAULT_MINOR_VERSION,
        max_connections: int = 32,
    ) -> None:
        if not client_id or not client_secret:
            raise ConfigurationError("Intuit client id and secret are required")
        self.endpoints = endpoints
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._timeout = timeout_seconds
        self._minor_version = minor_version
        if endpoints.uses_loopback_http:
            # oauthlib refuses http:// unless this (process-wide) variable is set. IntuitEndpoints refuses
            # plain http for anything but a loopback host, so only a client of the local simulator sets it;
            # production and sandbox endpoints (https) never do.
            os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

        self._adapter = HTTPAdapter(
            pool_connections=8, pool_maxsize=max_connections, max_retries=0, pool_block=False
        )
        self._environment = _Environment.read(endpoints.api_base)
        self._session = _configure(requests.Session(), self._adapter, self._environment)

    def __repr__(self) -> str:
        return f"IntuitClient(api_base={self.endpoints.api_base!r}, client_id={self._client_id!r})"

    def close(self) -> None:
        """Close pooled connections (the client is unusable afterwards)."""
        self._session.close()

    # --- OAuth -------------------------------------------------------------------------------------------

    def authorization_url(self, state: str, redirect_uri: str, scopes: Sequence[str] = DEFAULT_SCOPES) -> str:
        oauth = OAuth2Session(client_id=self._client_id, redirect_uri=redirect_uri, scope=list(scopes))
        url, _state = oauth.authorization_url(self.endpoints.authorize_url, state=state)
        return str(url)

    def exchange_code(self, code: str, redirect_uri: str, *, realm_id: str | None = None) -> GrantedTokens:
        """Exchange an authorization code (single-use: call at most once per code)."""
        secrets = (code, self._client_secret)
        started = self._clock.now()
        token, response = self._token_call(
            secrets,
            lambda oauth: oauth.fetch_token(
                self.endpoints.token_url,
                code=code,
                auth=self._basic_auth(),
                include_client_id=False,
                timeout=self._timeout,
                headers=self._token_headers(),
            ),
            redirect_uri=redirect_uri,
        )
        return self._granted(token, started, response, realm_id=realm_id)

    def refresh(self, refresh_token: str) -> GrantedTokens:
        """Refresh: the answer may carry a new refresh token, which replaces the old one at once."""
        secrets = (refresh_token, self._client_secret)
        started = self._clock.now()
        token, response = self._token_call(
            secrets,
            lambda oauth: oauth.refresh_token(
                self.endpoints.token_url,
                refresh_token=refresh_token,
                auth=self._basic_auth(),
                timeout=self._timeout,
                headers=self._token_headers(),
            ),
        )
        return self._granted(token, started, response)

    def revoke(self, token: str) -> None:
        """Revoke a refresh (or access) token: the app is disconnected from the company."""
        secrets = (token, self._client_secret)
        response = self._send(
            "POST",
            self.endpoints.revoke_url,
            endpoint="revoke",
            secrets=secrets,
            auth=self._basic_auth(),
            json={"token": token},
            headers={"Accept": "application/json"},
        )
        self._raise_for_failure(response, "revoke", secrets)

    # --- resources ---------------------------------------------------------------------------------------

    def company_info(self, realm_id: str, access_token: str) -> CompanyInfo:
        """The health probe: ``GET /v3/company/{realm}/companyinfo/{realm}``."""
        secrets = (access_token,)
        realm = quote(realm_id, safe="")
        response = self._send(
            "GET",
            f"{self.endpoints.api_base}/v3/company/{realm}/companyinfo/{realm}",
            endpoint="api",
            secrets=secrets,
            params={"minorversion": str(self._minor_version)},
            headers=_bearer(access_token),
        )
        self._raise_for_failure(response, "api", secrets)
        data = _json_object(response)
        info = data.get("CompanyInfo") if data is not None else None
        if not isinstance(info, Mapping):
            raise self._malformed(response, "api", "CompanyInfo answer without CompanyInfo")
        name = info.get("CompanyName")
        if not isinstance(name, str):
            raise self._malformed(response, "api", "CompanyInfo answer without CompanyName")
        return CompanyInfo(
            company_name=name,
            intuit_tid=_tid(response),
            subscription_status=_name_value(info, SUBSCRIPTION_STATUS),
        )

    def userinfo(self, access_token: str) -> UserIdentity:
        """The OpenID identity of the user who granted the tokens (not their QBO role)."""
        secrets = (access_token,)
        response = self._send(
            "GET",
            self.endpoints.userinfo_url,
            endpoint="userinfo",
            secrets=secrets,
            headers=_bearer(access_token),
        )
        self._raise_for_failure(response, "userinfo", secrets)
        data = _json_object(response)
        subject = data.get("sub") if data is not None else None
        if not isinstance(subject, str) or not subject:
            raise self._malformed(response, "userinfo", "userinfo answer without sub")
        email = data.get("email") if data is not None else None
        return UserIdentity(user_id=subject, email=email if isinstance(email, str) and email else None)

    # --- internals ---------------------------------------------------------------------------------------

    def _basic_auth(self) -> HTTPBasicAuth:
        return HTTPBasicAuth(self._client_id, self._client_secret)

    @staticmethod
    def _token_headers() -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            HARD_EXPIRY_HEADER: "true",
        }

    def _token_call(
        self,
        secrets: Sequence[str],
        invoke: Callable[[OAuth2Session], Mapping[str, Any]],
        *,
        redirect_uri: str | None = None,
    ) -> tuple[Mapping[str, Any], requests.Response | None]:
        """Run one token request on a fresh OAuth2Session; returns oauthlib's token dict and the response.

        A fresh session per call because OAuth2Session keeps token state; it shares the client's connection
        pool. It is never closed: closing a session closes its adapters, and the adapter is shared.
        """
        holder: dict[str, requests.Response] = {}
        oauth = _configure(
            OAuth2Session(client_id=self._client_id, redirect_uri=redirect_uri),
            self._adapter,
            self._environment,
        )
        hook = self._token_response_hook(holder, secrets)
        oauth.register_compliance_hook("access_token_response", hook)
        oauth.register_compliance_hook("refresh_token_response", hook)
        try:
            return invoke(oauth), holder.get("response")
        except IntuitCallFailed:
            raise
        except Exception as exc:
            mapped = self._mapped(exc, "token", holder, secrets)
        # Raised outside the except block, so no __context__ keeps oauthlib's objects (and their tokens).
        raise mapped

    def _token_response_hook(
        self, holder: dict[str, requests.Response], secrets: Sequence[str]
    ) -> Callable[[requests.Response], requests.Response]:
        def check(response: requests.Response) -> requests.Response:
            holder["response"] = response
            self._raise_for_failure(response, "token", secrets)
            data = _json_object(response)
            if data is None:
                raise self._malformed(response, "token", "token answer is not a JSON object")
            if not isinstance(data.get("access_token"), str) or not data.get("access_token"):
                raise self._malformed(response, "token", "token answer without access_token")
            return response

        return check

    def _granted(
        self,
        token: Mapping[str, Any],
        started: datetime,
        response: requests.Response | None,
        *,
        realm_id: str | None = None,
    ) -> GrantedTokens:
        tid = _tid(response) if response is not None else None
        access = token.get("access_token")
        refresh = token.get("refresh_token")
        try:
            access_seconds = _seconds(token.get("expires_in"), DEFAULT_ACCESS_SECONDS)
            refresh_seconds = _seconds(token.get("x_refresh_token_expires_in"), DEFAULT_REFRESH_SECONDS)
            hard_raw = token.get("x_refresh_token_hard_expires_in")
            hard_seconds = None if hard_raw is None else _seconds(hard_raw, 0)
        except ValueError:
            failure = IntuitFailure(
                status=response.status_code if response is not None else None,
                intuit_tid=tid,
                message="token answer with unreadable expiry",
                endpoint="token",
            )
            raise IntuitCallFailed(failure) from None
        if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
            failure = IntuitFailure(
                status=response.status_code if response is not None else None,
                intuit_tid=tid,
                message="token answer without access_token or refresh_token",
                endpoint="token",
            )
            raise IntuitCallFailed(failure)
        id_token = token.get("id_token")
        pair = TokenPair(
            access_token=access,
            refresh_token=refresh,
            access_expires_at=started + timedelta(seconds=access_seconds),
            refresh_expires_at=started + timedelta(seconds=refresh_seconds),
            hard_expires_at=None if hard_seconds is None else started + timedelta(seconds=hard_seconds),
        )
        return GrantedTokens(
            pair=pair,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            intuit_tid=tid,
            realm_id=realm_id,
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        secrets: Sequence[str],
        **kwargs: Any,
    ) -> requests.Response:
        try:
            return self._session.request(method, url, timeout=self._timeout, allow_redirects=False, **kwargs)
        except Exception as exc:
            mapped = self._mapped(exc, endpoint, {}, secrets)
        raise mapped  # outside the except block: no __context__

    def _raise_for_failure(self, response: requests.Response, endpoint: str, secrets: Sequence[str]) -> None:
        try:
            body = response.content
        except requests.RequestException as exc:  # body cut off mid-read
            raise self._mapped(exc, endpoint, {"response": response}, secrets) from None
        failure = parse_failure(
            response.status_code,
            response.headers.get("Content-Type"),
            body,
            intuit_tid=_tid(response),
            endpoint=endpoint,
        )
        if failure is not None:
            raise IntuitCallFailed(_scrubbed(failure, (*secrets, self._client_secret)))

    def _malformed(self, response: requests.Response, endpoint: str, message: str) -> IntuitCallFailed:
        return IntuitCallFailed(
            IntuitFailure(
                status=response.status_code, intuit_tid=_tid(response), message=message, endpoint=endpoint
            )
        )

    def _mapped(
        self,
        exc: BaseException,
        endpoint: str,
        holder: Mapping[str, requests.Response],
        secrets: Sequence[str],
    ) -> IntuitCallFailed:
        """Turn a transport or oauthlib exception into IntuitCallFailed (the caller drops the cause)."""
        if isinstance(exc, IntuitCallFailed):
            return exc
        response = holder.get("response")
        status = response.status_code if response is not None else None
        tid = _tid(response) if response is not None else None
        if isinstance(exc, requests.Timeout):
            failure = IntuitFailure(
                status=None, transport="timeout", message=type(exc).__name__, endpoint=endpoint
            )
        elif isinstance(exc, requests.RequestException):
            failure = IntuitFailure(
                status=None, transport="connection", message=type(exc).__name__, endpoint=endpoint
            )
        elif isinstance(exc, OAuth2Error):
            description = exc.description if isinstance(exc.description, str) else None
            failure = IntuitFailure(
                status=status if status is not None else getattr(exc, "status_code", None),
                oauth_error=exc.error if isinstance(exc.error, str) else None,
                intuit_tid=tid,
                message=redact(description, (*secrets, self._client_secret))[:200] if description else None,
                endpoint=endpoint,
            )
        else:  # oauthlib's scope Warning, ValueError on a bad expires_in, anything unforeseen
            failure = IntuitFailure(
                status=status,
                intuit_tid=tid,
                message=f"unreadable answer ({type(exc).__name__})",
                endpoint=endpoint,
            )
        return IntuitCallFailed(failure)


# --- helpers ---------------------------------------------------------------------------------------------


_S = TypeVar("_S", bound=requests.Session)


@dataclass(frozen=True)
class _Environment:
    """What requests would read from the environment on every request (proxies, CA bundle), read once per
    container instead: an environment does not change while a Lambda runs, and the per-request read cost
    about 0.8 ms of CPU per Intuit call."""

    proxies: dict[str, str]
    verify: bool | str

    @classmethod
    def read(cls, url: str) -> _Environment:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        return cls(dict(requests.utils.get_environ_proxies(url)), bundle or True)


def _configure(session: _S, adapter: HTTPAdapter, environment: _Environment) -> _S:
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False
    session.proxies.update(environment.proxies)
    session.verify = environment.verify
    # One session serves every company: never carry a cookie from one answer into another request.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def _bearer(access_token: str) -> dict[str, str]:
    return {"Accept": "application/json", "Authorization": f"Bearer {access_token}"}


def _tid(response: requests.Response) -> str | None:
    value = response.headers.get(TID_HEADER)
    if not value:
        return None
    return value.strip()[:128] or None


def _name_value(info: Mapping[str, Any], name: str) -> str | None:
    """The ``Value`` of the ``NameValue`` entry called ``name`` (``[{"Name": .., "Value": ..}, ..]``)."""
    entries = info.get("NameValue")
    if not isinstance(entries, list):
        return None
    for entry in entries[:200]:
        if isinstance(entry, Mapping) and entry.get("Name") == name:
            value = entry.get("Value")
            return value.strip()[:_MAX_NAME_VALUE_CHARS] if isinstance(value, str) else None
    return None


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _seconds(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError("boolean is not a duration")
    seconds = int(float(value))
    if seconds < 0:
        raise ValueError("negative duration")
    return seconds


def _scrubbed(failure: IntuitFailure, secrets: Iterable[str]) -> IntuitFailure:
    if failure.message is None:
        return failure
    return replace(failure, message=redact(failure.message, secrets))
