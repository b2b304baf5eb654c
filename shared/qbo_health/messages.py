"""Typed shapes of the messages that cross our boundaries (queue bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qbo_health.domain.model import IssueType

CheckReason = Literal[
    "scheduled", "confirm", "retry", "on_demand", "problem_report", "disconnect_url", "busy", "escalation"
]
# The escalator re-checks before it acts and, while Intuit does not answer, every hour: no retries of its own.
NO_RETRY_REASONS: frozenset[str] = frozenset({"escalation"})


class CheckRequest(BaseModel):
    """One connection to check: the body of a check-queue message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connection_id: str = Field(min_length=1, max_length=200)
    reason: CheckReason = "scheduled"
    run_id: str | None = Field(default=None, max_length=100)
    attempt: int = Field(default=0, ge=0, le=100)
    # Earliest (simulated or real) time to act on it: delayed re-checks carry it so an early delivery waits.
    not_before: datetime | None = None
    # What the product saw on a write (``POST /connections/{id}/problems``) that our own read cannot see:
    # a 6190 (``SUBSCRIPTION_LAPSED``). Carried by the re-checks that follow the report.
    reported_issue: IssueType | None = None
    # The scheduler's decision on the metered probe: True, paid from the month's budget; False, none this
    # time (see ``domain.probe_budget``). None (any other check): the check asks the budget itself.
    probe_granted: bool | None = None


# --- SES's bounce and complaint notifications -------------------------------------------------------------
# The event records SES publishes to an SNS topic from a configuration set's event destination, as AWS
# documents them: "Contents of event data that Amazon SES publishes to Amazon SNS" (Amazon SES Developer Guide,
# https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html). Only the fields we
# act on are declared; the rest is ignored. Without event publishing (identity feedback notifications) the
# type is named ``notificationType``: both are read.


class SesRecipient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    email_address: str = Field(alias="emailAddress", min_length=3, max_length=320)


class SesBounce(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # Permanent (hard: suppress), Transient (soft: SES gave up for now) or Undetermined.
    bounce_type: str = Field(alias="bounceType", max_length=40)
    bounce_sub_type: str | None = Field(default=None, alias="bounceSubType", max_length=40)
    bounced_recipients: list[SesRecipient] = Field(alias="bouncedRecipients", max_length=100)
    timestamp: datetime | None = None


class SesComplaint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    complained_recipients: list[SesRecipient] = Field(alias="complainedRecipients", max_length=100)
    # e.g. "abuse"; "not-spam" withdraws a complaint (RFC 5965 feedback types). Often absent.
    complaint_feedback_type: str | None = Field(default=None, alias="complaintFeedbackType", max_length=40)
    timestamp: datetime | None = None


class SesNotification(BaseModel):
    """One SES event record (the ``Message`` of an SNS notification)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    event_type: str | None = Field(default=None, alias="eventType", max_length=40)
    notification_type: str | None = Field(default=None, alias="notificationType", max_length=40)
    bounce: SesBounce | None = None
    complaint: SesComplaint | None = None

    @property
    def kind(self) -> str:
        return self.event_type or self.notification_type or ""
