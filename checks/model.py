"""The data that flows through a diagnosis: findings, step results, the verdict.

Everything here is plain data that round-trips through JSON, so that a step can run in
a worker on another machine and its result be rendered anywhere (Slack, terminal, JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class Status(StrEnum):
    """A step's (or a finding's) outcome; ordered from best to worst by ``rank``."""

    OK = "ok"
    SKIPPED = "skipped"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _STATUS_RANK[self]


_STATUS_RANK = {
    Status.OK: 0,
    Status.SKIPPED: 1,
    Status.WARN: 2,
    Status.FAIL: 3,
    Status.ERROR: 4,
}


class Cause(StrEnum):
    """The one cause a verdict names. Documented for users in docs/causes.md."""

    HEALTHY = "healthy"
    TRANSIENT = "transient"
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_FAILURE = "dns_failure"
    DNS_MISMATCH = "dns_mismatch"
    DNS_INCONSISTENT = "dns_inconsistent"
    UNREACHABLE = "unreachable"
    FIREWALL_DROP = "firewall_drop"
    TLS_ERROR = "tls_error"
    BLOCKED = "blocked"
    UPSTREAM_REFUSED = "upstream_refused"
    UPSTREAM_PERMISSION = "upstream_permission"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_CLOSED = "upstream_closed"
    UPSTREAM_INVALID = "upstream_invalid"
    UPSTREAM_HEADER_TOO_BIG = "upstream_header_too_big"
    UPSTREAM_TLS = "upstream_tls"
    UPSTREAM_DNS = "upstream_dns"
    OVERLOAD = "overload"
    APP_TIMEOUT = "app_timeout"
    SERVER_ERROR = "server_error"
    REGIONAL = "regional"
    CLIENT_SIDE = "client_side"
    UNKNOWN = "unknown"


class Weight(IntEnum):
    """How strongly a finding supports its cause.

    OBSERVED: a server said so itself (a log line, a refused connect to the upstream).
    INFERRED: read off a response (a CDN's 521 page, HAProxy's 503 text).
    HINT: consistent with the cause, proves nothing alone (a slow 502).
    """

    HINT = 1
    INFERRED = 2
    OBSERVED = 3


@dataclass(frozen=True)
class Finding:
    """One fact a step established, optionally as evidence for a cause."""

    code: str  # stable machine id, e.g. "tcp_refused", "log_upstream_refused"
    message: str  # one human line; may quote servers, so renderers escape it
    severity: Status = Status.OK
    cause: Cause | None = None
    weight: Weight = Weight.HINT
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "severity": self.severity.value,
            "cause": self.cause.value if self.cause else None,
            "weight": int(self.weight),
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            code=d["code"],
            message=d["message"],
            severity=Status(d.get("severity", "ok")),
            cause=Cause(d["cause"]) if d.get("cause") else None,
            weight=Weight(d.get("weight", 1)),
            data=dict(d.get("data") or {}),
        )


@dataclass(frozen=True)
class SentRequest:
    """One request a step sent to the site, so that another step can find it in the site's
    logs: by its ``_bgw`` mark where a log quotes the URL, by its source port where a log
    names the client's port (Apache, HAProxy)."""

    mark: str  # the ``_bgw`` value in its query string
    sent_at: str  # ISO 8601, UTC
    source: str | None  # "ip:port" it was sent from, once connected
    reached: bool  # a connection to the site was made: the server in front saw the request
    answer: str  # "502", "timeout", "closed"…: what came back
    # The server in front failed the request itself (a gateway status, or the connection cut
    # after the request was sent): its log should say why.
    gateway_failed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "mark": self.mark,
            "sent_at": self.sent_at,
            "source": self.source,
            "reached": self.reached,
            "answer": self.answer,
            "gateway_failed": self.gateway_failed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SentRequest:
        return cls(
            mark=str(d["mark"]),
            sent_at=str(d.get("sent_at", "")),
            source=d.get("source"),
            reached=bool(d.get("reached")),
            answer=str(d.get("answer", "")),
            gateway_failed=bool(d.get("gateway_failed")),
        )


