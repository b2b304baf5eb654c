"""Reauthorization through Intuit: the reconnect link starts it, the OAuth callback completes it.

Safety rules (docs/architecture.md, docs/intuit.md):
- ``state`` is 32 random bytes; only its SHA-256 is stored, bound to one connection, for 10 minutes, and it is
  consumed by one conditional write before anything else happens: a double-delivered callback finds it used
  and never exchanges the code a second time (Intuit treats a second exchange as fraud and revokes).
- A ``realmId`` other than the connection's is refused before the code is exchanged: nothing changes.
- The new tokens are kept only if CompanyInfo answers with them (the user has admin access); otherwise they
  are revoked (best effort) and the old tokens stay as they were. So is any grant that could not be stored
  (the sign-in ran out of time, the connection stayed busy or changed): no grant is left alive at Intuit.
- Time: the callback answers within API Gateway's 29 s. The code is exchanged only with time left for the
  exchange and a revoke; each later step (CompanyInfo, userinfo, the lease and the writes) starts only with
  time left for it and a revoke, else the new grant is revoked and the page says nothing changed.
- A reload of a callback whose sign-in succeeded says connected, while the connection is healthy on the grant
  that sign-in stored (``mark_granted`` notes it on the state).
- Another admin may take over: ``authorized_by`` records who consented.

Links (domain.connect_links): a never-connected connection takes only a first-connect link (minutes), any
other a reconnect link (30 days: the realm pin and Intuit's admin consent protect it). Every link carries the
connection's grant generation: storing a grant moves it on, so a link works for one grant only, checked when
the link is opened, again before the code is exchanged, and once more under the lease. A connection the
customer disconnected on purpose refuses links minted *before* the disconnect, and sign-ins started with them
(the same three points; ``domain.connect_links.refuse_stale_sign_in``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qbo_health.adapters.intuit import GrantedTokens
from qbo_health.adapters.oauth_states import StoredState
from qbo_health.domain.check import STORE_TIME_PER_CHECK, ConnectionEvent, NewGrant, reauthorized
from qbo_health.domain.classification import FailureKind, classify
from qbo_health.domain.connect_links import (
    needs_first_connect,
    needs_reconnect,
    refuse_stale_link,
    refuse_stale_sign_in,
)
from qbo_health.domain.model import Authorizer, Connection, ConnectionState, IssueType, TokenPair
from qbo_health.domain.subscription import classify_subscription
from qbo_health.errors import (
    AuthorizationCodeRejected,
    AuthorizationDenied,
    CompanyInactive,
    ConcurrentUpdate,
    ConnectionBusy,
    ConnectionNotFound,
    IdentityMismatch,
    IntuitCallFailed,
    IntuitUnavailable,
    InvalidRequest,
    NotAnAdmin,
    OAuthStateInvalid,
    RealmMismatch,
    ReconnectLinkInvalid,
    SignInTimedOut,
)
from qbo_health.observability import logger
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.health_check import share_access_token
from qbo_health.service.leased import (
    LEASE_WAIT_SECONDS,
    Changed,
    acquire_lease_waiting,
    record,
    save_under_lease,
)

MAX_CODE_LENGTH = 512  # Intuit: codes are at most 512 characters
MAX_STATE_LENGTH = 200
MAX_REALM_LENGTH = 64
REALM_PATTERN = r"^[0-9]{1,64}$"  # ASCII digits: str.isdigit() also accepts other scripts' digits


@dataclass(frozen=True)
class CallbackParams:
    code: str | None = None
    state: str | None = None
    realm_id: str | None = None
    error: str | None = None
    error_description: str | None = None


@dataclass(frozen=True)
class ReauthResult:
    connection: Connection
    previous_admin: Authorizer | None
    admin_changed: bool


@dataclass(frozen=True)
class AuthorizationStart:
    """Where to send the browser, and the cookie that binds this sign-in to that browser (RFC 6749 10.12):
    a callback arriving in a browser that did not start the sign-in is refused, so nobody can slip their
    own QuickBooks company into someone else's connection with a forged callback link."""

    location: str
    browser_cookie: str
    cookie_max_age: int


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def browser_cookie_name(state: str) -> str:
    """One cookie per sign-in (two tabs may sign in at once); named by the state's hash, valued ``1``."""
    return f"qbo_oauth_{state_hash(state)[:16]}"


def start_reauthorization(token: str, deps: ApiDeps, now: datetime) -> AuthorizationStart:
    """Verify the link, re-check the connection, store a fresh state; returns Intuit's authorize URL."""
    claims = deps.signer.verify(token, now)
    try:
        connection = deps.store.get(claims.connection_id)
    except ConnectionNotFound:
        raise ReconnectLinkInvalid("This link is no longer valid.", reason="unknown_connection") from None
    refuse_stale_link(connection, claims)
    return begin_sign_in(connection, deps, now, link_issued_at=claims.issued_at)


