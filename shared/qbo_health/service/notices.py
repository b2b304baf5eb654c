"""Sends notices exactly once per (connection, episode, kind), over e-mail and EventBridge."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from qbo_health.domain.check import CLOSED_UNNOTIFIED, ConnectionEvent, EventKind
from qbo_health.domain.deliverability import Suppression, reachable
from qbo_health.domain.model import Connection, IssueType
from qbo_health.domain.notices import (
    Brand,
    Channel,
    ChannelStatus,
    ClaimResult,
    Email,
    Notice,
    NoticeKind,
    SendResult,
    deliverable,
    offers_reconnect,
    render_email,
)
from qbo_health.errors import EmailUndeliverable
from qbo_health.i18n import SOURCE_LOCALE, supported
from qbo_health.observability import counts, logger


class Claims(Protocol):
    def claim(self, notice: Notice, channel: Channel, now: datetime) -> ClaimResult: ...

    def mark(self, notice: Notice, channel: Channel, now: datetime, status: ChannelStatus) -> None: ...

    def release(self, notice: Notice, channel: Channel) -> None: ...


class Profiles(Protocol):
    def complete(self, connection: Connection) -> Connection: ...


class Suppressions(Protocol):
    def suppressed(self, addresses: Iterable[str]) -> Mapping[str, Suppression]: ...


class NoneSuppressed:
    def suppressed(self, addresses: Iterable[str]) -> Mapping[str, Suppression]:
        return {}


class _Loaded:
    """Connections read with their profile already (tests, the API): nothing to load."""

    def complete(self, connection: Connection) -> Connection:
        return connection


class EmailSender(Protocol):
    def send(self, recipients: list[str], email: Email, notice: Notice) -> str: ...


class EventSender(Protocol):
    def send(self, notice: Notice) -> None: ...


@dataclass
class Notices:
    claims: Claims
    email: EmailSender
    events: EventSender
    reconnect_url: Callable[[Connection, datetime], str]
    dry_run: bool = False
    brand: Brand = field(default_factory=Brand)
    default_locale: str = SOURCE_LOCALE
    # Issue types (and REAUTH_DUE) whose notices also go to the QuickBooks user who authorized the connection.
    notify_authorizer: frozenset[str] = frozenset()
    # Loads the profile (contacts, names, language) of a connection read without it: the daily check reads
    # only the connection item, so the profile costs a read only when a notice goes out.
    profiles: Profiles = field(default_factory=_Loaded)
    # Addresses that bounced for good or complained (SES's feedback): the e-mail skips them, the event not.
    suppressions: Suppressions = field(default_factory=NoneSuppressed)
    # The latest connections completed (as read -> completed): a notice is built, then sent, from one read.
    _completed: dict[str, tuple[Connection, Connection]] = field(default_factory=dict, init=False, repr=False)

    def _complete(self, connection: Connection) -> Connection:
        if connection.profile_loaded:
            return connection
        read, completed = self._completed.get(connection.connection_id, (None, None))
        if read != connection or completed is None:
            completed = self.profiles.complete(connection)
            if len(self._completed) >= 64:
                self._completed.clear()
            self._completed[connection.connection_id] = (connection, completed)
        return completed

    def send(self, connection: Connection, notice: Notice, now: datetime) -> SendResult:
        """Claim, send and record each channel on its own: the event always, the e-mail to the contacts an
        e-mail can reach. A channel that fails is given back for the next run; the other stays done. Raises
        the first failure once both channels were tried."""
        if self.dry_run:
            logger.info("dry run: would send notice", extra={"kind": notice.kind.value})
            return SendResult.DRY_RUN
        connection = self._complete(connection)
        results: list[ClaimResult | SendResult] = []
        failure: Exception | None = None
        channels = [Channel.EVENT, *([Channel.EMAIL] if connection.contacts else [])]
        for channel in channels:
            try:
                results.append(self._deliver(channel, connection, notice, now))
            except Exception as error:  # the other channel still goes out (or stays recorded)
                failure = failure or error
        if failure is not None:
            raise failure
        if ClaimResult.IN_FLIGHT in results:
            return SendResult.IN_FLIGHT
        if SendResult.SENT in results:
            logger.info("notice sent", extra={"kind": notice.kind.value, "notice_id": notice.notice_id})
            return SendResult.SENT
        return SendResult.ALREADY_SENT

    def _deliver(
        self, channel: Channel, connection: Connection, notice: Notice, now: datetime
    ) -> ClaimResult | SendResult:
        claim = self.claims.claim(notice, channel, now)
        if claim is not ClaimResult.CLAIMED:
            return claim
        try:
            status = self._send_on(channel, connection, notice)
        except Exception:
            self.claims.release(notice, channel)
            raise
        try:
            self.claims.mark(notice, channel, now, status)
        except Exception:
            # Sent, but not recorded: the stage is still done (the escalator records it on the connection),
            # so nothing sends it again. Only the audit of this channel is missing.
            logger.exception("a sent notice could not be recorded", extra={"channel": channel.value})
        return SendResult.SENT

    def _send_on(self, channel: Channel, connection: Connection, notice: Notice) -> ChannelStatus:
        if channel is Channel.EVENT:
            self.events.send(notice)
            _count(notice.kind, "event")
            return ChannelStatus.SENT
        where = {"connection_id": connection.connection_id, "kind": notice.kind.value}
        # The contacts, and the authorizing user (the person who can fix it, addressed as such): each e-mail
        # on its own, so an address SES refuses costs only its own e-mail.
        letters = [(deliverable(connection.contacts), False)]
        if notice.authorizer_email:
            letters.append((deliverable([notice.authorizer_email]), True))
        suppressed = self.suppressions.suppressed([a for recipients, _ in letters for a in recipients])
        if suppressed:
            letters = [
                (reachable(recipients, suppressed), to_authorizer) for recipients, to_authorizer in letters
            ]
            logger.info("suppressed addresses skipped", extra={**where, "skipped": len(suppressed)})
        sent = False
        for recipients, to_authorizer in letters:
            if not recipients:
                continue
            try:
                self.email.send(recipients, render_email(notice, to_authorizer=to_authorizer), notice)
            except EmailUndeliverable:
                logger.warning("the e-mail service refused the recipients: that e-mail skipped", extra=where)
                continue
            _count(notice.kind, "email")
            sent = True
        if not sent:
            logger.warning("no deliverable address: e-mail skipped, the event went out", extra=where)
            return ChannelStatus.UNDELIVERABLE
        return ChannelStatus.SENT

    def notice_for(
        self,
        connection: Connection,
        kind: NoticeKind,
        now: datetime,
        *,
        episode_id: str,
        issue: IssueType | None = None,
        deadline: datetime | None = None,
        days_left: int | None = None,
        note: str | None = None,
    ) -> Notice:
        connection = self._complete(connection)
        reconnect = None
        if offers_reconnect(kind, issue):
            reconnect = self.reconnect_url(connection, now)
        return Notice(
            kind=kind,
            connection_id=connection.connection_id,
            tenant_id=connection.tenant_id,
            episode_id=episode_id,
            time=now,
            issue=issue,
            deadline=deadline,
            days_left=days_left,
            reconnect_url=reconnect,
            hard_expires_at=connection.tokens.hard_expires_at,
            note=note,
            company_name=connection.company_name,
            authorizer_email=self._authorizer_to_notify(connection, kind, issue),
            locale=supported(connection.locale, self.default_locale),
            brand=replace(self.brand, product_name=connection.display_name)
            if connection.display_name
            else self.brand,
        )

    def _authorizer_to_notify(
        self, connection: Connection, kind: NoticeKind, issue: IssueType | None
    ) -> str | None:
        """The authorizing user's address when this notice goes to them too (not when already a contact)."""
        who = connection.authorized_by
        key = "REAUTH_DUE" if kind is NoticeKind.REAUTH_DUE else (issue.value if issue else None)
        if who is None or not who.email or key not in self.notify_authorizer:
            return None
        contacts = {contact.lower() for contact in connection.contacts}
        return None if who.email.lower() in contacts else who.email

    # -- the Notifier the checker, the API and the disconnect call as transitions happen --------------

    def connection_events(
        self, connection: Connection, events: Sequence[ConnectionEvent], now: datetime
    ) -> None:
        for event in events:
            kind = _NOTIFIED.get(event.kind)
            if kind is None or event.detail == CLOSED_UNNOTIFIED:  # no "restored" for what nobody heard of
                continue
            episode = event.episode_id or _episode_of(event, connection)
            notice = self.notice_for(connection, kind, now, episode_id=episode, issue=event.issue)
            try:
                self.send(connection, notice, now)
            except Exception:  # a failed notice must not undo the transition that caused it
                logger.exception("notice failed", extra={"kind": kind.value})


_NOTIFIED = {
    EventKind.ISSUE_CLOSED: NoticeKind.RESTORED,
    EventKind.DISCONNECTED: NoticeKind.DISCONNECTED,
    EventKind.REAUTH_DUE: NoticeKind.REAUTH_DUE,
}


def _episode_of(event: ConnectionEvent, connection: Connection) -> str:
    if event.kind is EventKind.REAUTH_DUE:
        # One warning per hard-expiry date: a reauthorization starts a new 5-year term.
        hard = connection.tokens.hard_expires_at
        return f"reauth-{hard.date().isoformat() if hard else 'unknown'}"
    return f"{event.kind.value.lower()}-{event.at.date().isoformat()}"


def _count(kind: NoticeKind, channel: str) -> None:
    counts.add(f"Notice_{kind.value}_{channel}")
