"""parse_failure: every shape Intuit answers with, and garbage that must never make it raise."""

from __future__ import annotations

import json
import random

import pytest

from qbo_health.adapters.intuit_faults import MAX_MESSAGE_CHARS, normalize_code, parse_failure, redact

JSON = "application/json"
XML = "application/xml"


def parse(status, body, content_type=JSON, *, tid="1-abc-tid", endpoint="api"):
    return parse_failure(status, content_type, body, intuit_tid=tid, endpoint=endpoint)


def service_fault(code, message, detail=None, *, fault_type="ValidationFault"):
    return json.dumps(
        {
            "Fault": {
                "Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}],
                "type": fault_type,
            },
            "time": "2026-01-05T06:00:00.000-08:00",
        }
    )


def gateway_fault(code, name, status):
    return json.dumps(
        {
            "warnings": None,
            "intuitObject": None,
            "fault": {
                "error": [
                    {
                        "message": f"message={name}; errorCode={int(code):06d}; statusCode={status}",
                        "detail": None,
                        "code": code,
                        "element": None,
                    }
                ],
                "type": "AUTHENTICATION" if status == 401 else "SERVICE",
            },
            "report": None,
            "queryResponse": None,
            "batchItemResponse": [],
            "time": 1533811101733,
            "status": None,
        }
    )


def xml_fault(code, message, detail, *, namespace=True, fault_type="ValidationFault"):
    ns = ' xmlns="http://schema.intuit.com/finance/v3"' if namespace else ""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<IntuitResponse{ns} time="2026-01-05T06:00:00.000-08:00">'
        f'<Fault type="{fault_type}"><Error code="{code}"><Message>{message}</Message>'
        f"<Detail>{detail}</Detail></Error></Fault></IntuitResponse>"
    )


# --- successes -------------------------------------------------------------------------------------------


def test_a_company_info_answer_is_a_success():
    body = json.dumps({"CompanyInfo": {"CompanyName": "Acme", "Id": "1"}, "time": "2026-01-05T06:00:00Z"})
    assert parse(200, body) is None


def test_an_empty_200_is_a_success():
    assert parse(200, b"", None, endpoint="revoke") is None


def test_a_token_answer_is_a_success():
    body = json.dumps({"access_token": "eyJhbGciOi", "refresh_token": "AB11", "expires_in": 3600})
    assert parse(200, body, endpoint="token") is None


def test_a_wrapper_with_null_fault_is_a_success():
    body = json.dumps({"warnings": None, "fault": None, "Fault": None, "CompanyInfo": {"CompanyName": "A"}})
    assert parse(200, body) is None


def test_an_xml_success_is_a_success():
    body = (
        '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3">'
        "<CompanyInfo><CompanyName>Acme</CompanyName></CompanyInfo></IntuitResponse>"
    )
    assert parse(200, body, XML) is None


# --- service faults (JSON "Fault") -----------------------------------------------------------------------


def test_json_fault_3100():
    body = service_fault(
        "3100", "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403", None
    )
    failure = parse(403, body)
    assert failure is not None
    assert failure.status == 403
    assert failure.codes == ("3100",)
    assert failure.oauth_error is None
    assert failure.transport is None
    assert failure.intuit_tid == "1-abc-tid"
    assert failure.endpoint == "api"
    assert failure.message is not None and "ApplicationAuthorizationFailed" in failure.message


def test_json_fault_6190_at_400():
    body = service_fault(
        "6190",
        "Invalid Company Status",
        "The account period has expired or the account has been canceled.",
    )
    failure = parse(400, body)
    assert failure is not None and failure.codes == ("6190",)
    assert failure.message == (
        "Invalid Company Status: The account period has expired or the account has been canceled."
    )


def test_a_fault_inside_http_200_is_a_failure():
    failure = parse(200, service_fault("6190", "Invalid Company Status", "Subscription ended"))
    assert failure is not None
    assert failure.status == 200
    assert failure.codes == ("6190",)


