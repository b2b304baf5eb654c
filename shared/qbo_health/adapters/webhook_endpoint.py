"""POSTs a signed webhook to the product's endpoint, refusing endpoints that are not on the public internet.

The SSRF guard resolves the endpoint's host at delivery time, checks every address it resolves to (one
non-public address refuses the endpoint: DNS may answer differently next time), then connects to the checked
address itself, so a second lookup (DNS rebinding) cannot swap in another. TLS still verifies the certificate
against the host name (SNI and hostname check), and redirects are never followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3

from qbo_health.domain.webhooks import address_allowed
from qbo_health.errors import WebhookRefused

Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv4 and IPv6)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise WebhookRefused(f"the webhook host does not resolve ({error.strerror})") from None
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    target: str  # path and query

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
            raise WebhookRefused("the webhook URL must be http(s)://host/path without credentials")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, target)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


class WebhookEndpoint:
    def __init__(
        self,
        url: str,
        *,
        allow_loopback: bool = False,
        resolver: Resolver = resolve_host,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        ca_certs: str | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(url)
        self._allow_loopback = allow_loopback
        self._resolve = resolver
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._ca_certs = ca_certs or certifi.where()  # Mozilla's CA bundle, as requests uses

    def checked_address(self) -> str:
        """The address to connect to, once every address the host resolves to passed the SSRF check."""
        addresses = self._resolve(self.endpoint.host, self.endpoint.port)
        if not addresses:
            raise WebhookRefused("the webhook host resolves to no address")
        refused = [a for a in addresses if not address_allowed(a, allow_loopback=self._allow_loopback)]
        if refused:
            raise WebhookRefused(f"the webhook host resolves to a non-public address ({', '.join(refused)})")
        return addresses[0]

    def post(self, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` to the checked address; returns the HTTP status (any answer, no redirect followed)."""
        address = self.checked_address()
        pool = self._pool(address)
        try:
            response = pool.urlopen(
                "POST",
                self.endpoint.target,
                body=body,
                headers={**headers, "Host": self.endpoint.host_header},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,  # the status is all we need: the body is never read
            )
            status = int(response.status)
            response.close()
            return status
        except urllib3.exceptions.HTTPError as error:
            raise WebhookRefused(f"the webhook endpoint did not answer ({type(error).__name__})") from None
        finally:
            pool.close()

    def _pool(self, address: str) -> urllib3.HTTPConnectionPool:
        if self.endpoint.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                address,
                self.endpoint.port,
                timeout=self._timeout,
                maxsize=1,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self._ca_certs,
                server_hostname=self.endpoint.host,
                assert_hostname=self.endpoint.host,
            )
        return urllib3.HTTPConnectionPool(address, self.endpoint.port, timeout=self._timeout, maxsize=1)
