"""Reauthorization through Intuit: the reconnect link starts it, the OAuth callback completes it.

Safety rules (docs/architecture.md, docs/intuit.md):
- ``state`` is 32 random bytes; only its SHA-256 is stored, bound to one connection, for 10 minutes, and it is
  consumed by one conditional write before anything else happens: a double-delivered callback finds it used
  and never exchanges the code a second time (Intuit treats a second exchange as fraud and revokes).
- A ``realmId`` other than the connection's is refused before the code is exchanged: nothing changes.
- The new tokens are kept only if CompanyInfo answers with them (the user has admin access); otherwise they
  are revoked (best effort) and the old tokens stay as they were.
- Another admin may take over: ``authorized_by`` records who consented.

Links (domain.connect_links): a never-connected connection takes only a first-connect link (minutes), any
other a reconnect link (30 days: the realm pin and Intuit's admin consent protect it). Every link carries the
connection's grant generation: storing a grant moves it on, so a link works for one grant only, checked when
the link is opened, again before the code is exchanged, and once more under the lease. A connection the
customer disconnected on purpose refuses links minted *before* the disconnect.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from qbo_health.adapters.intuit import GrantedTokens
from qbo_health.adapters.oauth_states import StoredState
from qbo_health.domain.check import ConnectionEvent, EventKind, issue_closed, known_company_name
from qbo_health.domain.classification import FailureKind, classify
from qbo_health.domain.connect_links import needs_first_connect, needs_reconnect, refuse_stale_link
from qbo_health.domain.model import (
    Authorizer,
    Connection,
    ConnectionState,
    IssueType,
    TokenPair,
    TokenTimes,
)
from qbo_health.domain.subscription import classify_subscription
from qbo_health.errors import (
    AuthorizationCodeRejected,
    AuthorizationDenied,
    CompanyInactive,
    ConnectionNotFound,
    IdentityMismatch,
    IntuitCallFailed,
    IntuitUnavailable,
    InvalidRequest,
    NotAnAdmin,
    OAuthStateInvalid,
    RealmMismatch,
    ReconnectLinkInvalid,
)
from qbo_health.observability import logger
from qbo_health.service.api_deps import ApiDeps
from qbo_health.service.health_check import acquire_lease_waiting, share_access_token

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
        logger.warning("callback in a browser that did not start the sign-in refused")
        raise OAuthStateInvalid(
            # The cookie goes when a sign-in ends, so a reload of a finished callback lands here too.
            "This sign-in has already finished, or it was started in another browser (or cookies are "
            "blocked). Open the reconnect link again in this browser if QuickBooks is not connected."
        )
    stored = deps.states.consume(state_hash(params.state), now)
    if stored is None:
        raise OAuthStateInvalid("This sign-in has expired or was already used.")
    connection = deps.store.get(stored.connection_id)
    if connection.grant_generation != stored.link_generation:
        raise _link_used()
    pinned = connection.realm_id or connection.expected_realm_id
    if pinned is not None and pinned != params.realm_id:
        logger.warning("callback for another company refused", extra={"connection_id": stored.connection_id})
        raise RealmMismatch(
            "You signed in to a different QuickBooks company than the one this connection uses."
        )
    realm_id = params.realm_id
    granted = _exchange_once(deps, params.code, stored.redirect_uri, realm_id)
    pair = granted.pair
    company_name = _verify_admin(deps, realm_id, pair)
    identity = _identity(deps, pair.access_token)
    if (
        needs_first_connect(connection)
        and connection.expected_email
        and not _same_email(identity, connection.expected_email)
    ):
        logger.warning("first connect by another user refused", extra={"connection_id": stored.connection_id})
        _revoke_quietly(deps, pair.refresh_token)
        raise IdentityMismatch(
            "You signed in to QuickBooks as a different user than the one invited to connect it. Nothing was "
            "changed: ask the invited user to connect, or ask the app for a new link."
        )
    return _store_new_grant(
        deps, connection.connection_id, realm_id, pair, identity, stored, now, company_name
    )


def _same_email(identity: Authorizer | None, expected: str) -> bool:
    return identity is not None and (identity.email or "").casefold() == expected.casefold()


def _link_used() -> ReconnectLinkInvalid:
    return ReconnectLinkInvalid(
        "This link was already used: QuickBooks was connected with it.", reason="used"
    )


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
        _revoke_quietly(deps, pair.refresh_token)
        raise _company_inactive(issue)
    verdict = classify(failure, after_fresh_refresh=True)
    logger.warning("new grant failed its probe", extra={"intuit_tid": failure.intuit_tid})
    _revoke_quietly(deps, pair.refresh_token)
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
    deps: ApiDeps,
    connection_id: str,
    realm_id: str,
    pair: TokenPair,
    identity: Authorizer | None,
    stored_state: StoredState,
    now: datetime,
    company_name: str | None = None,
) -> ReauthResult:
    owner = f"reauth:{uuid.uuid4().hex}"
    leased = acquire_lease_waiting(
        deps.check, connection_id, owner, now, sleep=deps.sleep, monotonic=deps.monotonic
    )
    saved = False
    try:
        leased = deps.store.complete(leased)  # the company's name and bindings, for the result and notices
        if leased.grant_generation != stored_state.link_generation:  # another tab's grant came first
            _revoke_quietly(deps, pair.refresh_token)
            raise _link_used()
        if leased.realm_id is not None and leased.realm_id != realm_id:  # changed while we talked to Intuit
            raise RealmMismatch("This connection now uses a different QuickBooks company.")
        sealed = deps.check.vault.seal(
            pair.without_access_token(), connection_id=connection_id, realm_id=realm_id
        )
        updated = replace(
            leased,
            realm_id=realm_id,
            state=ConnectionState.HEALTHY,
            authorized_by=identity or leased.authorized_by,
            issue=None,
            suspect=None,
            sealed_tokens=sealed,
            tokens=TokenTimes(
                refresh_expires_at=pair.refresh_expires_at,
                hard_expires_at=pair.hard_expires_at,
                refreshed_at=now,
                rotated_at=now,
            ),
            last_check_at=now,
            last_success_at=now,
            transient_failures=0,
            reauth_due_warned_at=None,
            disconnect_reason=None,
            disconnected_at=None,
            grant_generation=leased.grant_generation + 1,
            company_name=known_company_name(company_name, leased),
        )
        # The new grant's access token replaces any kept for the previous one, before the lease goes.
        share_access_token(deps.check, updated, pair, now)
        stored = deps.store.save(updated, changed_from=leased, lease_owner=owner, release_lease=True)
        saved = True
    finally:
        if not saved:
            deps.store.release_lease(connection_id, owner)
    events = [ConnectionEvent(EventKind.REAUTHORIZED, now, detail=identity.user_id if identity else None)]
    if leased.issue is not None:
        events.append(issue_closed(leased.issue, now))
    deps.check.history.append(connection_id, events)
    deps.check.notifier.connection_events(stored, events, now)
    previous = leased.authorized_by
    changed = identity is not None and (previous is None or previous.user_id != identity.user_id)
    logger.info("reauthorized", extra={"connection_id": connection_id, "admin_changed": changed})
    return ReauthResult(stored, previous, changed)


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