def begin_sign_in(
    connection: Connection, deps: ApiDeps, now: datetime, *, link_issued_at: datetime | None = None
) -> AuthorizationStart:
    """Store a fresh state bound to this connection and its grant generation; Intuit's authorize URL."""
    raw_state = secrets.token_urlsafe(32)
    deps.states.put(
        StoredState(
            state_hash=state_hash(raw_state),
            connection_id=connection.connection_id,
            redirect_uri=deps.redirect_uri,
            created_at=now,
            expires_at=int((now + deps.state_ttl).timestamp()),
            link_issued_at=int(link_issued_at.timestamp()) if link_issued_at else None,
            link_generation=connection.grant_generation,
        )
    )
    logger.info("reauthorization started", extra={"connection_id": connection.connection_id})
    return AuthorizationStart(
        location=deps.oauth.authorization_url(raw_state, deps.redirect_uri),
        browser_cookie=browser_cookie_name(raw_state),
        cookie_max_age=int(deps.state_ttl.total_seconds()),
    )


def complete_reauthorization(
    params: CallbackParams, cookies: Mapping[str, str], deps: ApiDeps, now: datetime
) -> ReauthResult:
    """Handle Intuit's redirect back. Raises a typed error for every failure; changes nothing on failure."""
    _check_lengths(params)
    if params.error:
        stored = deps.states.consume(state_hash(params.state), now) if params.state else None
        raise AuthorizationDenied(
            "QuickBooks was not connected: the sign-in was cancelled."
            if params.error == "access_denied"
            else "QuickBooks did not authorize the connection.",
            oauth_error=params.error if params.error.isascii() else "error",
            connection_id=stored.connection_id if stored else None,
        )
    if not params.state:
        raise OAuthStateInvalid("The answer from QuickBooks had no state.")
    if not params.code or not params.realm_id:
        raise InvalidRequest("The answer from QuickBooks was incomplete (no code or company).")
    if cookies.get(browser_cookie_name(params.state)) != "1":
        # The cookie goes when a sign-in ends, so a reload of a finished callback lands here too.
        finished = _already_connected(params.state, deps, now)
        if finished is not None:
            return finished
        logger.warning("callback in a browser that did not start the sign-in refused")
        raise OAuthStateInvalid(
            "This sign-in has already finished, or it was started in another browser (or cookies are "
            "blocked). Open the reconnect link again in this browser if QuickBooks is not connected."
        )
    stored = deps.states.consume(state_hash(params.state), now)
    if stored is None:
        finished = _already_connected(params.state, deps, now)
        if finished is not None:
            return finished
        raise OAuthStateInvalid("This sign-in has expired or was already used.")
    connection = deps.store.get(stored.connection_id)
    refuse_stale_sign_in(
        connection, generation=stored.link_generation, link_issued_at=_link_issued_at(stored)
    )
    pinned = connection.realm_id or connection.expected_realm_id
    if pinned is not None and pinned != params.realm_id:
        logger.warning("callback for another company refused", extra={"connection_id": stored.connection_id})
        raise RealmMismatch(
            "You signed in to a different QuickBooks company than the one this connection uses."
        )
    budget = _Budget(deps)
    budget.before_intuit_call("exchange")  # nothing is exchanged without time to finish or undo it
    realm_id = params.realm_id
    pair = _exchange_once(deps, params.code, stored.redirect_uri, realm_id).pair
    try:
        budget.before_intuit_call("company_info")
        company_name = _verify_admin(deps, realm_id, pair)
        budget.before_intuit_call("userinfo")
        identity = _identity(deps, pair.access_token)
        if (
            needs_first_connect(connection)
            and connection.expected_email
            and not _same_email(identity, connection.expected_email)
        ):
            logger.warning(
                "first connect by another user refused", extra={"connection_id": stored.connection_id}
            )
            raise IdentityMismatch(
                "You signed in to QuickBooks as a different user than the one invited to connect it. Nothing "
                "was changed: ask the invited user to connect, or ask the app for a new link."
            )
        grant = NewGrant(
            realm_id=realm_id,
            sealed=deps.check.vault.seal(
                pair.without_access_token(), connection_id=connection.connection_id, realm_id=realm_id
            ),
            refresh_expires_at=pair.refresh_expires_at,
            hard_expires_at=pair.hard_expires_at,
            authorized_by=identity,
            company_name=company_name,
            link_generation=stored.link_generation,
            link_issued_at=_link_issued_at(stored),
        )
        changed = _store_new_grant(deps, connection.connection_id, grant, pair, budget, now)
    except ConcurrentUpdate:  # the connection changed under us between the lease's read and our write
        logger.warning(
            "new grant not stored: the connection changed", extra={"connection_id": connection.connection_id}
        )
        _revoke_quietly(deps, pair.refresh_token)
        raise ConnectionBusy(
            "The connection changed while you signed in. Nothing was changed: please try again."
        ) from None
    except Exception:
        # Whatever kept the new grant from being stored (refused, out of time, busy): it must not stay alive at
        # Intuit with nobody holding it.
        _revoke_quietly(deps, pair.refresh_token)
        raise
    return _reauthorized(deps, params.state, changed, identity, now)


