"""Response bodies in Intuit's shapes: OAuth errors, service ``Fault``, gateway ``fault``, XML, HTML pages."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from werkzeug.wrappers import Response

from local.intuit_sim.state import ApiRefusal, Company

JSON_TYPE = "application/json;charset=UTF-8"
XML_TYPE = "application/xml;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"
V3_NAMESPACE = "http://schema.intuit.com/finance/v3"

# Intuit stamps faults in Pacific time. A fixed offset is close enough for a simulator (no DST).
_PACIFIC = timezone(timedelta(hours=-8))

METERED_CODE = "6900"  # the simulator's choice: Intuit documents no wire shape for a metering refusal
_GATEWAY_NAMES = {"3200": "AuthenticationFailed", "3100": "ApplicationAuthorizationFailed"}
DETAIL_6190 = (
    "Subscription period has ended or canceled or there was a billing problem : You can't add data to "
    "QuickBooks Online because your trial or subscription period ended, you canceled your subscription, "
    "or there was a billing problem. To resubscribe, go to QuickBooks Online and sign in."
)


def intuit_time(now: datetime) -> str:
    local = now.astimezone(_PACIFIC)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}-08:00"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type=JSON_TYPE, headers=headers)


def oauth_error(status: int, error: str, description: str = "") -> Response:
    body = {"error": error}
    if description:
        body["error_description"] = description
    headers = {"WWW-Authenticate": 'Basic realm="Intuit"'} if status == 401 else None
    return json_response(body, status, headers)


def wants_json(accept: str | None) -> bool:
    """QuickBooks answers XML unless the client asks for JSON."""
    return accept is not None and "json" in accept.lower()


def gateway_fault(status: int, code: str, detail: str, as_json: bool, now: datetime) -> Response:
    """The lowercase ``fault`` shape of Intuit's API gateway (3200, 3100).

    3200 is typed ``AUTHENTICATION`` and carries RFC 6750's ``WWW-Authenticate`` challenge, as Intuit sends it.
    """
    name = _GATEWAY_NAMES.get(code, "ServiceFault")
    message = f"message={name}; errorCode={int(code):06d}; statusCode={status}"
    fault_type = "AUTHENTICATION" if code == "3200" else "SERVICE"
    if as_json:
        body = {
            "fault": {"error": [{"message": message, "detail": detail, "code": code}], "type": fault_type}
        }
        response = json_response(body, status)
    else:
        response = _xml_fault(status, fault_type, code, message, detail, None, now)
    if code == "3200":
        response.headers["WWW-Authenticate"] = 'Bearer realm="Intuit", error="invalid_token"'
    return response


def service_fault(
    status: int,
    fault_type: str,
    code: str,
    message: str,
    detail: str,
    as_json: bool,
    now: datetime,
    element: str = "",
) -> Response:
    """The ``Fault`` shape of the QuickBooks services (100, 120, 6190, 500, 610, 10000)."""
    if as_json:
        error = {"Message": message, "Detail": detail, "code": code, "element": element}
        body = {"Fault": {"Error": [error], "type": fault_type}, "time": intuit_time(now)}
        return json_response(body, status)
    return _xml_fault(status, fault_type, code, message, detail, element, now)


def _xml_fault(
    status: int, fault_type: str, code: str, message: str, detail: str, element: str | None, now: datetime
) -> Response:
    element_attr = f" element={quoteattr(element)}" if element is not None else ""
    body = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="{V3_NAMESPACE}" time="{intuit_time(now)}">'
        f"<Fault type={quoteattr(fault_type)}><Error code={quoteattr(code)}{element_attr}>"
        f"<Message>{xml_escape(message)}</Message><Detail>{xml_escape(detail)}</Detail>"
        f"</Error></Fault></IntuitResponse>"
    )
    return Response(body, status=status, content_type=XML_TYPE)


def throttle(now: datetime) -> Response:
    """HTTP 429 with code 3001, in XML whatever the client asked for (as Intuit sometimes does)."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="{V3_NAMESPACE}" time="{intuit_time(now)}">'
        '<Fault type="SERVICE"><Error code="3001">'
        "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
        "<Detail>The request limit was reached.</Detail>"
        "</Error></Fault></IntuitResponse>"
    )
    return Response(body, status=429, content_type=XML_TYPE)


def general_authentication_error(as_json: bool, now: datetime) -> Response:
    """Code 100 in a ``Fault`` of type ``AuthenticationFault``: a malformed header, or (always as XML, as
    reported) an expired access token."""
    return service_fault(
        401,
        "AuthenticationFault",
        "100",
        "General Authentication Error",
        "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401",
        as_json,
        now,
    )