def test_codes_lose_leading_zeros_and_several_errors_are_all_kept():
    body = json.dumps(
        {
            "Fault": {
                "Error": [
                    {"Message": "first", "code": "006190"},
                    {"Message": "second", "code": 3100},
                    {"Message": "dup", "code": "3100"},
                ],
                "type": "ValidationFault",
            }
        }
    )
    failure = parse(400, body)
    assert failure is not None
    assert failure.codes == ("6190", "3100")
    assert failure.message == "first"


def test_a_single_error_object_instead_of_a_list():
    body = json.dumps({"Fault": {"Error": {"Message": "Throttled", "code": "3001"}, "type": "SERVICE"}})
    failure = parse(429, body)
    assert failure is not None and failure.codes == ("3001",)


def test_a_fault_inside_a_batch_item_response():
    body = json.dumps({"BatchItemResponse": [{"bId": "1", "Fault": {"Error": [{"code": "3200"}]}}]})
    failure = parse(200, body)
    assert failure is not None and failure.codes == ("3200",)


# --- gateway faults (lowercase "fault") ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "name"),
    [(401, "3200", "AuthenticationFailed"), (403, "3100", "ApplicationAuthorizationFailed")],
)
def test_gateway_fault(status, code, name):
    failure = parse(status, gateway_fault(code, name, status))
    assert failure is not None
    assert failure.status == status
    assert failure.codes == (code,)
    assert failure.message == f"message={name}; errorCode={int(code):06d}; statusCode={status}"


def test_gateway_fault_code_is_read_from_the_message_when_missing():
    body = json.dumps(
        {
            "fault": {
                "error": [
                    {"message": "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"}
                ],
                "type": "SERVICE",
            }
        }
    )
    failure = parse(403, body)
    assert failure is not None and failure.codes == ("3100",)


def test_gateway_fault_detail_is_kept():
    body = json.dumps(
        {
            "fault": {
                "error": [
                    {
                        "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                        "detail": "Malformed bearer token: too short or too long",
                        "code": "3200",
                    }
                ]
            }
        }
    )
    failure = parse(401, body)
    assert failure is not None
    assert failure.message is not None
    assert failure.message.endswith("Malformed bearer token: too short or too long")


# --- XML -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", [True, False])
def test_xml_fault_with_and_without_namespace(namespace):
    body = xml_fault(
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "Too many requests",
        namespace=namespace,
    )
    failure = parse(429, body, XML)
    assert failure is not None
    assert failure.codes == ("3001",)
    assert failure.message is not None and failure.message.startswith("message=ThrottleExceeded")


def test_xml_fault_even_when_json_was_announced():
    failure = parse(429, xml_fault("3001", "ThrottleExceeded", "wait"), JSON)
    assert failure is not None and failure.codes == ("3001",)


def test_xml_general_authentication_error():
    body = xml_fault(
        "100",
        "General Authentication Error",
        "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401",
        fault_type="AuthenticationFault",
    )
    failure = parse(401, body, "text/xml;charset=UTF-8")
    assert failure is not None
    assert failure.codes == ("100",)
    assert failure.message is not None and "SRV-110-Authentication Failure" in failure.message


def test_xml_fault_in_http_200():
    failure = parse(200, xml_fault("6190", "Invalid Company Status", "Account canceled"), XML)
    assert failure is not None and failure.status == 200 and failure.codes == ("6190",)


def test_xml_with_a_doctype_is_not_parsed():
    body = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        '<IntuitResponse><Fault type="x"><Error code="6190"><Message>&lol2;</Message></Error></Fault>'
        "</IntuitResponse>"
    )
    failure = parse(400, body, XML)
    assert failure is not None
    assert failure.codes == ()  # a DOCTYPE is never trusted, so not even the code is read
    assert parse(200, body, XML) is None  # and it is not invented as a failure either


def test_xml_with_an_external_entity_is_not_parsed():
    body = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        '<IntuitResponse><Fault><Error code="3100"><Message>&xxe;</Message></Error></Fault></IntuitResponse>'
    )
    failure = parse(403, body, XML)
    assert failure is not None
    assert failure.codes == ()
    assert failure.message is None