def _link_issued_at(stored: StoredState) -> datetime:
    """When the sign-in's link was minted; a sign-in started from QuickBooks has none: its state's creation."""
    if stored.link_issued_at is None:
        return stored.created_at
    return datetime.fromtimestamp(stored.link_issued_at, UTC)


class _Budget:
    """The callback's share of the API's 29 s (the invocation's time left). Each step after the code exchange
    starts only with time left for it and for revoking the new grant should it not be stored."""

    def __init__(self, deps: ApiDeps) -> None:
        self.time_left = deps.check.time_left
        self.intuit_call = deps.intuit_timeout
        self.revoke = deps.intuit_timeout

    def before_intuit_call(self, step: str) -> None:
        self._require(self.intuit_call + self.revoke, step)

    def lease_wait_seconds(self) -> float:
        """What the lease may be waited for, keeping the writes and a revoke; raises when nothing is left."""
        spare = self.time_left() - STORE_TIME_PER_CHECK - self.revoke
        self._require(STORE_TIME_PER_CHECK + self.revoke, "store")
        return min(LEASE_WAIT_SECONDS, spare.total_seconds())

    def _require(self, needed: timedelta, step: str) -> None:
        if self.time_left() < needed:
            logger.warning("sign-in stopped: too little time left", extra={"step": step})
            raise SignInTimedOut(
                "QuickBooks took too long to answer, so the connection was not changed. Please try again."
            )


def _same_email(identity: Authorizer | None, expected: str) -> bool:
    return identity is not None and (identity.email or "").casefold() == expected.casefold()


def _check_lengths(params: CallbackParams) -> None:
    limits = {
        "code": (params.code, MAX_CODE_LENGTH),
        "state": (params.state, MAX_STATE_LENGTH),
        "realmId": (params.realm_id, MAX_REALM_LENGTH),
        "error": (params.error, 100),
        "error_description": (params.error_description, 1000),
    }
    for name, (value, limit) in limits.items():
        if value is not None and len(value) > limit:
            raise InvalidRequest(f"The parameter {name} is too long.")
    if params.realm_id is not None and not re.fullmatch(REALM_PATTERN, params.realm_id):
        raise InvalidRequest("The company id from QuickBooks is not valid.")


def _exchange_once(deps: ApiDeps, code: str, redirect_uri: str, realm_id: str) -> GrantedTokens:
    try:
        return deps.oauth.exchange_code(code, redirect_uri, realm_id=realm_id)
    except IntuitCallFailed as error:
        failure = error.failure
        logger.warning(
            "code exchange failed",
            extra={"intuit_tid": failure.intuit_tid, "oauth_error": failure.oauth_error},
        )
        if failure.oauth_error in ("invalid_grant", "invalid_request"):
            raise AuthorizationCodeRejected(
                "QuickBooks did not accept this sign-in (it may have expired). Please start again."
            ) from None
        raise IntuitUnavailable(
            "QuickBooks could not be reached. Please try again in a few minutes."
        ) from None


def _verify_admin(deps: ApiDeps, realm_id: str, pair: TokenPair) -> str | None:
    """The company's name when the new grant reads an active company; raises otherwise."""
    try:
        info = deps.oauth.company_info(realm_id, pair.access_token)
    except IntuitCallFailed as error:
        failure = error.failure
    else:
        # A company whose subscription lapsed or ended still reads: its status says so.
        issue = classify_subscription(info.subscription_status).issue
        if issue is None:
            return info.company_name
        logger.warning("new grant's company is read-only", extra={"intuit_tid": info.intuit_tid})
        raise _company_inactive(issue)
    verdict = classify(failure, after_fresh_refresh=True)
    logger.warning("new grant failed its probe", extra={"intuit_tid": failure.intuit_tid})
    if verdict.kind is FailureKind.ISSUE and verdict.issue is IssueType.ADMIN_ACCESS_LOST:
        raise NotAnAdmin(
            "The QuickBooks user you signed in with is not an Admin of this company. Ask an Admin to sign "
            "in, or have an Admin make you an Admin, then use the link again."
        )
    if verdict.kind is FailureKind.ISSUE and verdict.issue is IssueType.SUBSCRIPTION_LAPSED:
        raise _company_inactive(IssueType.SUBSCRIPTION_LAPSED)
    raise IntuitUnavailable("QuickBooks could not confirm the connection. Please try again in a few minutes.")