@dataclass
class StepResult:
    """What one step of the sequence found. ``details`` holds evidence tables for renderers;
    ``sent`` the requests the step sent to the site (see ``SentRequest``)."""

    name: str
    status: Status
    summary: str
    findings: list[Finding] = field(default_factory=list)
    duration_ms: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    sent: list[SentRequest] = field(default_factory=list)

    @classmethod
    def from_findings(
        cls,
        name: str,
        summary: str,
        findings: list[Finding],
        *,
        duration_ms: int = 0,
        details: Mapping[str, Any] | None = None,
        sent: list[SentRequest] | None = None,
    ) -> StepResult:
        """Status is the worst severity among the findings (ok when there are none).
        ``details``: the step's own shape (a TypedDict in its module), stored as JSON data."""
        status = max((f.severity for f in findings), key=lambda s: s.rank, default=Status.OK)
        return cls(name, status, summary, findings, duration_ms, dict(details or {}), sent or [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "findings": [f.to_dict() for f in self.findings],
            "duration_ms": self.duration_ms,
            "details": self.details,
            "sent": [r.to_dict() for r in self.sent],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepResult:
        return cls(
            name=d["name"],
            status=Status(d["status"]),
            summary=d["summary"],
            findings=[Finding.from_dict(f) for f in d.get("findings", [])],
            duration_ms=int(d.get("duration_ms", 0)),
            details=dict(d.get("details") or {}),
            sent=[SentRequest.from_dict(r) for r in d.get("sent") or []],
        )


@dataclass(frozen=True)
class Change:
    """One fact that differs from the target's last healthy check (checks.changes): what it
    was and is, the last time it was seen as before and the first time as now."""

    fact: str  # "dns.addresses@127.0.0.1:53", "tls.certificate", "header.server"…
    layer: str  # a checks.causes.Layer value
    message: str  # one human line, both times included
    before: str
    now: str
    seen_before_at: str  # ISO 8601, UTC
    seen_now_at: str  # ISO 8601, UTC
    at_failing_layer: bool = False  # strong evidence: it lies where the verdict's cause does

    def to_dict(self) -> dict[str, Any]:
        return {
            "fact": self.fact,
            "layer": self.layer,
            "message": self.message,
            "before": self.before,
            "now": self.now,
            "seen_before_at": self.seen_before_at,
            "seen_now_at": self.seen_now_at,
            "at_failing_layer": self.at_failing_layer,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        return cls(
            fact=str(d["fact"]),
            layer=str(d.get("layer", "")),
            message=str(d["message"]),
            before=str(d.get("before", "")),
            now=str(d.get("now", "")),
            seen_before_at=str(d.get("seen_before_at", "")),
            seen_now_at=str(d.get("seen_now_at", "")),
            at_failing_layer=bool(d.get("at_failing_layer")),
        )


@dataclass
class Verdict:
    cause: Cause
    summary: str
    next_steps: list[str]
    evidence: list[Finding] = field(default_factory=list)
    # What changed since the target's last healthy check (failing verdicts only), and one
    # line on what it was compared with ("never seen healthy" when there is nothing).
    changes: list[Change] = field(default_factory=list)
    baseline: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause.value,
            "summary": self.summary,
            "next_steps": list(self.next_steps),
            "evidence": [f.to_dict() for f in self.evidence],
            "changes": [c.to_dict() for c in self.changes],
            "baseline": self.baseline,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(
            cause=Cause(d["cause"]),
            summary=d["summary"],
            next_steps=list(d.get("next_steps", [])),
            evidence=[Finding.from_dict(f) for f in d.get("evidence", [])],
            changes=[Change.from_dict(c) for c in d.get("changes") or []],
            baseline=str(d.get("baseline") or ""),
        )


@dataclass
class Diagnosis:
    target: str
    url: str
    verdict: Verdict
    steps: list[StepResult]
    duration_ms: int
    started_at: str  # ISO 8601, UTC
    site: str | None = None  # the configured site whose settings were used

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "url": self.url,
            "site": self.site,
            "verdict": self.verdict.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "duration_ms": self.duration_ms,
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        return cls(
            target=d["target"],
            url=d["url"],
            verdict=Verdict.from_dict(d["verdict"]),
            steps=[StepResult.from_dict(s) for s in d["steps"]],
            duration_ms=int(d["duration_ms"]),
            started_at=d["started_at"],
            site=d.get("site"),
        )
