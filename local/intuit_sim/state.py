"""The simulator's model of Intuit: apps, companies, users, grants, codes and tokens.

Everything here is plain Python guarded by one lock, with no HTTP in sight: :mod:`local.intuit_sim.server`
parses requests, calls one method, and renders the result or the :class:`SimError` it raises.

Everything that depends on time (token lifetimes, the per-minute limit, the metering month) reads the
injected clock. Requests in flight are counted as they happen; a test holds them with :meth:`SimState.hold`
instead of relying on how fast the machine is.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from local.intuit_sim import tokens
from qbo_health.clock import Clock

ACCESS_TOKEN_LIFETIME = timedelta(seconds=3600)
REFRESH_WINDOW = timedelta(days=100)
HARD_CAP = timedelta(days=5 * 365)
ROTATION_AGE = timedelta(hours=24)
CODE_LIFETIME = timedelta(minutes=10)

DEFAULT_CLIENT_ID = "sim-client-id"
DEFAULT_CLIENT_SECRET = "sim-client-secret"

SCOPE_ACCOUNTING = "com.intuit.quickbooks.accounting"
SCOPE_PAYMENT = "com.intuit.quickbooks.payment"
KNOWN_SCOPES = frozenset(
    {
        SCOPE_ACCOUNTING,
        SCOPE_PAYMENT,
        "openid",
        "profile",
        "email",
        "phone",
        "address",
        "intuit_name",
        "com.intuit.quickbooks.payroll",
        "com.intuit.quickbooks.payroll.timetracking",
        "com.intuit.quickbooks.payroll.benefits",
        "project-management.project",
    }
)
DEFAULT_ISSUED_SCOPE = f"{SCOPE_ACCOUNTING} openid profile email"

ENDPOINT_CLASSES = ("token", "api", "revoke", "userinfo")
FAULT_KINDS = ("500", "503", "timeout", "429", "reset", "lost")
DEFAULT_FAULT_KINDS = ("500", "503", "timeout", "429")

CONCURRENT_PER_REALM = 10
RATE_PER_MINUTE = 500
MINUTE = timedelta(seconds=60)
HOLD_LIMIT_SECONDS = 60.0  # a held request goes on by itself after this long, so a forgotten hold cannot hang

# CompanyInfo's NameValue "SubscriptionStatus". The last four make the company read-only.
SUBSCRIPTION_STATUSES = (
    "TRIAL",
    "TRIALOPTIN",
    "SUBSCRIBED",
    "PAID",
    "EXPIRED",
    "RESTRICTED",
    "SUSPENDED",
    "CANCELED",
)
READ_ONLY_STATUSES = frozenset({"EXPIRED", "RESTRICTED", "SUSPENDED", "CANCELED"})
DEFAULT_SUBSCRIPTION_STATUS = "SUBSCRIBED"
# The control API's older words for a status.
SUBSCRIPTION_ALIASES = {"active": "SUBSCRIBED", "suspended": "SUSPENDED"}

BUILDER_TIER_ALLOWANCE = 500_000  # metered calls a month per app on Intuit's free Builder tier


class SimError(Exception):
    """A refusal. ``kind`` tells the server which shape to render:

    - ``oauth``: RFC 6749 JSON ``{"error": code, "error_description": description}``
    - ``page``: an HTML error page (the authorize endpoint never redirects to an unverified URI)
    - ``control``: JSON ``{"error": code, "detail": description}`` for the ``/_sim/`` API
    """

    def __init__(self, kind: str, status: int, code: str, description: str = "") -> None:
        super().__init__(f"{kind} {status} {code}")
        self.kind = kind
        self.status = status
        self.code = code
        self.description = description


def oauth_error(status: int, code: str, description: str = "") -> SimError:
    return SimError("oauth", status, code, description)


def page_error(description: str, status: int = 400) -> SimError:
    return SimError("page", status, "invalid_request", description)


def control_error(description: str, status: int = 400, code: str = "bad_request") -> SimError:
    return SimError("control", status, code, description)


class ApiRefusal(Exception):
    """The QuickBooks API refuses a request; ``kind`` picks the shape (``responses.api_refusal``)."""

    def __init__(self, kind: str, status: int, detail: str) -> None:
        super().__init__(f"{kind} {status}")
        self.kind = kind
        self.status = status
        self.detail = detail


@dataclass
class App:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    allow_loopback: bool = False

    def accepts_redirect(self, uri: str) -> bool:
        if uri in self.redirect_uris:
            return True
        if not self.allow_loopback:
            return False
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost"} and port is not None


@dataclass
class User:
    user_id: str
    email: str
    given_name: str
    family_name: str


@dataclass
class Company:
    realm_id: str
    name: str
    subscription_status: str
    created_at: datetime
    members: dict[str, bool] = field(default_factory=dict)  # user_id -> is admin
    non_admin_code: Literal["3100", "120"] = "3100"
    status_6190: Literal[400, 200] = 400
    lapsed_reads: Literal["serve", "refuse"] = "serve"
    expired_token_code: Literal["100", "3200"] = "100"
    customers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def read_only(self) -> bool:
        return self.subscription_status in READ_ONLY_STATUSES


def subscription_status(value: str) -> str:
    """A status name (any case) or one of the older words ``active``/``suspended``; raises a control error."""
    status = SUBSCRIPTION_ALIASES.get(value, value.upper() if isinstance(value, str) else "")
    if status not in SUBSCRIPTION_STATUSES:
        raise control_error(
            f"subscription must be one of {list(SUBSCRIPTION_STATUSES)} (or 'active'/'suspended')"
        )
    return status


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    realm_id: str
    user_id: str
    issued_at: datetime
    grant_id: str | None = None  # set once exchanged


@dataclass
class AccessToken:
    grant_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass
class Grant:
    grant_id: str
    client_id: str
    realm_id: str
    user_id: str
    scopes: frozenset[str]
    authorized_at: datetime
    hard_expires_at: datetime
    refresh_token: str
    refresh_issued_at: datetime
    last_refreshed_at: datetime
    refresh_expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    access_tokens: list[str] = field(default_factory=list)


@dataclass
class FaultConfig:
    rate: float = 0.0
    kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    endpoints: tuple[str, ...] = ENDPOINT_CLASSES
    hang_seconds: float = 1.5
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class Stats:
    calls: Counter[str] = field(default_factory=Counter)
    metered: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    refresh_grants: int = 0
    code_grants: int = 0
    refresh_attempts: int = 0
    code_attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "metered": dict(self.metered),
            "faults": dict(self.faults),
            "throttled": self.throttled,
            "refresh_grants": self.refresh_grants,
            "code_grants": self.code_grants,
            "refresh_attempts": self.refresh_attempts,
            "code_attempts": self.code_attempts,
        }


class RateLimiter:
    """Intuit's limits per (app, realm): 10 requests in flight at once and 500 per sliding minute.

    The minute is measured on the simulated clock. ``enter`` admits a request (or refuses it) and ``leave``
    ends it; a refused request never counts.
    """

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[datetime]] = {}
        self.in_flight: Counter[tuple[str, str]] = Counter()

    def enter(self, key: tuple[str, str], now: datetime) -> bool:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - MINUTE:
            hits.popleft()
        if self.in_flight[key] >= CONCURRENT_PER_REALM or len(hits) >= RATE_PER_MINUTE:
            return False
        hits.append(now)
        self.in_flight[key] += 1
        return True

    def leave(self, key: tuple[str, str]) -> None:
        if self.in_flight[key] > 0:
            self.in_flight[key] -= 1
        if self.in_flight[key] == 0:
            del self.in_flight[key]


@dataclass
class ApiCall:
    """One QuickBooks API request that got past the gateway (token, metering, limits) and is now in flight.

    ``refusal`` is what the service answers instead of data (3100, 6190, 120), decided on entry; ``slot`` is
    the (app, realm) it occupies until :meth:`SimState.end_api_call`.
    """

    grant: Grant
    company: Company | None
    slot: tuple[str, str] | None
    refusal: ApiRefusal | None = None


def _seconds(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds()))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class SimState:
    """All of Intuit's state the simulator keeps. Every public method takes the lock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.issuer = "http://127.0.0.1/op/v1"
        self.signer = tokens.IdTokenSigner()
        self._lock = threading.RLock()
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.apps: dict[str, App] = {}
            self.companies: dict[str, Company] = {}
            self.users: dict[str, User] = {}
            self.codes: dict[str, AuthCode] = {}
            self.grants: dict[str, Grant] = {}
            self.refresh_index: dict[str, str] = {}  # every refresh value ever issued -> grant id
            self.access_index: dict[str, AccessToken] = {}
            self.faults = FaultConfig()
            self.latency_ms = 0.0
            self.latency_simulated = False  # True: latency moves the simulated clock instead of sleeping
            self.rate_limit_enabled = True
            self.rate_limiter = RateLimiter()
            self.stats = Stats()
            self.invalid_grant_description = True
            self.metering_allowance: int | None = None
            self.metering: Counter[tuple[str, str]] = Counter()  # (client_id, "YYYY-MM") -> metered calls
            previous_gate = getattr(self, "_gate", None)
            self._gate = threading.Event()
            self._gate.set()
            if previous_gate is not None:
                previous_gate.set()  # a reset lets every held request go
            self.apps[DEFAULT_CLIENT_ID] = App(
                DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, [], allow_loopback=True
            )

    def now(self) -> datetime:
        return self.clock.now()

    # -- apps ------------------------------------------------------------------------------------------

    def register_app(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> dict[str, Any]:
        if not client_id or not client_secret:
            raise control_error("client_id and client_secret are required")
        with self._lock:
            existing = self.apps.get(client_id)
            allow_loopback = existing.allow_loopback if existing else False
            self.apps[client_id] = App(client_id, client_secret, list(redirect_uris), allow_loopback)
            return {"client_id": client_id, "redirect_uris": list(redirect_uris)}

    def app(self, client_id: str) -> App | None:
        with self._lock:
            return self.apps.get(client_id)

    def authenticate(self, client_id: str, client_secret: str) -> App | None:
        with self._lock:
            app = self.apps.get(client_id)
            if app is None or not secrets.compare_digest(app.client_secret, client_secret):
                return None
            return app

    # -- companies and users ---------------------------------------------------------------------------

    def create_company(self, realm_id: str | None, name: str | None, subscription: str) -> str:
        status = subscription_status(subscription)
        with self._lock:
            if realm_id is None:
                realm_id = "9341" + "".join(str(secrets.randbelow(10)) for _ in range(12))
                while realm_id in self.companies:
                    realm_id = "9341" + "".join(str(secrets.randbelow(10)) for _ in range(12))
            elif not realm_id or realm_id in self.companies:
                raise control_error(f"realm {realm_id!r} exists or is empty", 409, "conflict")
            label = name or f"Sandbox Company_US_{len(self.companies) + 1}"
            self.companies[realm_id] = Company(realm_id, label, status, self.now())
            return realm_id

    def _company(self, realm_id: str) -> Company:
        company = self.companies.get(realm_id)
        if company is None:
            raise control_error(f"no company {realm_id!r}", 404, "not_found")
        return company

    def add_user(
        self,
        realm_id: str,
        user_id: str | None,
        email: str | None,
        admin: bool,
        given_name: str | None = None,
        family_name: str | None = None,
    ) -> str:
        with self._lock:
            company = self._company(realm_id)
            user_id = user_id or str(uuid.uuid4())
            user = self.users.get(user_id)
            if user is None:
                user = User(
                    user_id,
                    email or f"user-{user_id[:8]}@example.com",
                    given_name or "Sim",
                    family_name or f"User {len(self.users) + 1}",
                )
                self.users[user_id] = user
            else:
                user.email = email or user.email
                user.given_name = given_name or user.given_name
                user.family_name = family_name or user.family_name
            company.members[user_id] = bool(admin)
            return user_id

    def set_admin(self, realm_id: str, user_id: str, admin: bool) -> None:
        with self._lock:
            company = self._company(realm_id)
            if user_id not in company.members:
                raise control_error(f"user {user_id!r} is not in company {realm_id!r}", 404, "not_found")
            company.members[user_id] = bool(admin)

    def remove_user(self, realm_id: str, user_id: str) -> None:
        with self._lock:
            company = self._company(realm_id)
            if company.members.pop(user_id, None) is None:
                raise control_error(f"user {user_id!r} is not in company {realm_id!r}", 404, "not_found")

    def rename_company(self, realm_id: str, name: str) -> None:
        """An Admin renamed the company in QBO (Settings > Account and settings > Company name); CompanyInfo's
        CompanyName says the new name from then on."""
        with self._lock:
            self._company(realm_id).name = name

    def set_subscription_status(self, realm_id: str, status: str) -> str:
        """Sets CompanyInfo's SubscriptionStatus; returns the status name it was normalised to."""
        normalised = subscription_status(status)
        with self._lock:
            self._company(realm_id).subscription_status = normalised
            return normalised

    def set_fault_style(
        self,
        realm_id: str,
        non_admin_code: str | None = None,
        status_6190: int | None = None,
        lapsed_reads: str | None = None,
        expired_token: str | None = None,
    ) -> None:
        """How one company's API reports problems. ``None`` leaves a setting as it is."""
        if non_admin_code not in (None, "3100", "120"):
            raise control_error("non_admin_code must be '3100' or '120'")
        if status_6190 not in (None, 400, 200) or isinstance(status_6190, bool):
            raise control_error("status_6190 must be 400 or 200")
        if lapsed_reads not in (None, "serve", "refuse"):
            raise control_error("lapsed_reads must be 'serve' or 'refuse'")
        if expired_token not in (None, "100", "3200"):
            raise control_error("expired_token must be '100' or '3200'")
        with self._lock:
            company = self._company(realm_id)
            if non_admin_code is not None:
                company.non_admin_code = non_admin_code  # type: ignore[assignment]
            if status_6190 is not None:
                company.status_6190 = status_6190  # type: ignore[assignment]
            if lapsed_reads is not None:
                company.lapsed_reads = lapsed_reads  # type: ignore[assignment]
            if expired_token is not None:
                company.expired_token_code = expired_token  # type: ignore[assignment]

    def disconnect_app(self, realm_id: str, client_id: str) -> int:
        """The user disconnected the app inside QuickBooks: every grant of it on the realm dies."""
        with self._lock:
            self._company(realm_id)
            revoked = 0
            for grant in self.grants.values():
                if grant.realm_id == realm_id and grant.client_id == client_id and grant.revoked_at is None:
                    self._revoke(grant, "disconnected_in_quickbooks")
                    revoked += 1
            return revoked

    def directory(self) -> list[dict[str, Any]]:
        """Companies and their users, for the consent page."""
        with self._lock:
            return [
                {
                    "realm_id": company.realm_id,
                    "name": company.name,
                    "subscription_status": company.subscription_status,
                    "users": [
                        {"user_id": uid, "email": self.users[uid].email, "admin": admin}
                        for uid, admin in company.members.items()
                    ],
                }
                for company in self.companies.values()
            ]

    # -- authorization codes and grants ----------------------------------------------------------------

    def create_code(
        self, client_id: str, redirect_uri: str, scopes: frozenset[str], realm_id: str, user_id: str
    ) -> str:
        with self._lock:
            company = self.companies.get(realm_id)
            if company is None:
                raise page_error("The selected company does not exist.")
            if user_id not in company.members:
                raise page_error("The selected user does not belong to the selected company.")
            code = tokens.new_authorization_code()
            self.codes[code] = AuthCode(client_id, redirect_uri, scopes, realm_id, user_id, self.now())
            return code

    def _new_grant(
        self,
        client_id: str,
        realm_id: str,
        user_id: str,
        scopes: frozenset[str],
        authorized_at: datetime,
        refreshed_at: datetime,
    ) -> Grant:
        hard = authorized_at + HARD_CAP
        grant = Grant(
            grant_id=uuid.uuid4().hex,
            client_id=client_id,
            realm_id=realm_id,
            user_id=user_id,
            scopes=scopes,
            authorized_at=authorized_at,
            hard_expires_at=hard,
            refresh_token=tokens.new_refresh_token(),
            refresh_issued_at=refreshed_at,
            last_refreshed_at=refreshed_at,
            refresh_expires_at=min(refreshed_at + REFRESH_WINDOW, hard),
        )
        self.grants[grant.grant_id] = grant
        self.refresh_index[grant.refresh_token] = grant.grant_id
        return grant

    def _new_access_token(self, grant: Grant, issued_at: datetime) -> AccessToken:
        value = tokens.new_access_token()
        access = AccessToken(grant.grant_id, issued_at, issued_at + ACCESS_TOKEN_LIFETIME)
        self.access_index[value] = access
        grant.access_tokens.append(value)
        return access

    def _token_response(
        self, grant: Grant, access_value: str, include_hard: bool, id_token: bool
    ) -> dict[str, Any]:
        now = self.now()
        access = self.access_index[access_value]
        body: dict[str, Any] = {
            "token_type": "bearer",
            "expires_in": _seconds(access.expires_at - now),
            "refresh_token": grant.refresh_token,
            "x_refresh_token_expires_in": _seconds(grant.refresh_expires_at - now),
            "access_token": access_value,
        }
        if include_hard:
            body["x_refresh_token_hard_expires_in"] = _seconds(grant.hard_expires_at - now)
        if id_token and "openid" in grant.scopes:
            body["id_token"] = self._id_token(grant, now)
        return body

    def _id_token(self, grant: Grant, now: datetime) -> str:
        claims: dict[str, Any] = {
            "sub": grant.user_id,
            "aud": [grant.client_id],
            "iss": self.issuer,
            "auth_time": int(grant.authorized_at.timestamp()),
            "iat": int(now.timestamp()),
            "exp": int((now + ACCESS_TOKEN_LIFETIME).timestamp()),
        }
        if SCOPE_ACCOUNTING in grant.scopes or SCOPE_PAYMENT in grant.scopes:
            claims["realmid"] = grant.realm_id
        if "email" in grant.scopes:
            claims["email"] = self.users[grant.user_id].email
        return self.signer.sign(claims)

    def _latest_access(self, grant: Grant) -> str:
        return grant.access_tokens[-1]

    def _revoke(self, grant: Grant, reason: str) -> None:
        if grant.revoked_at is None:
            grant.revoked_at = self.now()
            grant.revoked_reason = reason

    def exchange_code(self, app: App, code: str, redirect_uri: str, include_hard: bool) -> dict[str, Any]:
        with self._lock:
            self.stats.code_attempts += 1
            pending = self.codes.get(code)
            if pending is None:
                raise oauth_error(400, "invalid_grant", "Invalid authorization code")
            if pending.grant_id is not None:
                # A second exchange: Intuit treats a replayed code as fraud and kills what it issued.
                grant = self.grants[pending.grant_id]
                self._revoke(grant, "authorization_code_reused")
                raise oauth_error(400, "invalid_grant", "Authorization code has already been used")
            if pending.client_id != app.client_id:
                raise oauth_error(400, "invalid_grant", "Incorrect Token type or clientID")
            if pending.redirect_uri != redirect_uri:
                raise oauth_error(
                    400, "invalid_grant", "redirect_uri does not match the authorization request"
                )
            now = self.now()
            if now >= pending.issued_at + CODE_LIFETIME:
                raise oauth_error(400, "invalid_grant", "Authorization code has expired")
            grant = self._new_grant(
                app.client_id, pending.realm_id, pending.user_id, pending.scopes, now, now
            )
            pending.grant_id = grant.grant_id
            self._new_access_token(grant, now)
            self.stats.code_grants += 1
            return self._token_response(grant, self._latest_access(grant), include_hard, id_token=True)

    def refresh(self, app: App, refresh_value: str, include_hard: bool) -> dict[str, Any]:
        with self._lock:
            self.stats.refresh_attempts += 1
            grant_id = self.refresh_index.get(refresh_value)
            if grant_id is None:
                raise oauth_error(400, "invalid_grant", "Token invalid")
            grant = self.grants[grant_id]
            if grant.client_id != app.client_id:
                raise oauth_error(400, "invalid_grant", "Incorrect Token type or clientID")
            if grant.revoked_at is not None:
                raise oauth_error(400, "invalid_grant", "Token invalid")
            if refresh_value != grant.refresh_token:
                raise oauth_error(400, "invalid_grant", "Token invalid")
            now = self.now()
            if now >= grant.refresh_expires_at:
                raise oauth_error(400, "invalid_grant", "Token expired")
            if now - grant.refresh_issued_at > ROTATION_AGE:
                grant.refresh_token = tokens.new_refresh_token()
                grant.refresh_issued_at = now
                self.refresh_index[grant.refresh_token] = grant.grant_id
            grant.last_refreshed_at = now
            grant.refresh_expires_at = min(now + REFRESH_WINDOW, grant.hard_expires_at)
            self._new_access_token(grant, now)
            self.stats.refresh_grants += 1
            return self._token_response(grant, self._latest_access(grant), include_hard, id_token=False)

    def revoke(self, app: App, token: str) -> None:
        with self._lock:
            grant = self._grant_of(token)
            if grant is not None and grant.client_id != app.client_id:
                raise oauth_error(400, "unauthorized_client", "The token was issued to another client")
            if grant is None or grant.revoked_at is not None:
                # Intuit answers an unknown or already revoked token with a bare 400 (not RFC 7009's 200).
                raise SimError("empty", 400, "already_revoked_or_unknown")
            self._revoke(grant, "revoked_by_client")

    def _grant_of(self, token: str) -> Grant | None:
        grant_id = self.refresh_index.get(token)
        if grant_id is None:
            access = self.access_index.get(token)
            grant_id = access.grant_id if access else None
        return self.grants.get(grant_id) if grant_id else None

    # -- resource checks -------------------------------------------------------------------------------

    def _valid_access(self, token: str, realm_id: str | None = None) -> tuple[Grant, AccessToken]:
        access = self.access_index.get(token)
        if access is None:
            raise ApiRefusal("3200", 401, "Token invalid: the access token is unknown")
        grant = self.grants[access.grant_id]
        if grant.revoked_at is not None:
            raise ApiRefusal("3200", 401, "Token revoked: the authorization was revoked")
        if self.now() >= access.expires_at:
            company = self.companies.get(realm_id) if realm_id is not None else None
            if company is None or company.expired_token_code == "100":
                raise ApiRefusal("100", 401, "Token expired: the access token has expired")
            raise ApiRefusal("3200", 401, "Token expired: the access token has expired")
        return grant, access

    def begin_api_call(self, token: str, realm_id: str, write: bool = False) -> ApiCall:
        """Admits one QuickBooks API request, in the order Intuit's gateway then service check.

        The gateway refuses by raising :class:`ApiRefusal`: token (3200/100), the app's metering allowance
        (6900), the per-realm limits (429). A request that gets past it is metered (reads only) and in
        flight until :meth:`end_api_call`; what the company's service then answers instead of data (3100,
        6190, 120) is in ``ApiCall.refusal``.
        """
        with self._lock:
            grant, _ = self._valid_access(token, realm_id)
            month_key = (grant.client_id, self.now().strftime("%Y-%m"))
            if (
                not write
                and self.metering_allowance is not None
                and self.metering[month_key] >= self.metering_allowance
            ):
                raise ApiRefusal("metered", 403, "")
            slot = (grant.client_id, realm_id)
            if self.rate_limit_enabled:
                if not self.rate_limiter.enter(slot, self.now()):
                    self.stats.throttled += 1
                    raise ApiRefusal("throttle", 429, "The request limit was reached.")
            else:
                self.rate_limiter.in_flight[slot] += 1  # still counted, never refused
            if not write:
                self.metering[month_key] += 1
            call = ApiCall(grant, self.companies.get(realm_id), slot)
            call.refusal = self._service_refusal(grant, realm_id, call.company, write)
            return call

    def _service_refusal(
        self, grant: Grant, realm_id: str, company: Company | None, write: bool
    ) -> ApiRefusal | None:
        if grant.realm_id != realm_id:
            return ApiRefusal("3100", 403, "The token was not issued for this company")
        if SCOPE_ACCOUNTING not in grant.scopes:
            return ApiRefusal("3100", 403, "The token does not carry the accounting scope")
        if company is None:
            return ApiRefusal("3100", 403, "The company no longer exists")
        if company.read_only and (write or company.lapsed_reads == "refuse"):
            return ApiRefusal("6190", company.status_6190, "")
        if not company.members.get(grant.user_id, False):
            return ApiRefusal(company.non_admin_code, 403 if company.non_admin_code == "3100" else 401, "")
        return None

    def end_api_call(self, call: ApiCall) -> None:
        with self._lock:
            if call.slot is not None:
                self.rate_limiter.leave(call.slot)
                call.slot = None

    def company_access(self, token: str, realm_id: str, write: bool = False) -> Company:
        """One whole API call at once (admitted, checked, ended): the company, or the refusal raised."""
        call = self.begin_api_call(token, realm_id, write)
        self.end_api_call(call)
        if call.refusal is not None:
            raise call.refusal
        assert call.company is not None
        return call.company

    def add_customer(self, realm_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            company = self._company(realm_id)
            customer = {
                **fields,
                "Id": str(len(company.customers) + 1),
                "SyncToken": "0",
                "Active": True,
                "CreatedAt": self.now(),
            }
            company.customers.append(customer)
            return customer

    def in_flight(self, realm_id: str | None = None, client_id: str | None = None) -> int:
        with self._lock:
            return sum(
                count
                for (app_id, realm), count in self.rate_limiter.in_flight.items()
                if (realm_id is None or realm == realm_id) and (client_id is None or app_id == client_id)
            )

    # -- holding requests (a slow Intuit, without sleeping) ----------------------------------------------

    def hold(self, held: bool) -> None:
        """While held, every admitted API request waits (in flight) until released."""
        with self._lock:
            if held:
                self._gate.clear()
            else:
                self._gate.set()

    def wait_if_held(self) -> None:
        with self._lock:
            gate = self._gate
        gate.wait(HOLD_LIMIT_SECONDS)

    # -- metering ---------------------------------------------------------------------------------------

    def set_metering(self, allowance: int | None) -> None:
        if allowance is not None and (isinstance(allowance, bool) or not isinstance(allowance, int)):
            raise control_error("allowance must be a whole number or null")
        if allowance is not None and allowance < 0:
            raise control_error("allowance must not be negative")
        with self._lock:
            self.metering_allowance = allowance

    def metering_view(self, month: str | None, client_id: str) -> dict[str, Any]:
        if month is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise control_error("month must look like 2026-12")
        with self._lock:
            month = month or self.now().strftime("%Y-%m")
            return {
                "client_id": client_id,
                "month": month,
                "calls": self.metering[(client_id, month)],
                "allowance": self.metering_allowance,
            }

    def set_oauth_style(self, invalid_grant_description: bool) -> None:
        with self._lock:
            self.invalid_grant_description = bool(invalid_grant_description)

    def userinfo(self, token: str) -> dict[str, Any]:
        with self._lock:
            try:
                grant, _ = self._valid_access(token)
            except ApiRefusal as refusal:
                raise oauth_error(401, "invalid_token", refusal.detail) from None
            if "openid" not in grant.scopes:
                raise oauth_error(403, "insufficient_scope", "The access token lacks the openid scope")
            user = self.users[grant.user_id]
            info: dict[str, Any] = {"sub": user.user_id}
            if "email" in grant.scopes:
                info["email"] = user.email
                info["emailVerified"] = True
            if "profile" in grant.scopes:
                info["givenName"] = user.given_name
                info["familyName"] = user.family_name
            return info

    def primary_email(self, realm_id: str) -> str:
        with self._lock:
            company = self.companies[realm_id]
            for user_id, admin in company.members.items():
                if admin:
                    return self.users[user_id].email
            return "noreply@example.com"

    # -- seeding and inspection (control API) ----------------------------------------------------------

    def issue_tokens(
        self,
        realm_id: str,
        user_id: str,
        client_id: str,
        refreshed_days_ago: float,
        authorized_days_ago: float | None,
        scope: str | None,
    ) -> dict[str, Any]:
        if authorized_days_ago is None:
            authorized_days_ago = refreshed_days_ago
        if refreshed_days_ago < 0 or authorized_days_ago < refreshed_days_ago:
            raise control_error("need 0 <= refreshed_days_ago <= authorized_days_ago")
        scopes = frozenset((scope or DEFAULT_ISSUED_SCOPE).split())
        if not scopes <= KNOWN_SCOPES:
            raise control_error(f"unknown scopes: {sorted(scopes - KNOWN_SCOPES)}")
        with self._lock:
            if client_id not in self.apps:
                raise control_error(f"no app {client_id!r}", 404, "not_found")
            company = self._company(realm_id)
            if user_id not in company.members:
                raise control_error(f"user {user_id!r} is not in company {realm_id!r}", 404, "not_found")
            now = self.now()
            authorized_at = now - timedelta(days=authorized_days_ago)
            refreshed_at = now - timedelta(days=refreshed_days_ago)
            grant = self._new_grant(client_id, realm_id, user_id, scopes, authorized_at, refreshed_at)
            self._new_access_token(grant, refreshed_at)
            return self._token_response(grant, self._latest_access(grant), include_hard=True, id_token=True)

    def expire_access_token(self, token: str) -> None:
        with self._lock:
            access = self.access_index.get(token)
            if access is None:
                raise control_error("unknown access token", 404, "not_found")
            access.expires_at = min(access.expires_at, self.now())

    def revoke_grant_of(self, token: str) -> None:
        with self._lock:
            grant = self._grant_of(token)
            if grant is None:
                raise control_error("unknown token", 404, "not_found")
            self._revoke(grant, "revoked_by_simulator")

    def _grant_view(self, grant: Grant) -> dict[str, Any]:
        now = self.now()
        return {
            "grant_id": grant.grant_id,
            "client_id": grant.client_id,
            "realm_id": grant.realm_id,
            "user_id": grant.user_id,
            "scopes": sorted(grant.scopes),
            "revoked": grant.revoked_at is not None,
            "revoked_at": _iso(grant.revoked_at),
            "revoked_reason": grant.revoked_reason,
            "authorized_at": _iso(grant.authorized_at),
            "last_refreshed_at": _iso(grant.last_refreshed_at),
            "refresh_token_issued_at": _iso(grant.refresh_issued_at),
            "refresh_expires_at": _iso(grant.refresh_expires_at),
            "hard_expires_at": _iso(grant.hard_expires_at),
            "refresh_expired": now >= grant.refresh_expires_at,
            "access_tokens_issued": len(grant.access_tokens),
        }

    def grant_status(self, key: str) -> dict[str, Any] | list[dict[str, Any]]:
        with self._lock:
            if key in self.companies:
                return [self._grant_view(g) for g in self.grants.values() if g.realm_id == key]
            grant = self._grant_of(key)
            if grant is None:
                raise control_error("unknown token or realm", 404, "not_found")
            view = self._grant_view(grant)
            if key in self.access_index:
                view["token_kind"] = "access"
                view["token_is_current"] = self.now() < self.access_index[key].expires_at
            else:
                view["token_kind"] = "refresh"
                view["token_is_current"] = key == grant.refresh_token
            return view

    def is_refresh_token_current(self, token: str) -> bool:
        """True when ``token`` is its grant's latest refresh value and a refresh with it would succeed now."""
        with self._lock:
            grant_id = self.refresh_index.get(token)
            if grant_id is None:
                return False
            grant = self.grants[grant_id]
            return (
                token == grant.refresh_token
                and grant.revoked_at is None
                and self.now() < grant.refresh_expires_at
            )

    # -- faults, latency, stats ------------------------------------------------------------------------

    def set_faults(
        self, rate: float, kinds: list[str], endpoints: list[str], hang_seconds: float, seed: int | None
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise control_error("rate must be within [0, 1]")
        if not kinds or any(kind not in FAULT_KINDS for kind in kinds):
            raise control_error(f"kinds must be a non-empty subset of {list(FAULT_KINDS)}")
        if not endpoints or any(endpoint not in ENDPOINT_CLASSES for endpoint in endpoints):
            raise control_error(f"endpoints must be a non-empty subset of {list(ENDPOINT_CLASSES)}")
        if not 0.0 <= hang_seconds <= 300.0:
            raise control_error("hang_seconds must be within [0, 300]")
        with self._lock:
            self.faults = FaultConfig(rate, tuple(kinds), tuple(endpoints), hang_seconds, random.Random(seed))

    def decide_fault(self, endpoint_class: str) -> tuple[str, float] | None:
        """Draws whether this request fails, before anything else happens (a ``lost`` one is served first and
        only its answer is dropped). Returns (kind, hang_seconds)."""
        with self._lock:
            config = self.faults
            if config.rate <= 0.0 or endpoint_class not in config.endpoints:
                return None
            if config.rng.random() >= config.rate:
                return None
            kind = config.rng.choice(config.kinds)
            self.stats.faults[kind] += 1
            return kind, config.hang_seconds

    def set_latency(self, ms: float, *, simulated: bool = False) -> None:
        if not 0.0 <= ms <= 60_000.0:
            raise control_error("latency must be within [0, 60000] ms")
        with self._lock:
            self.latency_ms = ms
            self.latency_simulated = simulated

    def latency_seconds(self) -> float:
        with self._lock:
            return self.latency_ms / 1000.0

    def set_rate_limit(self, enabled: bool) -> None:
        with self._lock:
            self.rate_limit_enabled = bool(enabled)
            in_flight = self.rate_limiter.in_flight
            self.rate_limiter = RateLimiter()
            self.rate_limiter.in_flight = in_flight  # requests under way still end

    def count_call(self, endpoint: str, metered_realm: str | None = None) -> None:
        with self._lock:
            self.stats.calls[endpoint] += 1
            if metered_realm is not None:
                self.stats.metered[metered_realm] += 1

    def stats_view(self) -> dict[str, Any]:
        with self._lock:
            return self.stats.as_dict()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = Stats()
