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
