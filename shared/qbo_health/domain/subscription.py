"""What a company's QuickBooks subscription status means for the connection. Pure: no I/O, no clock.

Intuit's "Understand QuickBooks Online subscription statuses" (developer.intuit.com, QBO docs,
troubleshooting/subscription-states) says a company whose subscription is canceled, expired, suspended or
restricted is limited to read-only operations, and that apps should read ``CompanyInfo.SubscriptionStatus``
(an entry of CompanyInfo's ``NameValue`` list) to know the status. So the health probe, a read, succeeds
for such a company: the status it carries is what says the product's updates are refused (6190 on writes).

* RESTRICTED, SUSPENDED: a payment problem -> ``SUBSCRIPTION_LAPSED`` ("make a payment").
* CANCELED, EXPIRED: the subscription ended -> ``SUBSCRIPTION_ENDED`` ("resubscribe").
* TRIAL, TRIALOPTIN, SUBSCRIBED (and PAID, which Intuit's samples show): healthy.
* No status, or a value we do not know: healthy (an unknown answer is never the customer's problem); the
  caller logs and counts it so a new Intuit value is noticed.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbo_health.domain.classification import Classification, FailureKind
from qbo_health.domain.model import IssueType, SubscriptionStatus

_ISSUES: dict[SubscriptionStatus, IssueType] = {
    SubscriptionStatus.RESTRICTED: IssueType.SUBSCRIPTION_LAPSED,
    SubscriptionStatus.SUSPENDED: IssueType.SUBSCRIPTION_LAPSED,
    SubscriptionStatus.CANCELED: IssueType.SUBSCRIPTION_ENDED,
    SubscriptionStatus.EXPIRED: IssueType.SUBSCRIPTION_ENDED,
}
# Spellings seen outside Intuit's list that mean one of its values.
_ALIASES = {"CANCELLED": SubscriptionStatus.CANCELED}
MAX_STATUS_CHARS = 32

# Reasons of a probe outcome found in a successful read (beside classification.REASONS, which are failures'):
# the read's SubscriptionStatus names the problem, or the product reported a write refused with 6190 (it
# stands whatever the read says: a read-only company reads fine).
REASON_SUBSCRIPTION_STATUS = "subscription_status"
REASON_REPORTED_6190 = "reported_6190"


@dataclass(frozen=True)
class SubscriptionVerdict:
    status: SubscriptionStatus | None  # None: CompanyInfo carried no status at all
    issue: IssueType | None  # the customer's problem, or None (healthy)

    @property
    def unknown(self) -> bool:
        """No status, or one we do not know: healthy, but worth a log line and a metric."""
        return self.status is None or self.status is SubscriptionStatus.UNKNOWN


def read_status(value: object) -> SubscriptionStatus | None:
    """Intuit's raw ``SubscriptionStatus`` value -> our enum (``None`` when absent or blank)."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()[:MAX_STATUS_CHARS]
    if not text:
        return None
    if text in _ALIASES:
        return _ALIASES[text]
    try:
        status = SubscriptionStatus(text)
    except ValueError:
        return SubscriptionStatus.UNKNOWN
    return status


def classify_subscription(value: object) -> SubscriptionVerdict:
    """Classify the ``SubscriptionStatus`` a successful CompanyInfo read carried (raw value or ``None``)."""
    status = read_status(value)
    issue = _ISSUES.get(status) if status is not None else None
    return SubscriptionVerdict(status=status, issue=issue)


def issue_with_report(verdict: SubscriptionVerdict, reported: IssueType | None) -> IssueType | None:
    """The issue of a successful read, given what the product reported seeing on a write.

    A 6190 seen anywhere opens ``SUBSCRIPTION_LAPSED``: a write the product reports refused with 6190 is
    direct evidence that updates do not sync, whatever the read says. A status the read carries that names
    the problem more precisely (``SUBSCRIPTION_ENDED``) wins over the report's generic 6190.
    """
    if verdict.issue is not None:
        return verdict.issue
    if reported is IssueType.SUBSCRIPTION_LAPSED:
        return IssueType.SUBSCRIPTION_LAPSED
    return None


def reported_evidence(reported: Classification | None) -> IssueType | None:
    """What a problem the product reported proves on its own: only a 6190 (``SUBSCRIPTION_LAPSED``).

    It is the one report our own read cannot verify: a suspended company still reads, only its writes are
    refused. Any other report is decided by the check it triggers, never trusted blindly.
    """
    if reported is None or reported.kind is not FailureKind.ISSUE:
        return None
    return IssueType.SUBSCRIPTION_LAPSED if reported.issue is IssueType.SUBSCRIPTION_LAPSED else None
