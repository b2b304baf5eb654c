"""Turn whatever Intuit answered into an :class:`IntuitFailure`, or ``None`` when the answer is a success.

Intuit reports errors in several shapes (see ``docs/intuit.md``):

* service faults, JSON ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}], "type"}, "time"}``
  or XML ``<IntuitResponse><Fault type=..><Error code=..><Message>..`` (with or without the finance/v3
  namespace); a Fault can arrive with HTTP 200;
* gateway faults, lowercase ``{"fault": {"error": [{"message": "message=..; errorCode=003100; statusCode=403",
  "detail", "code"}], "type"}}``, sometimes inside a wrapper full of ``null`` fields;
* token-endpoint OAuth errors ``{"error": "invalid_grant", "error_description": ..}``;
* HTML or plain-text bodies from load balancers, and empty bodies.

The parser never raises: a body it cannot read still yields a failure for a non-2xx status. Messages are
truncated and scrubbed of anything that looks like a token.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from qbo_health.domain.model import IntuitFailure

MAX_MESSAGE_CHARS = 200
MAX_BODY_CHARS = 256 * 1024  # larger bodies are not parsed (a fault is a few hundred bytes)
_MAX_DEPTH = 4  # how deep to look for a Fault inside wrapper objects

_ERROR_CODE_IN_MESSAGE = re.compile(r"errorCode\s*=\s*(\d+)", re.IGNORECASE)
_CODE_CHARS = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
_OAUTH_ERROR_CHARS = re.compile(r"^[\x20-\x7e]{1,64}$")
# Runs of token characters holding a long stretch that mixes letters and digits: access tokens (JWE,
# "eyJ..."), refresh tokens ("AB11...") and authorization codes. Words ("ApplicationAuthorizationFailed"),
# numeric ids (realm ids) and Intuit's "SRV-110-Authentication" style details are left alone.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-.~+/=]{16,}")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{16,}")
_XML_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_failure(
    status: int,
    content_type: str | None,
    body: str | bytes | None,
    *,
    intuit_tid: str | None,
    endpoint: str,
) -> IntuitFailure | None:
    """Return the failure described by one HTTP answer, or ``None`` when it is a real success.

    A 2xx answer is a success unless its body holds a Fault or an OAuth ``error``. Any other status is a
    failure, whatever the body says.
    """
    try:
        codes, oauth_error, message = _read_body(content_type, body)
    except Exception:  # never let a hostile body break the caller
        codes, oauth_error, message = (), None, None
    success_status = 200 <= status < 300
    if success_status and not codes and oauth_error is None:
        return None
    return IntuitFailure(
        status=status,
        codes=codes,
        oauth_error=oauth_error,
        intuit_tid=_clean_tid(intuit_tid),
        message=message,
        endpoint=endpoint,
        empty_body=_is_empty(body),
    )


def _is_empty(body: str | bytes | None) -> bool:
    if body is None:
        return True
    raw = body if isinstance(body, bytes) else body.encode("utf-8", errors="replace")
    return not raw.strip()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove the given secret values and anything that looks like a token from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_LIKE.sub(_redact_token_like, text)


def normalize_code(value: object) -> str | None:
    """``"003100"`` -> ``"3100"``; ``3200`` -> ``"3200"``; junk -> ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, float) and not value.is_integer():
            return None
        value = str(int(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _CODE_CHARS.match(text):
        return None
    if text.isdigit():
        return text.lstrip("0") or "0"
    return text


# ---------------------------------------------------------------------------------------------------------


def _read_body(
    content_type: str | None, body: str | bytes | None
) -> tuple[tuple[str, ...], str | None, str | None]:
    if body is None:
        return (), None, None
    raw = body if isinstance(body, bytes) else body.encode("utf-8", errors="replace")
    if len(raw) > MAX_BODY_CHARS:
        return (), None, None
    stripped = raw.strip().lstrip(b"\xef\xbb\xbf").strip()  # BOM some gateways send
    if not stripped:
        return (), None, None
    kind = (content_type or "").lower()
    if stripped[:1] in (b"{", b"[") or ("json" in kind and stripped[:1] != b"<"):
        return _read_json(stripped)
    if stripped[:1] == b"<":
        return _read_xml(stripped)
    return (), None, None


# --- JSON ------------------------------------------------------------------------------------------------


def _read_json(raw: bytes) -> tuple[tuple[str, ...], str | None, str | None]:
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return (), None, None
    if not isinstance(data, dict):
        return (), None, None

    oauth_error, oauth_message = _oauth_error(data)
    codes: list[str] = []
    messages: list[str] = []
    for error in _json_fault_errors(data, depth=0):
        code = normalize_code(_get(error, "code"))
        text = _text(_get(error, "message"))
        detail = _text(_get(error, "detail"))
        if code is None and text:
            found = _ERROR_CODE_IN_MESSAGE.search(text)
            code = normalize_code(found.group(1)) if found else None
        if code is not None:
            codes.append(code)
        messages.append(_join(text, detail))
    message = next((m for m in messages if m), None) or oauth_message
    if message is None and oauth_error is None and not codes:
        message = _text(data.get("message")) or _text(data.get("Message"))
    return _dedupe(codes), oauth_error, _finish(message)


def _oauth_error(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    error = data.get("error")
    if not isinstance(error, str):
        return None, None
    error = error.strip()
    if not error or not _OAUTH_ERROR_CHARS.match(error):
        return None, None
    description = _text(data.get("error_description"))
    return error, description or error


def _json_fault_errors(node: Any, *, depth: int) -> Iterator[Mapping[str, Any]]:
    """Yield every Error object of every ``Fault``/``fault`` found near the top of ``node``."""
    if depth > _MAX_DEPTH or not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if not isinstance(key, str):
            continue
        if key.lower() == "fault" and isinstance(value, Mapping):
            errors = _get(value, "error")
            if isinstance(errors, Mapping):
                errors = [errors]
            if isinstance(errors, list):
                yield from (e for e in errors if isinstance(e, Mapping))
        elif isinstance(value, Mapping):
            yield from _json_fault_errors(value, depth=depth + 1)
        elif isinstance(value, list):
            for item in value[:50]:  # e.g. BatchItemResponse: [{"Fault": ..}]
                yield from _json_fault_errors(item, depth=depth + 1)


def _get(mapping: Mapping[str, Any], name: str) -> Any:
    """Case-insensitive key lookup: Intuit writes ``Message`` in one shape and ``message`` in another."""
    if name in mapping:
        return mapping[name]
    capitalised = name[:1].upper() + name[1:]
    if capitalised in mapping:
        return mapping[capitalised]
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


# --- XML -------------------------------------------------------------------------------------------------


def _read_xml(raw: bytes) -> tuple[tuple[str, ...], str | None, str | None]:
    if b"\x00" in raw or _XML_DECLARATIONS.search(raw):
        # No DTDs, no entities (nothing to expand or fetch), and no UTF-16 that could hide a declaration.
        return (), None, None
    try:
        root = ET.fromstring(raw)  # noqa: S314 - declarations rejected above
    except (ET.ParseError, ValueError, RecursionError):
        return (), None, None

    codes: list[str] = []
    messages: list[str] = []
    for element in root.iter():
        if _local(element.tag) != "fault":
            continue
        for error in element:
            if _local(error.tag) != "error":
                continue
            text = _xml_child_text(error, "message")
            detail = _xml_child_text(error, "detail")
            code = normalize_code(_xml_attr(error, "code") or _xml_child_text(error, "code"))
            if code is None and text:
                found = _ERROR_CODE_IN_MESSAGE.search(text)
                code = normalize_code(found.group(1)) if found else None
            if code is not None:
                codes.append(code)
            messages.append(_join(text, detail))
    message = next((m for m in messages if m), None)
    return _dedupe(codes), None, _finish(message)


def _local(tag: object) -> str:
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _xml_attr(element: ET.Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value
    return None


def _xml_child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return _text(child.text)
    return None


# --- helpers ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    return text or None


def _join(message: str | None, detail: str | None) -> str:
    if message and detail and detail != message:
        return f"{message}: {detail}"
    return message or detail or ""


def _finish(message: str | None) -> str | None:
    if not message:
        return None
    message = redact(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3].rstrip() + "..."
    return message


def _redact_token_like(match: re.Match[str]) -> str:
    text = match.group(0)
    for run in _ALNUM_RUN.findall(text):
        if any(c.isalpha() for c in run) and any(c.isdigit() for c in run):
            return "[redacted]"
    return text


def _dedupe(codes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(codes))


def _clean_tid(intuit_tid: str | None) -> str | None:
    if not intuit_tid:
        return None
    tid = intuit_tid.strip()
    return tid[:128] or None