def test_utf16_xml_is_not_parsed():
    body = xml_fault("3100", "m", "d").replace("UTF-8", "UTF-16").encode("utf-16-le")
    failure = parse(403, body, XML)
    assert failure is not None and failure.codes == ()


def test_broken_xml():
    failure = parse(500, "<IntuitResponse><Fault><Error code='3100'>", XML)
    assert failure is not None and failure.codes == () and failure.status == 500


# --- token endpoint --------------------------------------------------------------------------------------


def test_invalid_grant():
    body = json.dumps({"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"})
    failure = parse(400, body, endpoint="token")
    assert failure is not None
    assert failure.oauth_error == "invalid_grant"
    assert failure.codes == ()
    assert failure.message == "Incorrect or invalid refresh token"
    assert failure.endpoint == "token"


def test_invalid_grant_without_description():
    failure = parse(400, '{"error":"invalid_grant"}', endpoint="token")
    assert failure is not None
    assert failure.oauth_error == "invalid_grant"
    assert failure.message == "invalid_grant"


def test_invalid_client_at_401():
    failure = parse(401, '{"error":"invalid_client"}', endpoint="token")
    assert failure is not None and failure.oauth_error == "invalid_client" and failure.status == 401


def test_an_oauth_error_inside_http_200_is_a_failure():
    failure = parse(200, '{"error":"invalid_grant"}', endpoint="token")
    assert failure is not None and failure.oauth_error == "invalid_grant"


def test_a_non_string_error_member_is_not_an_oauth_error():
    failure = parse(400, json.dumps({"error": {"message": "Bad request"}}), endpoint="token")
    assert failure is not None and failure.oauth_error is None


# --- non-JSON, empty and garbage bodies ------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_html_5xx(status):
    body = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    failure = parse(status, body, "text/html")
    assert failure is not None
    assert failure.status == status
    assert failure.codes == () and failure.oauth_error is None


def test_plain_text_5xx():
    failure = parse(503, "Service Unavailable", "text/plain")
    assert failure is not None and failure.status == 503 and failure.codes == ()


@pytest.mark.parametrize("body", [b"", "", "   \n", None])
def test_empty_bodies(body):
    failure = parse(401, body, None, tid=None)
    assert failure is not None
    assert failure.status == 401
    assert failure.codes == ()
    assert failure.intuit_tid is None
    assert failure.message is None


@pytest.mark.parametrize(
    "body",
    [
        "{",
        "[1, 2, 3]",
        '"just a string"',
        "null",
        '{"Fault": "nope"}',
        '{"Fault": {"Error": "nope"}}',
        '{"Fault": {"Error": [1, null, "x", {"code": {"nested": true}}]}}',
        '{"fault": {"error": [{"code": true, "message": 42}]}}',
        '{"Fault": {"Error": [{"code": 3.5}]}}',
        '{"error": 17}',
        '{"error": ""}',
        "[" * 100_000,
        "{" * 5000 + "}" * 5000,
        b"\xff\xfe\x00garbage\x00",
        b"\xef\xbb\xbf",
        "<",
        "<?xml version='1.0'?>",
        "<<<>>>",
        "\x00\x01\x02",
    ],
)
def test_garbage_never_raises(body):
    failure = parse(500, body)
    assert failure is not None and failure.status == 500
    assert parse(200, body) is None or parse(200, body).status == 200


def test_a_bom_before_json_is_tolerated():
    body = b"\xef\xbb\xbf" + service_fault("3100", "m").encode()
    failure = parse(403, body)
    assert failure is not None and failure.codes == ("3100",)


def test_a_huge_body_is_not_parsed():
    body = service_fault("3100", "m" + " " * 300_000)
    failure = parse(403, body)
    assert failure is not None and failure.codes == ()


