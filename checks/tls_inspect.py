"""The TLS handshake with a site and the facts of the certificate it serves.

Two handshakes run side by side against one pinned address: one that verifies the chain
and the host name the way a browser would (so its error is the one users get), and one
that verifies nothing, only to read the certificate. The second one is what lets a report
say *expired on 3 March* or *issued for shop.example.com, not www.example.com* even when
the first one fails: a failed verification gives no certificate back.

Reading the certificate: the peer's DER bytes are decoded with the standard library's
``ssl._ssl._test_decode_cert``, the decoder behind ``SSLSocket.getpeercert()``. It is
private, but it has existed unchanged since Python 2.7 (CPython's own test-suite relies
on it), gives exactly the dictionary ``getpeercert()`` gives for a verified peer, and
saves a compiled dependency (``cryptography``) that nothing else here needs. Should a
future Python drop it, the facts shrink to what the handshake itself says and the
verification verdict stays intact.

It runs over 400 lines because the handshakes, the decoding and the problems read off them
change together: a new fact about a certificate touches all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict

from checks.model import Cause, Finding, Status, Weight

# A certificate this close to its end gets a warning: enough time to renew by hand.
EXPIRY_WARNING_DAYS = 14

# OpenSSL verification codes (X509_V_ERR_*) that mean "the chain does not end at a CA
# we trust", as opposed to a bad date or name.
_UNTRUSTED_CODES = {2, 18, 19, 20, 21, 27, 28}
_EXPIRED_CODE = 10
_NOT_YET_VALID_CODE = 9
_NAME_MISMATCH_CODES = {62, 64}


class CertificateDict(TypedDict):
    """``CertificateFacts`` as JSON."""

    subject: str
    issuer: str
    san: list[str]  # "DNS:name", "IP:address"
    not_before: str | None
    not_after: str | None
    serial: str | None


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


@dataclass
class CertificateFacts:
    """What a certificate says, in JSON-ready text."""

    subject: str = ""
    issuer: str = ""
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    not_before: str | None = None  # ISO 8601, UTC
    not_after: str | None = None
    serial: str | None = None

    @property
    def names(self) -> list[str]:
        """The names a client may match: SANs, else the subject's common name."""
        if self.dns_names or self.ip_addresses:
            return self.dns_names + self.ip_addresses
        common = _common_name(self.subject)
        return [common] if common else []

    def to_dict(self) -> CertificateDict:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "san": [f"DNS:{n}" for n in self.dns_names] + [f"IP:{a}" for a in self.ip_addresses],
            "not_before": self.not_before,
            "not_after": self.not_after,
            "serial": self.serial,
        }


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
        }

    def findings(self, *, show_address: bool = False) -> list[Finding]:
        """One finding per problem (cause tls_error), a warning for a near expiry, else ok."""
        where = f" ({self.address})" if show_address else ""
        found: list[Finding] = []
        for problem in self.problems:
            found.append(
                Finding(
                    f"tls_{problem.kind}",
                    problem.message + where,
                    Status.FAIL,
                    Cause.TLS_ERROR,
                    Weight.INFERRED
                    if problem.kind is TlsProblemKind.HANDSHAKE_TIMEOUT
                    else Weight.OBSERVED,
                    {"address": self.address},
                )
            )
        if found:
            return found
        cert = self.certificate
        if cert is not None and self.days_left is not None:
            if self.days_left < EXPIRY_WARNING_DAYS:
                found.append(
                    Finding(
                        "tls_expiring",
                        f"the certificate for {self.server_name} expires on "
                        f"{_day(cert.not_after)}, in {self.days_left} day(s){where}",
                        Status.WARN,
                        data={"address": self.address, "days_left": self.days_left},
                    )
                )
                return found
        found.append(
            Finding(
                "tls_ok",
                f"TLS is valid for {self.server_name}: {self.protocol or 'TLS'}, certificate "
                f"issued by {_common_name(cert.issuer) if cert else '?'}, "
                f"{self.days_left if self.days_left is not None else '?'} days left{where}",
                Status.OK,
                data={"address": self.address},
            )
        )
        return found


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
            issuer = _common_name(cert.issuer) if cert else None
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
                f"the certificate for {name} expired on {_day(cert.not_after)}",
            )
        if cert.not_before and datetime.fromisoformat(cert.not_before) > now:
            add(
                TlsProblemKind.NOT_YET_VALID,
                f"the certificate for {name} is not valid before {_day(cert.not_before)}",
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


def decode_certificate(der: bytes) -> dict[str, Any] | None:
    """Decode a DER certificate into ``getpeercert()``'s dictionary (see module docstring)."""
    decoder = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decoder is None:
        return None
    pem = ssl.DER_cert_to_PEM_cert(der)
    fd, path = tempfile.mkstemp(prefix="bgw-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(pem)
        decoded = decoder(path)
    except (OSError, ssl.SSLError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return dict(decoded) if isinstance(decoded, dict) else None


def certificate_facts(peer: dict[str, Any]) -> CertificateFacts:
    """The parts of a ``getpeercert()`` dictionary a report shows."""
    facts = CertificateFacts(
        subject=_distinguished_name(peer.get("subject", ())),
        issuer=_distinguished_name(peer.get("issuer", ())),
        serial=str(peer["serialNumber"]) if peer.get("serialNumber") else None,
    )
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "DNS":
            facts.dns_names.append(str(value).lower())
        elif kind == "IP Address":
            with contextlib.suppress(ValueError):
                facts.ip_addresses.append(str(ipaddress.ip_address(str(value).strip())))
    for key, attr in (("notBefore", "not_before"), ("notAfter", "not_after")):
        if peer.get(key):
            with contextlib.suppress(ValueError):
                moment = datetime.fromtimestamp(ssl.cert_time_to_seconds(peer[key]), UTC)
                setattr(facts, attr, moment.isoformat())
    return facts


def matches_host(cert: CertificateFacts, host: str) -> bool:
    """RFC 6125 matching as browsers do it: SANs (the subject CN only when there are none);
    a wildcard stands for exactly one whole left-most label."""
    try:
        wanted_ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        wanted_ip = None
    if wanted_ip is not None:
        return any(ipaddress.ip_address(a) == wanted_ip for a in cert.ip_addresses)
    host = host.lower().rstrip(".")
    for pattern in cert.dns_names if (cert.dns_names or cert.ip_addresses) else cert.names:
        pattern = pattern.lower().rstrip(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def _distinguished_name(rdns: Any) -> str:
    parts: list[str] = []
    short = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
        "localityName": "L",
        "stateOrProvinceName": "ST",
    }
    for rdn in rdns or ():
        for key, value in rdn:
            parts.append(f"{short.get(key, key)}={value}")
    return ", ".join(parts)


def _common_name(dn: str) -> str | None:
    for part in dn.split(", "):
        if part.startswith("CN="):
            return part[3:]
    return None


def _day(iso: str | None) -> str:
    if not iso:
        return "an unknown date"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d")
