"""The TLS handshake with a site and the facts of the certificate it serves.

Two handshakes run side by side against one pinned address: one that verifies the chain
and the host name the way a browser would (so its error is the one users get), and one
that verifies nothing, only to read the certificate. The second one is what lets a report
say *expired on 3 March* or *issued for shop.example.com, not www.example.com* even when
the first one fails: a failed verification gives no certificate back.

Reading the certificate is checks.certificate's; what the report is evidence for (its
findings) is checks.tls_findings'.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict

from badgateway.checks.certificate import (
    CertificateDict,
    CertificateFacts,
    certificate_facts,
    common_name,
    day_of,
    decode_certificate,
    matches_host,
)

# A certificate this close to its end gets a warning: enough time to renew by hand.
EXPIRY_WARNING_DAYS = 14

# OpenSSL verification codes (X509_V_ERR_*) that mean "the chain does not end at a CA
# we trust", as opposed to a bad date or name.
_UNTRUSTED_CODES = {2, 18, 19, 20, 21, 27, 28}
_EXPIRED_CODE = 10
_NOT_YET_VALID_CODE = 9
_NAME_MISMATCH_CODES = {62, 64}


class TlsProblemDict(TypedDict):
    kind: str
    message: str


class TlsDict(TypedDict):
    """A ``TlsReport`` as JSON (in the firewall step's details)."""

    address: str
    port: int
    server_name: str
    protocol: str | None
    cipher: str | None
    certificate: CertificateDict | None
    verified: bool
    verify_error: str | None
    hostname_match: bool | None
    days_left: int | None
    handshake_ms: int | None
    problems: list[TlsProblemDict]
    fingerprint: str | None  # SHA-256 of the certificate's DER: tells a replaced one apart


class TlsProblemKind(StrEnum):
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    UNTRUSTED = "untrusted"
    VERIFY_FAILED = "verify_failed"
    HANDSHAKE_FAILED = "handshake_failed"
    HANDSHAKE_TIMEOUT = "handshake_timeout"


@dataclass
class TlsProblem:
    kind: TlsProblemKind
    message: str


@dataclass
class TlsReport:
    """The outcome of inspecting one address's TLS: facts, verification, problems."""

    address: str
    port: int
    server_name: str
    protocol: str | None = None
    cipher: str | None = None
    certificate: CertificateFacts | None = None
    verified: bool = False
    verify_error: str | None = None  # OpenSSL's own words
    hostname_match: bool | None = None
    days_left: int | None = None
    handshake_ms: int | None = None
    problems: list[TlsProblem] = field(default_factory=list)
    fingerprint: str | None = None

    def to_dict(self) -> TlsDict:
        return {
            "address": self.address,
            "port": self.port,
            "server_name": self.server_name,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "certificate": self.certificate.to_dict() if self.certificate else None,
            "verified": self.verified,
            "verify_error": self.verify_error,
            "hostname_match": self.hostname_match,
            "days_left": self.days_left,
            "handshake_ms": self.handshake_ms,
            "problems": [{"kind": p.kind.value, "message": p.message} for p in self.problems],
            "fingerprint": self.fingerprint,
        }


def verify_context(ca_file: str | None) -> ssl.SSLContext:
    """A browser-like verifying context: the sites file's CA bundle, else $SSL_CERT_FILE,
    else the system store."""
    cafile = ca_file or os.environ.get("SSL_CERT_FILE") or None
    context = ssl.create_default_context(cafile=cafile)
    # The edge is what users' browsers talk to; they refuse TLS < 1.2 too.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def reading_context() -> ssl.SSLContext:
    """A context that accepts any certificate, only to read what the server sends."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Read even from old servers: an outdated protocol is a fact to report, not a wall.
    with contextlib.suppress(ValueError, ssl.SSLError):
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


@dataclass
class _Handshake:
    protocol: str | None = None
    cipher: str | None = None
    der: bytes | None = None
    peer: dict[str, Any] | None = None
    error: BaseException | None = None
    ms: int | None = None


async def _handshake(
    address: str, port: int, server_name: str, context: ssl.SSLContext, timeout_s: float
) -> _Handshake:
    started = time.monotonic()
    result = _Handshake()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=context,
                server_hostname=server_name,
                ssl_handshake_timeout=timeout_s,
            )
        tls = writer.get_extra_info("ssl_object")
        if isinstance(tls, ssl.SSLObject):
            result.protocol = tls.version()
            cipher = tls.cipher()
            result.cipher = cipher[0] if cipher else None
            result.der = tls.getpeercert(binary_form=True)
            if context.verify_mode != ssl.CERT_NONE:
                result.peer = dict(tls.getpeercert() or {})
        result.ms = round((time.monotonic() - started) * 1000)
    except (OSError, TimeoutError, ssl.SSLError, EOFError) as exc:
        result.error = exc
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await writer.wait_closed()
    return result


async def inspect_tls(
    address: str, port: int, server_name: str, timeout_s: float, ca_file: str | None = None
) -> TlsReport:
    """Handshake with ``address:port`` as a client of ``server_name`` (SNI) and judge it."""
    report = TlsReport(address=address, port=port, server_name=server_name)
    verifying, reading = await asyncio.gather(
        _handshake(address, port, server_name, verify_context(ca_file), timeout_s),
        _handshake(address, port, server_name, reading_context(), timeout_s),
    )
    seen = verifying if verifying.error is None else reading
    report.protocol, report.cipher, report.handshake_ms = seen.protocol, seen.cipher, seen.ms
    peer = verifying.peer or (decode_certificate(reading.der) if reading.der else None)
    if peer:
        report.certificate = certificate_facts(peer)
    der = verifying.der or reading.der
    if der:
        report.fingerprint = hashlib.sha256(der).hexdigest()
    if verifying.error is None:
        report.verified = True
    _judge(report, verifying.error)
    return report


def _judge(report: TlsReport, error: BaseException | None) -> None:
    """Fill in the problems: OpenSSL's verdict first, then what the certificate shows.

    OpenSSL stops at the first failure, in the order trust, name, dates: so "unknown
    issuer" hides an expired date. The certificate's own facts fill in the rest.
    """
    name = report.server_name
    cert = report.certificate
    now = datetime.now(UTC)
    if cert is not None:
        report.hostname_match = matches_host(cert, name)
        if cert.not_after:
            remaining = datetime.fromisoformat(cert.not_after) - now
            report.days_left = remaining.days
    kinds: set[TlsProblemKind] = set()

    def add(kind: TlsProblemKind, message: str) -> None:
        if kind not in kinds:
            kinds.add(kind)
            report.problems.append(TlsProblem(kind, message))

    if isinstance(error, ssl.SSLCertVerificationError):
        report.verify_error = str(error.verify_message or error.reason or error)
        code = error.verify_code
        if code in _UNTRUSTED_CODES:
            issuer = common_name(cert.issuer) if cert else None
            add(
                TlsProblemKind.UNTRUSTED,
                f"the certificate for {name} is not trusted: {report.verify_error}"
                + (f" (issuer: {issuer})" if issuer else ""),
            )
        elif code not in (_EXPIRED_CODE, _NOT_YET_VALID_CODE, *_NAME_MISMATCH_CODES):
            add(
                TlsProblemKind.VERIFY_FAILED,
                f"the certificate for {name} fails verification: {report.verify_error}",
            )
    elif error is not None:
        if cert is None:
            # Neither handshake completed: the TLS layer itself is broken.
            add(*_handshake_problem(name, error))
        else:
            report.verify_error = f"{type(error).__name__}: {error}"
            add(
                TlsProblemKind.HANDSHAKE_FAILED,
                f"the TLS handshake for {name} fails: {_reason(error)}",
            )
    if cert is not None:
        if cert.not_after and datetime.fromisoformat(cert.not_after) <= now:
            add(
                TlsProblemKind.EXPIRED,
                f"the certificate for {name} expired on {day_of(cert.not_after)}",
            )
        if cert.not_before and datetime.fromisoformat(cert.not_before) > now:
            add(
                TlsProblemKind.NOT_YET_VALID,
                f"the certificate for {name} is not valid before {day_of(cert.not_before)}",
            )
        if report.hostname_match is False and not report.verified:  # OpenSSL has the last word
            shown = ", ".join(cert.names[:4]) or "no name"
            if len(cert.names) > 4:
                shown += f" and {len(cert.names) - 4} more"
            add(
                TlsProblemKind.HOSTNAME_MISMATCH,
                f"the certificate is issued for {shown}, not {name}",
            )
    if error is not None and not report.problems:
        add(TlsProblemKind.VERIFY_FAILED, f"the TLS handshake for {name} fails: {_reason(error)}")


def _handshake_problem(name: str, error: BaseException) -> tuple[TlsProblemKind, str]:
    if isinstance(error, TimeoutError):
        return (
            TlsProblemKind.HANDSHAKE_TIMEOUT,
            f"the TLS handshake for {name} got no answer: the port accepts connections "
            "but does not speak TLS back",
        )
    return TlsProblemKind.HANDSHAKE_FAILED, f"the TLS handshake for {name} fails: {_reason(error)}"


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        reason = error.reason or ""
        if reason == "WRONG_VERSION_NUMBER":
            return "the server does not answer in TLS (plain HTTP on an https port?)"
        if reason:
            return reason.replace("_", " ").lower()
    if isinstance(error, ConnectionResetError | EOFError | ssl.SSLEOFError):
        return "the server closed the connection during the handshake"
    return f"{type(error).__name__}: {error}".rstrip(": ")