def _company_inactive(issue: IssueType) -> CompanyInactive:
    if issue is IssueType.SUBSCRIPTION_ENDED:
        return CompanyInactive(
            "QuickBooks says this company's subscription has ended or was canceled. Resubscribe to QBO "
            "soon (Intuit deletes a company's data some time after its subscription ends); updates resume on "
            "their own afterwards."
        )
    return CompanyInactive(
        "QuickBooks says this company's subscription is not active. Make a payment on your QBO "
        "account; updates resume on their own afterwards."
    )


def _identity(deps: ApiDeps, access_token: str) -> Authorizer | None:
    try:
        identity = deps.oauth.userinfo(access_token)
    except IntuitCallFailed as error:
        logger.warning("userinfo failed", extra={"intuit_tid": error.failure.intuit_tid})
        return None
    return Authorizer(identity.user_id, identity.email)


def _revoke_quietly(deps: ApiDeps, token: str) -> None:
    try:
        deps.oauth.revoke(token)
    except IntuitCallFailed as error:
        logger.warning("revoke of a refused grant failed", extra={"intuit_tid": error.failure.intuit_tid})


def _store_new_grant(
    deps: ApiDeps, connection_id: str, grant: NewGrant, pair: TokenPair, budget: _Budget, now: datetime
) -> Changed:
    """Under the lease: the domain's ``reauthorized`` on what the lease returned (a grant stored meanwhile,
    a customer's disconnect after the link, another company: refused), the access token kept, one write."""
    owner = f"reauth:{uuid.uuid4().hex}"

    def take() -> Connection:
        leased = acquire_lease_waiting(
            deps.check,
            connection_id,
            owner,
            now,
            wait_seconds=budget.lease_wait_seconds(),
            sleep=deps.sleep,
            monotonic=deps.monotonic,
        )
        return deps.store.complete(leased)  # the company's name and bindings, for the result and notices

    def keep_access_token(leased: Connection, updated: Connection) -> list[ConnectionEvent]:
        # The new grant's access token replaces any kept for the previous one, before the lease goes.
        share_access_token(deps.check, updated, pair, now)
        return []

    return save_under_lease(
        deps.check,
        connection_id,
        owner,
        now,
        lambda leased: reauthorized(leased, grant, now),
        take=take,
        before_save=keep_access_token,
    )


def _reauthorized(
    deps: ApiDeps, raw_state: str, changed: Changed, identity: Authorizer | None, now: datetime
) -> ReauthResult:
    stored = changed.connection
    try:  # a reload of this callback then says connected (see ``_already_connected``)
        deps.states.mark_granted(state_hash(raw_state), stored.grant_generation)
    except Exception:
        logger.exception(
            "could not note the grant on its sign-in", extra={"connection_id": stored.connection_id}
        )
    record(deps.check, stored, changed.events, now)
    previous = changed.leased.authorized_by
    admin_changed = identity is not None and (previous is None or previous.user_id != identity.user_id)
    logger.info("reauthorized", extra={"connection_id": stored.connection_id, "admin_changed": admin_changed})
    return ReauthResult(stored, previous, admin_changed)


def _already_connected(raw_state: str, deps: ApiDeps, now: datetime) -> ReauthResult | None:
    """A reload (or a second delivery) of a callback whose sign-in already stored its grant: the connection,
    when it is healthy on that very grant. Anything else (the sign-in failed, another grant replaced it, the
    connection broke since) answers as before."""
    state = deps.states.peek(state_hash(raw_state), now)
    if state is None or state.granted_generation is None:
        return None
    try:
        connection = deps.store.get(state.connection_id)
    except ConnectionNotFound:
        return None
    if (
        connection.state is not ConnectionState.HEALTHY
        or connection.grant_generation != state.granted_generation
    ):
        return None
    logger.info("callback again after success: connected", extra={"connection_id": connection.connection_id})
    return ReauthResult(connection, connection.authorized_by, admin_changed=False)


def reconnect_from_quickbooks(
    realm_id: str | None, deps: ApiDeps, now: datetime
) -> AuthorizationStart | None:
    """Intuit's Reconnect URL: a sign-in for the one connection of that company that needs one, else None.

    Nothing in the request is trusted (anyone can open the URL with any ``realmId``): it only chooses which
    connection a sign-in may restore. The callback's realm pin and Intuit's consent by an admin of that
    company are the proof, as for an e-mailed reconnect link."""
    if not realm_id or not re.fullmatch(REALM_PATTERN, realm_id):
        return None
    ids = deps.store.ids_for_realm(realm_id)[:2]
    if len(ids) != 1:
        return None
    try:
        connection = deps.store.get(ids[0])
    except ConnectionNotFound:
        return None
    if not needs_reconnect(connection):
        return None
    return begin_sign_in(connection, deps, now)
