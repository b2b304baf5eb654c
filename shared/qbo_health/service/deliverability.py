"""SES's bounce and complaint notifications (through the configuration set's SNS topic) become suppressions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from qbo_health.domain.deliverability import Suppression, to_suppress
from qbo_health.messages import SesNotification
from qbo_health.observability import counts, logger


class SuppressionList(Protocol):
    def suppress(self, found: Mapping[str, Suppression]) -> int: ...


def record_feedback(event: dict[str, Any], suppressions: SuppressionList, now: datetime) -> int:
    """Each SNS record's message is one SES event record; returns the addresses suppressed. A record that is
    not one (a malformed message) is logged and skipped: retrying it cannot help."""
    written = 0
    for record in event.get("Records", []):
        try:
            notification = SesNotification.model_validate(json.loads(record["Sns"]["Message"]))
        except (KeyError, TypeError, ValueError, ValidationError):
            logger.warning("not an SES notification: skipped")
            continue
        bounce, complaint = notification.bounce, notification.complaint
        found = to_suppress(
            notification.kind,
            bounce_type=bounce.bounce_type if bounce else None,
            bounce_sub_type=bounce.bounce_sub_type if bounce else None,
            bounced=[r.email_address for r in bounce.bounced_recipients] if bounce else [],
            complained=[r.email_address for r in complaint.complained_recipients] if complaint else [],
            feedback_type=complaint.complaint_feedback_type if complaint else None,
            at=now,
        )
        if found:
            written += suppressions.suppress(found)
            counts.add(f"suppressed_{notification.kind.lower()}", len(found))
    logger.info("SES feedback recorded", extra={"suppressed": written})  # counts only: addresses are personal
    return written
