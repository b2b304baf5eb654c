"""SES's bounce and complaint feedback on the embedded stack: a suppressed address gets no more e-mail, the
connection's other contacts and its events go on.

The notifications are SES's event records as AWS documents them ("Examples of event data that Amazon SES
publishes to Amazon SNS", https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html),
delivered in the SNS event shape Lambda receives. moto does not publish SES feedback, so the test delivers it.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from moto.ses.models import ses_backends

from local.seed import seed_connection
from local.stack import ACCOUNT_ID, REGION
from qbo_health import wiring
from qbo_health.adapters.dynamo_models import HistoryModel
from qbo_health.domain.deliverability import SuppressionReason
from qbo_health.domain.model import IssueType
from qbo_health.domain.notices import NoticeKind, SendResult
from qbo_health.service.deliverability import record_feedback

BOUNCED, OTHER = "gone.owner@example.com", "billing@example.com"
MAIL = {
    "timestamp": "2026-01-05T06:00:00.000Z",
    "source": "notices@example.com",
    "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
    "destination": [BOUNCED, OTHER],
    "tags": {"notice_kind": ["NOTICE"]},
}


def bounce(address: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General" if bounce_type == "Permanent" else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550",
                }
            ],
            "timestamp": "2026-01-05T06:00:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": MAIL,
    }


def complaint(address: str) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": "2026-01-05T06:10:00.000Z",
            "feedbackId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "complaintFeedbackType": "abuse",
        },
        "mail": MAIL,
    }


def sns_event(*messages: dict[str, Any]) -> dict[str, Any]:
    """The event Lambda gets from an SNS subscription: each record's ``Sns.Message`` is the JSON text."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:feedback:{uuid.uuid4()}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:feedback",
                    "Subject": None,
                    "Message": json.dumps(message),
                    "Timestamp": "2026-01-05T06:00:03.000Z",
                    "MessageAttributes": {},
                },
            }
            for message in messages
        ]
    }


def send_notice(stack: Any, connection_id: str) -> SendResult:
    notices = wiring.notices()
    connection = wiring.connection_store().get(connection_id)
    now = stack.clock.now()
    notice = notices.notice_for(
        connection, NoticeKind.NOTICE, now, episode_id=uuid.uuid4().hex, issue=IssueType.ADMIN_ACCESS_LOST
    )
    return notices.send(connection, notice, now)


def recipients_of_sent() -> list[list[str]]:
    """The contacts' e-mails sent (the authorizing admin's own copy, ``admin.*``, left aside)."""
    sent = [
        list(message.destinations["ToAddresses"])
        for message in ses_backends[ACCOUNT_ID][REGION].sent_messages
    ]
    return [recipients for recipients in sent if not recipients[0].startswith("admin.")]


def event_claims(connection_id: str) -> list[str]:
    return [
        str(item.status)
        for item in HistoryModel.query(connection_id)
        if item.entry.startswith("NOTICE#") and item.entry.endswith("#EVENT")
    ]


def test_a_hard_bounce_suppresses_the_address_and_the_next_notice_goes_to_the_other_contacts(stack, lambdas):
    seed_connection(stack, "conn-1", contacts=(BOUNCED, OTHER))
    seed_connection(stack, "conn-2", contacts=("Gone.Owner@Example.com",))  # the same mailbox elsewhere

    # Through the notice-feedback function, in the SNS event shape production delivers.
    assert lambdas.deliver_ses_feedback(bounce(BOUNCED)) == {"suppressed": 1}

    assert send_notice(stack, "conn-1") is SendResult.SENT
    assert recipients_of_sent() == [[OTHER]]
    assert event_claims("conn-1") == ["SENT"]
    # Every connection with that contact: conn-2 has no address left, its event still goes out.
    assert send_notice(stack, "conn-2") is SendResult.SENT
    assert recipients_of_sent() == [[OTHER]] and event_claims("conn-2") == ["SENT"]
    suppressed = wiring.suppression_store().suppressed([BOUNCED])
    assert suppressed[BOUNCED].reason is SuppressionReason.BOUNCE and suppressed[BOUNCED].detail == "General"


def test_a_soft_bounce_suppresses_nothing(stack):
    seed_connection(stack, "conn-1", contacts=(BOUNCED, OTHER))

    assert (
        record_feedback(
            sns_event(bounce(BOUNCED, "Transient")), wiring.suppression_store(), stack.clock.now()
        )
        == 0
    )

    send_notice(stack, "conn-1")
    assert recipients_of_sent() == [[BOUNCED, OTHER]]


def test_a_complaint_suppresses_the_address(stack):
    seed_connection(stack, "conn-1", contacts=(BOUNCED, OTHER))

    record_feedback(sns_event(complaint(OTHER)), wiring.suppression_store(), stack.clock.now())

    send_notice(stack, "conn-1")
    assert recipients_of_sent() == [[BOUNCED]]
    assert wiring.suppression_store().suppressed([OTHER])[OTHER].reason is SuppressionReason.COMPLAINT


def test_a_message_that_is_not_an_ses_record_is_skipped(stack):
    event = sns_event({"eventType": "Bounce", "bounce": {"bounceType": "Permanent"}})
    assert record_feedback(event, wiring.suppression_store(), stack.clock.now()) == 0


def test_the_status_api_and_ops_show_name_the_suppressed_contacts(stack, api_client):
    from qbo_health.ops.cli import main

    seed_connection(stack, "conn-1", contacts=(BOUNCED, OTHER))
    record_feedback(sns_event(bounce(BOUNCED)), wiring.suppression_store(), stack.clock.now())

    status = api_client.status("conn-1")
    assert [(s.email, s.reason, s.detail) for s in status.suppressed_contacts] == [
        (BOUNCED, "BOUNCE", "General")
    ]
    assert status.suppressed_contacts[0].since == stack.clock.now()

    out = io.StringIO()
    assert main(["show", "conn-1"], out=out, err=io.StringIO()) == 0
    assert f"suppressed.{BOUNCED}" in out.getvalue() and "BOUNCE (General)" in out.getvalue()
    assert f"suppressed.{OTHER}" not in out.getvalue()


def test_ops_unsuppress_lets_the_next_notice_reach_the_address_again(stack):
    from qbo_health.ops.cli import main

    seed_connection(stack, "conn-1", contacts=(BOUNCED, OTHER))
    record_feedback(sns_event(bounce(BOUNCED)), wiring.suppression_store(), stack.clock.now())

    out = io.StringIO()
    assert main(["unsuppress", BOUNCED.upper()], out=out, err=io.StringIO()) == 0
    assert "e-mails resume" in out.getvalue() and "BOUNCE" in out.getvalue()
    send_notice(stack, "conn-1")
    assert recipients_of_sent() == [[BOUNCED, OTHER]]

    again = io.StringIO()
    assert main(["unsuppress", BOUNCED], out=again, err=io.StringIO()) == 0
    assert "not suppressed" in again.getvalue()