def api_refusal(refusal: ApiRefusal, as_json: bool, now: datetime) -> Response:
    if refusal.kind == "throttle":
        return throttle(now)
    if refusal.kind == "100":
        return general_authentication_error(False, now)  # XML whatever was asked for, as reported
    if refusal.kind == "metered":
        return service_fault(
            403,
            "SERVICE",
            METERED_CODE,
            "MeteredLimitExceeded",
            "The app has used its monthly allowance of metered API calls. Calls resume next month.",
            as_json,
            now,
        )
    if refusal.kind == "required_param":
        return service_fault(
            400,
            "ValidationFault",
            "2020",
            "Required param missing, need to supply the required value for the API",
            refusal.detail,
            as_json,
            now,
        )
    if refusal.kind == "request_parse":
        return service_fault(
            400,
            "ValidationFault",
            "2010",
            "Request has invalid or unsupported property",
            refusal.detail,
            as_json,
            now,
        )
    if refusal.kind in ("3200", "3100"):
        return gateway_fault(refusal.status, refusal.kind, refusal.detail, as_json, now)
    if refusal.kind == "120":
        return service_fault(
            401,
            "AuthorizationFault",
            "120",
            "AuthorizationFailure",
            "AuthorizationFailure: You do not have access to use QuickBooks Online., statusCode: 401",
            as_json,
            now,
        )
    if refusal.kind == "6190":
        return service_fault(
            refusal.status, "ValidationFault", "6190", "Invalid Company Status", DETAIL_6190, as_json, now
        )
    if refusal.kind == "610":
        return service_fault(400, "ValidationFault", "610", "Object Not Found", refusal.detail, as_json, now)
    # "unsupported": what QuickBooks says about a path it has no resource for.
    return service_fault(400, "ValidationFault", "500", "Unsupported Operation", refusal.detail, as_json, now)


def system_fault(as_json: bool, now: datetime) -> Response:
    return service_fault(
        500,
        "SystemFault",
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred while accessing or saving your data.",
        as_json,
        now,
    )


def plain_status_page(status: int, title: str) -> Response:
    """What a load balancer or proxy in front of Intuit answers: a bare HTML page."""
    body = f"<html><head><title>{status} {title}</title></head><body><h1>{status} {title}</h1></body></html>"
    return Response(body, status=status, content_type=HTML_TYPE)


def html_page(status: int, title: str, body_html: str) -> Response:
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head><body>{body_html}</body></html>"
    )
    return Response(page, status=status, content_type=HTML_TYPE)


def error_page(status: int, message: str) -> Response:
    return html_page(
        status,
        "Intuit - Error",
        f'<h1>Something went wrong</h1><p id="error">{html.escape(message)}</p>',
    )


def company_info(company: Company, email: str, as_json: bool, now: datetime) -> Response:
    created = intuit_time(company.created_at)
    info: dict[str, Any] = {
        "CompanyName": company.name,
        "LegalName": company.name,
        "CompanyAddr": {
            "Id": "1",
            "Line1": "123 Sierra Way",
            "City": "San Pablo",
            "CountrySubDivisionCode": "CA",
            "PostalCode": "87999",
        },
        "CompanyStartDate": company.created_at.date().isoformat(),
        "FiscalYearStartMonth": "January",
        "Country": "US",
        "Email": {"Address": email},
        "SupportedLanguages": "en",
        "NameValue": [
            {"Name": "NeoEnabled", "Value": "true"},
            {"Name": "SubscriptionStatus", "Value": company.subscription_status},
            {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
            {"Name": "PayrollFeature", "Value": "false"},
        ],
        "domain": "QBO",
        "sparse": False,
        "Id": "1",
        "SyncToken": "4",
        "MetaData": {"CreateTime": created, "LastUpdatedTime": created},
    }
    if as_json:
        return json_response({"CompanyInfo": info, "time": intuit_time(now)})
    body = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="{V3_NAMESPACE}" time="{intuit_time(now)}">'
        '<CompanyInfo domain="QBO" sparse="false"><Id>1</Id><SyncToken>4</SyncToken>'
        f"<MetaData><CreateTime>{created}</CreateTime><LastUpdatedTime>{created}</LastUpdatedTime></MetaData>"
        f"<CompanyName>{xml_escape(company.name)}</CompanyName><LegalName>{xml_escape(company.name)}</LegalName>"
        f"<Country>US</Country><Email><Address>{xml_escape(email)}</Address></Email>"
        "<SupportedLanguages>en</SupportedLanguages>"
        + "".join(
            f"<NameValue><Name>{xml_escape(item['Name'])}</Name><Value>{xml_escape(item['Value'])}</Value>"
            "</NameValue>"
            for item in info["NameValue"]
        )
        + "</CompanyInfo></IntuitResponse>"
    )
    return Response(body, status=200, content_type=XML_TYPE)


def customer(record: dict[str, Any], as_json: bool, now: datetime) -> Response:
    """The answer to a created Customer, in the shape of QuickBooks' entity answers."""
    stamp = intuit_time(record["CreatedAt"])
    fields = {key: value for key, value in record.items() if key != "CreatedAt"}
    entity = {
        **fields,
        "domain": "QBO",
        "sparse": False,
        "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
    }
    if as_json:
        return json_response({"Customer": entity, "time": intuit_time(now)})
    inner = "".join(
        f"<{key}>{xml_escape(str(value).lower() if isinstance(value, bool) else str(value))}</{key}>"
        for key, value in fields.items()
    )
    body = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="{V3_NAMESPACE}" time="{intuit_time(now)}">'
        f'<Customer domain="QBO" sparse="false">{inner}'
        f"<MetaData><CreateTime>{stamp}</CreateTime><LastUpdatedTime>{stamp}</LastUpdatedTime></MetaData>"
        "</Customer></IntuitResponse>"
    )
    return Response(body, status=200, content_type=XML_TYPE)
