"""Where notices go: SES v2 e-mail to the connection's contacts, and the host product's EventBridge bus."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError, UpdateError

from qbo_health.adapters.dynamo_models import HistoryModel
from qbo_health.adapters.history import RETENTION_SECONDS
from qbo_health.domain.notices import (
    DETAIL_TYPES,
    EVENT_SOURCE,
    Channel,
    ChannelStatus,
    ClaimResult,
    Email,
    Notice,
    event_detail,
)
from qbo_health.errors import EmailUndeliverable, NoticeDeliveryFailed

CLAIMED, SENT = "CLAIMED", "SENT"
# SES v2 refuses a send for good with these (an invalid address, a rejected message): retrying cannot help.
# InvalidParameterValue is what SES answers an address like ``owner-at-example.com``; BadRequestException is
# SES v2's documented error for invalid input, MessageRejected its refusal of the message.
_PERMANENT_SES_ERRORS = frozenset({"InvalidParameterValue", "BadRequestException", "MessageRejected"})


class SesV2Client(Protocol):
    def send_email(self, **kwargs: Any) -> dict[str, Any]: ...


class EventsClient(Protocol):
    def put_events(self, **kwargs: Any) -> dict[str, Any]: ...


class EmailChannel:
    def __init__(self, ses: SesV2Client, sender: str, configuration_set: str = "") -> None:
        self._ses, self._sender = ses, sender
        # SES reports bounces and complaints of e-mail sent with the set to its SNS topic.
        self._extra: dict[str, Any] = {"ConfigurationSetName": configuration_set} if configuration_set else {}

    def send(self, recipients: list[str], email: Email, notice: Notice) -> str:
        try:
            return self._send(recipients, email, notice)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _PERMANENT_SES_ERRORS:
                raise EmailUndeliverable(f"SES refused the e-mail: {code}") from None
            raise

    def _send(self, recipients: list[str], email: Email, notice: Notice) -> str:
        response = self._ses.send_email(
            FromEmailAddress=self._sender,
            Destination={"ToAddresses": recipients},
            Content={
                "Simple": {
                    "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": email.html, "Charset": "UTF-8"},
                        "Text": {"Data": email.text, "Charset": "UTF-8"},
                    },
                }
            },
            EmailTags=[{"Name": "notice_kind", "Value": notice.kind.value}],
            **self._extra,
        )
        return str(response.get("MessageId", ""))


class EventChannel:
    def __init__(self, events: EventsClient, bus_name: str) -> None:
        self._events, self._bus = events, bus_name

    def send(self, notice: Notice) -> None:
        response = self._events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": DETAIL_TYPES[notice.kind],
                    "Detail": json.dumps(event_detail(notice)),
                    "EventBusName": self._bus,
                    "Time": notice.time,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise NoticeDeliveryFailed(f"EventBridge refused the {notice.kind} event")


class NoticeClaims:
    """One history item per (connection, episode, kind, channel): a conditional write claims a channel before
    it is sent, and its status records the send. Each channel stands alone, so a failure on one (EventBridge
    down after SES took the e-mail, say) retries only that one: nobody gets the same e-mail twice.

    A claim left ``CLAIMED`` (the sender crashed before the send) may be re-claimed once ``stale_after``
    has passed, so the notice is retried rather than lost.
    """

    def __init__(self, stale_after: timedelta = timedelta(minutes=15)) -> None:
        self._stale_after = stale_after

    def claim(self, notice: Notice, channel: Channel, now: datetime) -> ClaimResult:
        entry = _entry(notice, channel)
        item = HistoryModel(
            notice.connection_id,
            entry,
            at=now,
            kind="NOTICE_CLAIM",
            status=CLAIMED,
            detail=json.dumps(
                {"notice_id": notice.notice_id, "kind": notice.kind.value, "channel": channel.value}
            ),
            expires_at=int(now.timestamp()) + RETENTION_SECONDS,
        )
        try:
            item.save(condition=HistoryModel.entry.does_not_exist())
            return ClaimResult.CLAIMED
        except PutError as error:
            if not _condition_failed(error):
                raise
        existing = HistoryModel(notice.connection_id, entry)
        try:
            existing.update(
                actions=[HistoryModel.at.set(now)],
                condition=(HistoryModel.status == CLAIMED) & (HistoryModel.at <= now - self._stale_after),
            )
            return ClaimResult.CLAIMED
        except UpdateError as error:
            if not _condition_failed(error):
                raise
        current = HistoryModel.get(notice.connection_id, entry, consistent_read=True)
        return ClaimResult.IN_FLIGHT if current.status == CLAIMED else ClaimResult.ALREADY_SENT

    def mark(self, notice: Notice, channel: Channel, now: datetime, status: ChannelStatus) -> None:
        HistoryModel(notice.connection_id, _entry(notice, channel)).update(
            actions=[HistoryModel.status.set(status.value), HistoryModel.at.set(now)]
        )

    def release(self, notice: Notice, channel: Channel) -> None:
        """Give a claim back after a failed send, so the next run retries at once."""
        HistoryModel(notice.connection_id, _entry(notice, channel)).delete(
            condition=HistoryModel.status == CLAIMED
        )


def _entry(notice: Notice, channel: Channel) -> str:
    return f"NOTICE#{notice.episode_id}#{notice.kind.value}#{channel.value}"


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"
