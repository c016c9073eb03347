"""One HTTP request and what came back (``Attempt``): a status when a response came, an
``error`` with a kind other modules branch on when none did, and the timing phases either
way. checks.http_probe makes them; the steps, the fingerprint and the monitor read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from badgateway.checks.http_status import GATEWAY_STATUSES
from badgateway.checks.model import SentRequest

EXCERPT_CHARS = 2000  # how much of the body goes into JSON; fingerprinting sees all it read


class ErrorKind(StrEnum):
    """What went wrong when no (complete) answer came."""

    TIMEOUT = "timeout"
    TLS = "tls"
    REFUSED = "refused"
    RESET = "reset"
    UNREACHABLE = "unreachable"
    CLOSED = "closed"  # the server closed the connection without an answer
    PROTOCOL = "protocol"  # an answer that is not HTTP
    OTHER = "other"
    NO_ADDRESS = "no_address"  # nothing to dial
    REFUSED_BY_GUARD = "refused_by_guard"  # a redirect to an address the guard refuses
    DNS = "dns"  # a redirect's host did not resolve


class ErrorPhase(StrEnum):
    """How far the request got before it went wrong."""

    CONNECT = "connect"
    TLS = "tls"
    RESPONSE = "response"
    BODY = "body"
    REDIRECT = "redirect"


class AttemptError(TypedDict):
    kind: ErrorKind
    phase: ErrorPhase
    message: str


def _error_from_dict(d: dict[str, Any]) -> AttemptError:
    kinds, phases = {k.value: k for k in ErrorKind}, {p.value: p for p in ErrorPhase}
    return {
        "kind": kinds.get(str(d.get("kind")), ErrorKind.OTHER),
        "phase": phases.get(str(d.get("phase")), ErrorPhase.CONNECT),
        "message": str(d.get("message", "")),
    }


class AttemptDict(TypedDict):
    """An ``Attempt`` as JSON (in the reload and host steps' details)."""

    url: str
    address: str | None
    user_agent: str
    started_at: str
    status: int | None
    reason: str
    http_version: str
    phases: dict[str, float]
    headers: dict[str, str]
    header_names: list[str]
    body_excerpt: str
    body_bytes: int
    body_truncated: bool
    error: AttemptError | None
    redirects: list[dict[str, Any]]
    source: str | None
    place: NotRequired[str]  # the place it was sent from, when a step ran from several


@dataclass
class Attempt:
    """One request and what came back. ``status`` is None when no response arrived."""

    url: str
    address: str | None
    user_agent: str
    started_at: str  # ISO 8601, UTC
    status: int | None = None
    reason: str = ""
    http_version: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # ms, cumulative like curl -w
    headers: dict[str, str] = field(default_factory=dict)  # SELECTED_HEADERS present
    header_names: list[str] = field(default_factory=list)  # every header name, lower-case
    body: bytes = b""  # up to MAX_BODY_BYTES; not serialised
    body_truncated: bool = False
    error: AttemptError | None = None
    redirects: list[dict[str, Any]] = field(default_factory=list)  # hops before this answer
    source: str | None = None  # "ip:port" the request left from (logs that name the client's
    # port, Apache's and HAProxy's, show it)

    def as_sent(self, mark: str) -> SentRequest:
        """This request as other steps look for it in the site's logs."""
        cut = self.error_kind in (ErrorKind.CLOSED, ErrorKind.RESET, ErrorKind.PROTOCOL)
        return SentRequest(
            mark=mark,
            sent_at=self.started_at,
            source=self.source,
            reached=self.connected,
            answer=str(self.status) if self.status is not None else self.error_kind or "",
            gateway_failed=self.status in GATEWAY_STATUSES or (self.connected and cut),
        )

    @property
    def connected(self) -> bool:
        """A connection to the server was made: it saw the request (or its TLS hello)."""
        return self.status is not None or (
            self.error is not None
            and self.error["phase"] not in (ErrorPhase.CONNECT, ErrorPhase.REDIRECT)
        )

    @property
    def error_kind(self) -> ErrorKind | None:
        return self.error["kind"] if self.error else None

    @property
    def body_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def to_dict(self) -> AttemptDict:
        return {
            "url": self.url,
            "address": self.address,
            "user_agent": self.user_agent,
            "started_at": self.started_at,
            "status": self.status,
            "reason": self.reason,
            "http_version": self.http_version,
            "phases": dict(self.phases),
            "headers": dict(self.headers),
            "header_names": list(self.header_names),
            "body_excerpt": self.body_text[:EXCERPT_CHARS],
            "body_bytes": len(self.body),
            "body_truncated": self.body_truncated,
            "error": self.error.copy() if self.error else None,
            "redirects": list(self.redirects),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        """Rebuild from ``to_dict`` (the body comes back as its excerpt only)."""
        return cls(
            url=d["url"],
            address=d.get("address"),
            user_agent=d.get("user_agent", ""),
            started_at=d.get("started_at", ""),
            status=d.get("status"),
            reason=d.get("reason", ""),
            http_version=d.get("http_version", ""),
            phases=dict(d.get("phases") or {}),
            headers=dict(d.get("headers") or {}),
            header_names=list(d.get("header_names") or []),
            body=str(d.get("body_excerpt", "")).encode(),
            body_truncated=bool(d.get("body_truncated")),
            error=_error_from_dict(d["error"]) if d.get("error") else None,
            redirects=list(d.get("redirects") or []),
            source=d.get("source"),
        )
