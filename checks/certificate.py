"""What a certificate says: decoded from the DER bytes a server sent, and matched to a host name.

The peer's DER bytes are decoded with the standard library's ``ssl._ssl._test_decode_cert``,
the decoder behind ``SSLSocket.getpeercert()``. It is private, but it has existed unchanged
since Python 2.7 (CPython's own test-suite relies on it), gives exactly the dictionary
``getpeercert()`` gives for a verified peer, and saves a compiled dependency (``cryptography``)
that nothing else here needs. Should a future Python drop it, the facts shrink to what the
handshake itself says and the verification verdict stays intact.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict


class CertificateDict(TypedDict):
    """``CertificateFacts`` as JSON."""

    subject: str
    issuer: str
    san: list[str]  # "DNS:name", "IP:address"
    not_before: str | None
    not_after: str | None
    serial: str | None


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
        common = common_name(self.subject)
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


def common_name(dn: str) -> str | None:
    for part in dn.split(", "):
        if part.startswith("CN="):
            return part[3:]
    return None


def day_of(iso: str | None) -> str:
    if not iso:
        return "an unknown date"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d")
