"""The webhook endpoint adapter over real TLS: it connects to the address it checked, yet verifies the
certificate against the endpoint's host name (SNI and hostname check), and never follows a redirect."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from local.stack import free_port
from qbo_health.adapters.webhook_endpoint import WebhookEndpoint
from qbo_health.errors import WebhookRefused


def _certificate(tmp: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for ``host`` signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class _Server:
    def __init__(self, cert: Path, key: Path, status: int) -> None:
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                server.requests.append({name.lower(): value for name, value in self.headers.items()})
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Any]:
    servers: list[_Server] = []

    def start(host: str, status: int = 204) -> tuple[_Server, Path]:
        ca, cert, key = _certificate(tmp_path, host)
        server = _Server(cert, key, status)
        servers.append(server)
        return server, ca

    yield start
    for server in servers:
        server.stop()


def _endpoint(host: str, port: int, ca: Path) -> WebhookEndpoint:
    # hooks.example.com "resolves" to the loopback server (the local-only setting allows loopback).
    return WebhookEndpoint(
        f"https://{host}:{port}/hooks",
        allow_loopback=True,
        resolver=lambda h, p: ["127.0.0.1"],
        ca_certs=str(ca),
    )


def test_it_posts_to_the_checked_address_with_the_host_name_for_tls_and_the_host_header(tls):
    server, ca = tls("hooks.example.com")

    status = _endpoint("hooks.example.com", server.port, ca).post(b"{}", {"content-type": "application/json"})

    assert status == 204
    assert server.requests[0]["host"] == f"hooks.example.com:{server.port}"


def test_a_certificate_for_another_host_is_refused(tls):
    server, ca = tls("other.example.net")

    with pytest.raises(WebhookRefused, match="did not answer"):
        _endpoint("hooks.example.com", server.port, ca).post(b"{}", {})
    assert server.requests == []


def test_a_redirect_is_a_failed_attempt_and_never_followed(tls):
    server, ca = tls("hooks.example.com", status=307)

    assert _endpoint("hooks.example.com", server.port, ca).post(b"{}", {}) == 307
    assert len(server.requests) == 1