def test_random_bytes_never_raise():
    rng = random.Random(1234)
    pieces = [
        '{"Fault":',
        '{"fault":',
        '"Error":',
        "[",
        "]",
        "{",
        "}",
        '"code":',
        '"3100"',
        ",",
        "<",
        ">",
        "&",
    ]
    for _ in range(500):
        if rng.random() < 0.5:
            body: bytes | str = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        else:
            body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        status = rng.choice([200, 400, 401, 403, 429, 500, 503])
        content_type = rng.choice([None, JSON, XML, "text/html", ""])
        failure = parse_failure(status, content_type, body, intuit_tid=None, endpoint="api")
        if status != 200:
            assert failure is not None and failure.status == status


# --- message hygiene -------------------------------------------------------------------------------------


def test_messages_are_truncated():
    failure = parse(400, service_fault("6000", "x" * 1000))
    assert failure is not None and failure.message is not None
    assert len(failure.message) <= MAX_MESSAGE_CHARS


def test_token_like_values_are_redacted_from_messages():
    refresh_token = "AB11767600000SPjcSRgfWCcPzQ2rTuvXbW3xT0b5y9hMmv5OV"
    access_token = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..bHBkGn5MH32cMyV1148p5A.xyz"
    body = json.dumps(
        {"error": "invalid_grant", "error_description": f"Token {refresh_token} / {access_token} rejected"}
    )
    failure = parse(400, body, endpoint="token")
    assert failure is not None and failure.message is not None
    assert refresh_token not in failure.message
    assert "bHBkGn5MH32cMyV1148p5A" not in failure.message
    assert "eyJlbmMiOiJBMTI4" not in failure.message
    assert "rejected" in failure.message


def test_redact_keeps_words_codes_and_realm_ids():
    text = "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403 realm 9130347596654216"
    assert redact(text) == text


def test_redact_removes_given_secrets_exactly():
    assert redact("the code was abc_def-ghi", ["abc_def-ghi"]) == "the code was [redacted]"


def test_intuit_tid_is_kept_and_trimmed():
    failure = parse(500, "", tid="  1-65f0b2c4-6b8e2d0a  ")
    assert failure is not None and failure.intuit_tid == "1-65f0b2c4-6b8e2d0a"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("003100", "3100"),
        ("3100", "3100"),
        (3200, "3200"),
        ("000", "0"),
        (" 120 ", "120"),
        (6190.0, "6190"),
        (True, None),
        (None, None),
        ("", None),
        ("a b", None),
        ({"x": 1}, None),
    ],
)
def test_normalize_code(value, expected):
    assert normalize_code(value) == expected


# --- issue 11: fault shapes the simulator added --------------------------------------------------------------


def test_an_empty_revoke_answer_is_marked_empty():
    """Revoking an unknown or already revoked token: HTTP 400, no body (the domain reads it as done)."""
    for body in (b"", None, b"  \n"):
        failure = parse(400, body, None, endpoint="revoke")
        assert failure is not None and failure.empty_body
        assert failure.codes == () and failure.oauth_error is None
    assert not parse(400, "<html><body>Bad Request</body></html>", "text/html", endpoint="revoke").empty_body
    assert not parse(400, '{"error":"invalid_request"}', endpoint="revoke").empty_body


def test_the_metering_refusal_shape():
    """Our assumption of Intuit's metering refusal: 403, a Fault of type SERVICE, code 6900."""
    body = service_fault("6900", "MeteredLimitExceeded", "monthly allowance used", fault_type="SERVICE")
    failure = parse(403, body)
    assert failure is not None and failure.status == 403 and failure.codes == ("6900",)


def test_an_expired_access_tokens_xml_authentication_fault():
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-01-05T06:00:00.000-08:00">'
        '<Fault type="AuthenticationFault"><Error code="100" element="">'
        "<Message>General Authentication Error</Message>"
        "<Detail>AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401</Detail>"
        "</Error></Fault></IntuitResponse>"
    )
    failure = parse(401, body, XML)
    assert failure is not None and failure.status == 401 and failure.codes == ("100",)
    assert not failure.empty_body
