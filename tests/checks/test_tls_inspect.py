"""checks.tls_inspect against real TLS handshakes: a loopback TLS server per certificate."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from badgateway.checks.certificate import (
    CertificateFacts,
    certificate_facts,
    decode_certificate,
    matches_host,
)
from badgateway.checks.model import Cause, Status
from badgateway.checks.tls_findings import tls_findings
from badgateway.checks.tls_inspect import inspect_tls
from tests.lab.certs import LabCerts, PlainHttpServer, TlsServer

TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def servers(tls_certs: LabCerts) -> Iterator[dict[str, TlsServer]]:
    """One TLS server per test certificate, shared by the module."""
    started = {
        name: TlsServer(getattr(tls_certs, name))
        for name in ("valid", "expired", "expiring", "wrong_host", "self_signed")
    }
    try:
        yield started
    finally:
        for server in started.values():
            server.close()


async def test_valid_certificate_is_verified_and_described(
    servers: dict[str, TlsServer], tls_certs: LabCerts
) -> None:
    server = servers["valid"]
    report = await inspect_tls("127.0.0.1", server.port, "127.0.0.1", TIMEOUT_S, str(tls_certs.ca))
    assert report.verified and report.problems == []
    assert report.protocol in ("TLSv1.2", "TLSv1.3") and report.cipher
    assert report.hostname_match is True
    assert report.days_left in (29, 30)
    cert = report.certificate
    assert cert is not None
    assert cert.subject == "CN=localhost"
    assert "badgateway test CA" in cert.issuer
    assert {"localhost", "site.test"} <= set(cert.dns_names)
    assert {"127.0.0.1", "::1"} <= set(cert.ip_addresses)
    assert cert.not_after is not None and cert.not_after.startswith(tls_certs.valid.day)
    [finding] = tls_findings(report)
    assert finding.code == "tls_ok" and finding.severity is Status.OK


async def test_sni_carries_the_site_name_while_dialling_the_pinned_address(
    servers: dict[str, TlsServer], tls_certs: LabCerts
) -> None:
    server = servers["valid"]
    report = await inspect_tls("127.0.0.1", server.port, "site.test", TIMEOUT_S, str(tls_certs.ca))
    assert report.verified, report.problems
    assert "site.test" in server.server_names


async def test_expired_certificate_names_the_day_it_expired(
    servers: dict[str, TlsServer], tls_certs: LabCerts
) -> None:
    report = await inspect_tls(
        "127.0.0.1", servers["expired"].port, "localhost", TIMEOUT_S, str(tls_certs.ca)
    )
    assert not report.verified
    assert [p.kind for p in report.problems] == ["expired"]
    assert report.problems[0].message == (
        f"the certificate for localhost expired on {tls_certs.expired.day}"
    )
    assert report.verify_error == "certificate has expired"
    assert report.days_left is not None and report.days_left < 0
    [finding] = tls_findings(report)
    assert finding.cause is Cause.TLS_ERROR and finding.severity is Status.FAIL


async def test_wrong_host_says_whom_the_certificate_is_for(
    servers: dict[str, TlsServer], tls_certs: LabCerts
) -> None:
    report = await inspect_tls(
        "127.0.0.1", servers["wrong_host"].port, "site.test", TIMEOUT_S, str(tls_certs.ca)
    )
    assert report.hostname_match is False
    assert [p.message for p in report.problems] == [
        "the certificate is issued for other.test, not site.test"
    ]


async def test_self_signed_certificate_is_untrusted(
    servers: dict[str, TlsServer], tls_certs: LabCerts
) -> None:
    report = await inspect_tls(
        "127.0.0.1", servers["self_signed"].port, "localhost", TIMEOUT_S, str(tls_certs.ca)
    )
    assert [p.kind for p in report.problems] == ["untrusted"]
    assert "self-signed" in report.problems[0].message
    assert report.hostname_match is True  # the facts were still read


async def test_unknown_issuer_without_the_test_ca(
    servers: dict[str, TlsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    report = await inspect_tls("127.0.0.1", servers["valid"].port, "localhost", TIMEOUT_S, None)
    assert [p.kind for p in report.problems] == ["untrusted"]
    assert "unable to get local issuer certificate" in report.problems[0].message
    assert "badgateway test CA" in report.problems[0].message


async def test_ssl_cert_file_is_the_fallback_trust_store(
    servers: dict[str, TlsServer], tls_certs: LabCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certs.ca))
    report = await inspect_tls("127.0.0.1", servers["valid"].port, "localhost", TIMEOUT_S, None)
    assert report.verified, report.problems


async def test_expiring_soon_is_a_warning_without_a_cause(
    servers: dict[str, TlsServer], tls_certs: LabCerts
) -> None:
    report = await inspect_tls(
        "127.0.0.1", servers["expiring"].port, "localhost", TIMEOUT_S, str(tls_certs.ca)
    )
    assert report.verified and report.days_left in (4, 5)
    [finding] = tls_findings(report)
    assert finding.code == "tls_expiring"
    assert finding.severity is Status.WARN and finding.cause is None
    assert tls_certs.expiring.day in finding.message


async def test_plain_http_on_the_tls_port_fails_the_handshake() -> None:
    with PlainHttpServer() as server:
        report = await inspect_tls("127.0.0.1", server.port, "localhost", TIMEOUT_S, None)
    assert report.certificate is None
    assert [p.kind for p in report.problems] == ["handshake_failed"]
    assert "does not answer in TLS" in report.problems[0].message


async def test_a_port_that_never_answers_the_hello_times_out() -> None:
    # The kernel completes the TCP handshake from the backlog; nobody ever reads the hello.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        report = await inspect_tls("127.0.0.1", port, "localhost", 0.5, None)
    assert [p.kind for p in report.problems] == ["handshake_timeout"]
    [finding] = tls_findings(report)
    assert finding.cause is Cause.TLS_ERROR


def test_decoding_a_certificate_matches_getpeercert_fields(tls_certs: LabCerts) -> None:
    der = ssl.PEM_cert_to_DER_cert(tls_certs.wrong_host.cert.read_text())
    peer = decode_certificate(der)
    assert peer is not None
    facts = certificate_facts(peer)
    assert facts.dns_names == ["other.test"]
    assert facts.not_after is not None and facts.not_after.startswith(tls_certs.wrong_host.day)


@pytest.mark.parametrize(
    ("names", "host", "expected"),
    [
        (["*.example.com"], "shop.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "a.b.example.com", False),
        (["Shop.Example.com"], "shop.example.com.", True),
        (["127.0.0.1"], "127.0.0.1", True),
        (["localhost"], "127.0.0.1", False),
    ],
)
def test_host_name_matching(names: list[str], host: str, expected: bool) -> None:
    cert = CertificateFacts(
        dns_names=[n.lower() for n in names if not n[0].isdigit()],
        ip_addresses=[n for n in names if n[0].isdigit()],
    )
    assert matches_host(cert, host) is expected


def test_common_name_counts_only_without_subject_alt_names() -> None:
    assert matches_host(CertificateFacts(subject="CN=old.example"), "old.example")
    with_san = CertificateFacts(subject="CN=old.example", dns_names=["new.example"])
    assert not matches_host(with_san, "old.example")
