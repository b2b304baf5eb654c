"""A small Python client for the simulator's ``/_sim/`` control API (plain ``requests``).

Tests and the embedded stack seed companies, users and grants, move the clock, and inject faults through it.
It also plays the browser on the consent page (:meth:`SimulatorControl.consent`), for tests that need a real
authorization code without a headless browser.
"""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urljoin

import requests

DEFAULT_CLIENT_ID = "sim-client-id"

SubscriptionStatus = Literal[
    "TRIAL", "TRIALOPTIN", "SUBSCRIBED", "PAID", "EXPIRED", "RESTRICTED", "SUSPENDED", "CANCELED"
]


class SimulatorControlError(RuntimeError):
    """The control API (or the consent page) refused a request."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"simulator answered {status}: {body[:500]}")
        self.status = status
        self.body = body


class _ConsentForm(HTMLParser):
    """Reads the consent page: form action, hidden fields, companies, and users with their realm."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.companies: list[str] = []
        self.users: list[tuple[str, str]] = []  # (realm_id, user_id)
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.action = attributes.get("action")
        elif tag == "input" and attributes.get("type") == "hidden":
            self.hidden[attributes.get("name", "")] = attributes.get("value", "")
        elif tag == "select":
            self._select = attributes.get("name")
        elif tag == "option" and self._select == "realm_id":
            self.companies.append(attributes.get("value", ""))
        elif tag == "option" and self._select == "user_id":
            self.users.append((attributes.get("data-realm-id", ""), attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


class SimulatorControl:
    """Drives a running :class:`~local.intuit_sim.IntuitSimulator` over HTTP."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def _call(
        self,
        method: str,
        route: str,
        payload: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        response = self._session.request(
            method,
            f"{self.base_url}/_sim{route}",
            json=payload if payload is not None else {},
            params=params,
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            raise SimulatorControlError(response.status_code, response.text)
        return response.json()

    # -- apps, companies, users -----------------------------------------------------------------------

    def register_app(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> dict[str, Any]:
        """Adds (or replaces) an app. For the default app the loopback allowance is kept."""
        payload = {"client_id": client_id, "client_secret": client_secret, "redirect_uris": redirect_uris}
        result: dict[str, Any] = self._call("POST", "/apps", payload)
        return result

    def create_company(
        self,
        realm_id: str | None = None,
        name: str | None = None,
        subscription: SubscriptionStatus | Literal["active", "suspended"] = "active",
    ) -> str:
        """Creates a QuickBooks company and returns its realm id (random when not given).

        ``subscription`` is a SubscriptionStatus, or ``active`` (SUBSCRIBED) / ``suspended`` (SUSPENDED).
        """
        result = self._call(
            "POST", "/companies", {"realm_id": realm_id, "name": name, "subscription": subscription}
        )
        return str(result["realm_id"])

    def companies(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/companies")
        return result

    def add_user(
        self,
        realm_id: str,
        user_id: str | None = None,
        email: str | None = None,
        admin: bool = True,
        given_name: str | None = None,
        family_name: str | None = None,
    ) -> str:
        """Adds a user to a company (an existing user id joins another company) and returns the user id."""
        payload = {
            "user_id": user_id,
            "email": email,
            "admin": admin,
            "given_name": given_name,
            "family_name": family_name,
        }
        return str(self._call("POST", f"/companies/{realm_id}/users", payload)["user_id"])

    def set_admin(self, realm_id: str, user_id: str, admin: bool) -> None:
        self._call("POST", f"/companies/{realm_id}/users/{user_id}/admin", {"admin": admin})

    def remove_user(self, realm_id: str, user_id: str) -> None:
        """The user left the company: their grants then get the non-admin fault on the API."""
        self._call("DELETE", f"/companies/{realm_id}/users/{user_id}")

    def rename_company(self, realm_id: str, name: str) -> None:
        """An Admin renamed the company in QuickBooks: CompanyInfo answers with the new CompanyName."""
        self._call("POST", f"/companies/{realm_id}/name", {"name": name})

    def set_subscription_status(self, realm_id: str, status: SubscriptionStatus) -> None:
        """Sets the company's SubscriptionStatus. EXPIRED, RESTRICTED, SUSPENDED and CANCELED make it
        read-only: reads answer 200 with the status, writes 6190 (see ``set_company_fault_style``)."""
        self._call("POST", f"/companies/{realm_id}/subscription", {"status": status})

    def suspend(self, realm_id: str) -> None:
        """The same as ``set_subscription_status(realm_id, "SUSPENDED")``: the company becomes read-only.
        CompanyInfo answers 200 with SubscriptionStatus SUSPENDED (6190 only with ``lapsed_reads="refuse"``)."""
        self._call("POST", f"/companies/{realm_id}/suspend")

    def reactivate(self, realm_id: str) -> None:
        """Back to SUBSCRIBED."""
        self._call("POST", f"/companies/{realm_id}/reactivate")

    def disconnect_app(self, realm_id: str, client_id: str = DEFAULT_CLIENT_ID) -> int:
        """The user disconnected the app inside QuickBooks. Returns how many grants were revoked."""
        return int(
            self._call("POST", f"/companies/{realm_id}/disconnect", {"client_id": client_id})["revoked"]
        )

    def set_company_fault_style(
        self,
        realm_id: str,
        non_admin_code: Literal["3100", "120"] | None = None,
        status_6190: Literal[400, 200] | None = None,
        lapsed_reads: Literal["serve", "refuse"] | None = None,
        expired_token: Literal["100", "3200"] | None = None,
    ) -> None:
        """How the company's API reports problems; a setting left at ``None`` keeps its value.

        - ``non_admin_code``: a non-admin user gets 403/3100 (default) or 401/120.
        - ``status_6190``: 6190 comes with HTTP 400 (default) or inside HTTP 200.
        - ``lapsed_reads``: a read-only company's reads are served with its status (``serve``, default) or
          refused with 6190 (``refuse``, the older reported behaviour).
        - ``expired_token``: an expired access token gets the XML code 100 (default) or the 3200 gateway fault.
        """
        payload = {
            "non_admin_code": non_admin_code,
            "status_6190": status_6190,
            "lapsed_reads": lapsed_reads,
            "expired_token": expired_token,
        }
        self._call("POST", f"/companies/{realm_id}/fault_style", payload)

    # -- grants and tokens ----------------------------------------------------------------------------

    def issue_tokens(
        self,
        realm_id: str,
        user_id: str,
        client_id: str = DEFAULT_CLIENT_ID,
        refreshed_days_ago: float = 0,
        authorized_days_ago: float | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """Creates a grant without the browser flow; returns the token endpoint's JSON (with the hard expiry).

        ``refreshed_days_ago`` backdates the last refresh (and the access token, which is then expired when
        more than an hour ago); ``authorized_days_ago`` (default: the same) backdates the consent that starts
        the 5-year hard cap. ``scope`` defaults to accounting plus ``openid profile email``.
        """
        payload = {
            "realm_id": realm_id,
            "user_id": user_id,
            "client_id": client_id,
            "refreshed_days_ago": refreshed_days_ago,
            "authorized_days_ago": authorized_days_ago,
            "scope": scope,
        }
        result: dict[str, Any] = self._call("POST", "/tokens/issue", payload)
        return result

    def expire_access_token(self, token: str) -> None:
        self._call("POST", "/tokens/expire_access", {"token": token})

    def revoke_grant_of(self, token: str) -> None:
        """Revokes the grant that issued ``token`` (any of its refresh or access values)."""
        self._call("POST", "/tokens/revoke_grant", {"token": token})

    def grant_status(self, token_or_realm: str) -> dict[str, Any] | list[dict[str, Any]]:
        """A grant's state by any token value (a dict), or every grant of a realm (a list)."""
        result: dict[str, Any] | list[dict[str, Any]] = self._call(
            "POST", "/tokens/status", {"key": token_or_realm}
        )
        return result

    def grant_of(self, token: str) -> dict[str, Any]:
        result = self.grant_status(token)
        if not isinstance(result, dict):
            raise SimulatorControlError(400, "that value is a realm id, not a token")
        return result

    def grants_of(self, realm_id: str) -> list[dict[str, Any]]:
        result = self.grant_status(realm_id)
        if not isinstance(result, list):
            raise SimulatorControlError(400, "that value is a token, not a realm id")
        return result

    def is_refresh_token_current(self, token: str) -> bool:
        """Whether ``token`` is its grant's latest refresh value and would refresh now (without using it)."""
        return bool(self._call("POST", "/tokens/is_current", {"token": token})["current"])

    # -- faults, latency, throttling --------------------------------------------------------------------

    def set_faults(
        self,
        rate: float = 0.0,
        kinds: list[str] | None = None,
        endpoints: list[str] | None = None,
        hang_seconds: float = 1.5,
        seed: int | None = None,
    ) -> None:
        """With probability ``rate``, a request to one of ``endpoints`` fails with one of ``kinds``.

        kinds: ``500``, ``503``, ``429``, ``timeout`` (hang ``hang_seconds`` then 504), ``reset`` (drop the
        connection), ``lost`` (serve the request, then drop the connection: a refresh rotates unseen). endpoints: ``token``, ``api``, ``revoke``, ``userinfo``. ``rate=0`` turns faults off.
        """
        payload = {
            "rate": rate,
            "kinds": kinds if kinds is not None else ["500", "503", "timeout", "429"],
            "endpoints": endpoints if endpoints is not None else ["token", "api", "revoke", "userinfo"],
            "hang_seconds": hang_seconds,
            "seed": seed,
        }
        self._call("POST", "/faults", payload)

    def clear_faults(self) -> None:
        self.set_faults(rate=0.0)

    def set_latency(self, ms: float, *, simulated: bool = False) -> None:
        """Adds ``ms`` of delay to every request outside ``/_sim/``: real delay, or with ``simulated`` a move
        of the shared simulated clock (what a run's time budget reads locally), so no result depends on the
        speed of the machine."""
        self._call("POST", "/latency", {"ms": ms, "simulated": simulated})

    def set_rate_limit(self, enabled: bool) -> None:
        """Turns Intuit's per-realm limits (10 in flight, 500 a minute) on or off; the minute restarts."""
        self._call("POST", "/rate_limit", {"enabled": enabled})

    def hold_api_calls(self) -> None:
        """A slow Intuit without sleeping: every QuickBooks API request admitted from now on stays in flight
        (counting towards the 10 per realm) until ``release_api_calls()`` (or a reset, or 60 s)."""
        self._call("POST", "/hold", {"hold": True})

    def release_api_calls(self) -> None:
        self._call("POST", "/hold", {"hold": False})

    def api_calls_in_flight(self, realm_id: str | None = None, client_id: str | None = None) -> int:
        """QuickBooks API requests being served now (all realms and apps unless narrowed)."""
        params = {key: value for key, value in (("realm_id", realm_id), ("client_id", client_id)) if value}
        return int(self._call("GET", "/in_flight", params=params)["in_flight"])

    # -- OAuth styles and metering ---------------------------------------------------------------------

    def set_oauth_style(self, invalid_grant_description: bool = True) -> None:
        """``invalid_grant_description=False``: ``invalid_grant`` answers carry no ``error_description``."""
        self._call("POST", "/oauth_style", {"invalid_grant_description": invalid_grant_description})

    def set_metering(self, allowance: int | None) -> None:
        """Metered calls each app may make per calendar month (UTC, simulated clock); ``None`` is unlimited
        (the default). Past it, metered calls get 403 Fault 6900 "MeteredLimitExceeded" until next month."""
        self._call("POST", "/metering", {"allowance": allowance})

    def metering(self, month: str | None = None, client_id: str = DEFAULT_CLIENT_ID) -> dict[str, Any]:
        """``{"client_id", "month": "YYYY-MM", "calls": n, "allowance": n or None}``; month defaults to now."""
        params = {"client_id": client_id} | ({"month": month} if month else {})
        result: dict[str, Any] = self._call("GET", "/metering", params=params)
        return result

    def metered_calls(self, month: str | None = None, client_id: str = DEFAULT_CLIENT_ID) -> int:
        """Metered calls of ``client_id`` in ``month`` ("YYYY-MM", default: the simulated clock's month)."""
        return int(self.metering(month, client_id)["calls"])

    # -- clock, stats, reset --------------------------------------------------------------------------

    def clock(self) -> datetime:
        return datetime.fromisoformat(self._call("GET", "/clock")["now"])

    def advance_clock(self, seconds: float) -> datetime:
        """Moves the shared simulated clock forward (the same object the embedded stack reads)."""
        return datetime.fromisoformat(self._call("POST", "/clock/advance", {"seconds": seconds})["now"])

    def stats(self) -> dict[str, Any]:
        """``{"calls": {endpoint: n}, "metered": {realm: n}, "refresh_grants": n, "code_grants": n, ...}``."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def reset(self) -> None:
        self._call("POST", "/reset")

    # -- the browser's part ---------------------------------------------------------------------------

    def consent(
        self,
        authorization_url: str,
        realm_id: str | None = None,
        user_id: str | None = None,
        decision: Literal["connect", "cancel"] = "connect",
    ) -> str:
        """Opens ``authorization_url``, picks a company and user, presses Connect or Cancel.

        Returns the ``Location`` the browser would be sent to (the app's redirect URI with ``code``, ``state``
        and ``realmId``, or with ``error``). Defaults: the first company, and the first user of that company.
        Raises :class:`SimulatorControlError` when Intuit shows an error page instead of redirecting.
        """
        page = self._session.get(authorization_url, allow_redirects=False, timeout=self.timeout)
        if page.status_code in (301, 302, 303):
            return str(page.headers["Location"])
        if page.status_code != 200:
            raise SimulatorControlError(page.status_code, page.text)
        form = _ConsentForm()
        form.feed(page.text)
        realm = realm_id or (form.companies[0] if form.companies else "")
        user = user_id or next((uid for rid, uid in form.users if rid == realm), "")
        fields = {**form.hidden, "realm_id": realm, "user_id": user, "decision": decision}
        action = urljoin(authorization_url, form.action or "/connect/oauth2/decision")
        answer = self._session.post(action, data=fields, allow_redirects=False, timeout=self.timeout)
        if answer.status_code not in (301, 302, 303):
            raise SimulatorControlError(answer.status_code, answer.text)
        return str(answer.headers["Location"])
