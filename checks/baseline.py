"""A compact snapshot of what a diagnosis saw of a target, to compare a later one with.

Built from the steps' details only (a pure function of a ``Diagnosis``): what each resolver
answered, the state of each address and upstream connected to, the TLS certificate, the
software answering (``Server``, ``Via``, ``X-Powered-By``, the producer, a page's generator
tag), the redirect chain, and the upstreams the proxy sent the diagnosis's own requests to,
as its logs name them (``proxy.upstream@nginx``: an access log's ``$upstream_addr``, an
error line's ``upstream:``, HAProxy's backend/server). Those are ``facts``: text values
compared one by one (checks.changes). What varies from run to run without meaning a change
(TTLs counting down in caches, timing phases, the status) is kept as ``context``: shown,
never compared.

Snapshots are JSON (``to_dict``/``from_dict``) and carry a version: a stored snapshot of a
version this code does not read is ``SnapshotError``, which a store treats as no snapshot.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from badgateway.checks.model import Cause, Diagnosis, StepResult

SNAPSHOT_VERSION = 1

# The response headers that name the software in front and behind (compared as facts).
SOFTWARE_HEADERS = ("server", "via", "x-powered-by")
# <meta name="generator" content="WordPress 6.4.2">, either attribute order.
_GENERATOR = re.compile(
    r"<meta\s+(?:name=[\"']generator[\"']\s+content=[\"']([^\"'<>]{1,80})[\"']"
    r"|content=[\"']([^\"'<>]{1,80})[\"']\s+name=[\"']generator[\"'])",
    re.I,
)


class SnapshotError(ValueError):
    """A stored snapshot this version cannot read."""


@dataclass(frozen=True)
class Snapshot:
    """What one diagnosis of ``target`` saw, taken at ``taken_at`` (its start, ISO UTC)."""

    target: str  # the site's name, else the URL: what snapshots are kept under
    taken_at: str
    healthy: bool  # the verdict was "healthy": a baseline to compare failures with
    cause: str
    facts: dict[str, str] = field(default_factory=dict)  # compared one by one
    context: dict[str, Any] = field(default_factory=dict)  # shown with a change, not compared
    version: int = SNAPSHOT_VERSION
    # Which run it is (a diagnosis request's id), when known: two runs alike in the same
    # second are two checks, one run delivered twice is one. Not part of what it saw.
    run: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "target": self.target,
            "taken_at": self.taken_at,
            "healthy": self.healthy,
            "cause": self.cause,
            "facts": dict(self.facts),
            "context": dict(self.context),
            "run": self.run,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Snapshot:
        """Raises SnapshotError for anything but a snapshot of this version."""
        if not isinstance(d, dict) or d.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError("not a version-1 snapshot")
        facts, context = d.get("facts"), d.get("context")
        if not isinstance(facts, dict) or not isinstance(context, dict):
            raise SnapshotError("a snapshot without facts")
        try:
            return cls(
                target=str(d["target"]),
                taken_at=str(d["taken_at"]),
                healthy=bool(d["healthy"]),
                cause=str(d["cause"]),
                facts={str(k): str(v) for k, v in facts.items()},
                context=dict(context),
                run=str(d.get("run") or ""),
            )
        except KeyError as exc:
            raise SnapshotError(f"a snapshot without {exc}") from None


def target_of(diagnosis: Diagnosis) -> str:
    """What a diagnosis's snapshots are kept under: the site's name, else its URL."""
    return diagnosis.site or diagnosis.url


def snapshot_of(diagnosis: Diagnosis, run: str = "") -> Snapshot:
    """The snapshot of one diagnosis (see the module docstring); ``run``: its request's id."""
    facts: dict[str, str] = {}
    context: dict[str, Any] = {}
    steps = {s.name: s for s in diagnosis.steps}
    if "dns" in steps:
        _dns(steps["dns"], facts, context)
    if "firewall" in steps:
        _firewall(steps["firewall"], facts, context)
    if "reload" in steps:
        _reload(steps["reload"], facts, context)
    if "logs" in steps:
        _logs(steps["logs"], facts)
    return Snapshot(
        target=target_of(diagnosis),
        taken_at=diagnosis.started_at,
        healthy=diagnosis.verdict.cause is Cause.HEALTHY,
        cause=diagnosis.verdict.cause.value,
        facts=facts,
        context=context,
        run=run,
    )


def _dns(step: StepResult, facts: dict[str, str], context: dict[str, Any]) -> None:
    for report in _dicts(step.details.get("resolvers")):
        resolver = str(report.get("resolver", "?"))
        facts[f"dns.answer@{resolver}"] = str(report.get("status", "?"))
        if report.get("status") != "ok":
            continue
        facts[f"dns.addresses@{resolver}"] = ", ".join(sorted(map(str, report["addresses"])))
        chain = [str(n) for n in report.get("cname_chain") or []]
        facts[f"dns.cname@{resolver}"] = " → ".join(chain) if len(chain) > 1 else "none"
        if report.get("ttl_max") is not None:
            context[f"ttl@{resolver}"] = int(report["ttl_max"])


def _firewall(step: StepResult, facts: dict[str, str], context: dict[str, Any]) -> None:
    for row in _dicts(step.details.get("edge")):
        if row.get("state") != "unfinished":
            facts[f"edge@{_where(str(row['address']), row.get('port'))}"] = str(row["state"])
    tls = step.details.get("tls")
    if isinstance(tls, dict) and tls.get("address"):
        cert = tls.get("certificate") if isinstance(tls.get("certificate"), dict) else None
        identity = tls.get("fingerprint") or (
            f"{cert.get('issuer')} #{cert.get('serial')}" if cert else None
        )
        if identity:
            facts["tls.certificate"] = str(identity)
        if cert:
            context["tls.issuer"] = str(cert.get("issuer", ""))
            context["tls.names"] = [str(n).split(":", 1)[-1] for n in cert.get("san") or []]
            context["tls.not_after"] = cert.get("not_after")
    for attempt in _dicts(step.details.get("upstreams")):
        connect = attempt.get("connect")
        if isinstance(connect, dict) and connect.get("state") != "unfinished":
            address = _where(str(attempt.get("address")), attempt.get("port"))
            facts[f"upstream@{address}"] = str(connect.get("state"))


def _reload(step: StepResult, facts: dict[str, str], context: dict[str, Any]) -> None:
    attempts = _dicts(step.details.get("attempts"))
    answered = [a for a in attempts if a.get("status") is not None]
    if step.details.get("producer"):
        facts["http.producer"] = str(step.details["producer"])
    for name in SOFTWARE_HEADERS:
        value = _most_common(str(a["headers"][name]) for a in answered if name in a["headers"])
        if value is not None:
            facts[f"header.{name}"] = value
    good = [a for a in answered if 200 <= int(a["status"]) < 400]
    generator = _most_common(g for a in good if (g := _generator(str(a.get("body_excerpt")))))
    if generator is not None:
        facts["generator"] = generator
    hops = [_hop(h) for h in (answered[0].get("redirects") or [])] if answered else []
    if hops:
        facts["http.redirects"] = " → ".join(hops)
    statuses = [int(a["status"]) for a in answered]
    if statuses:
        context["status"] = Counter(statuses).most_common(1)[0][0]
    phases: dict[str, list[float]] = {}
    for attempt in answered:
        for phase, ms in (attempt.get("phases") or {}).items():
            phases.setdefault(str(phase), []).append(float(ms))
    if phases:
        context["phases_ms"] = {p: round(statistics.median(v)) for p, v in phases.items()}


def _logs(step: StepResult, facts: dict[str, str]) -> None:
    """Per proxy software (the log's format), the upstreams our requests went to."""
    used: dict[str, set[str]] = {}
    for log in _dicts(step.details.get("logs")):
        upstreams = log.get("own_upstreams")
        if log.get("format") and isinstance(upstreams, dict) and upstreams:
            used.setdefault(str(log["format"]), set()).update(map(str, upstreams))
    for software, addresses in used.items():
        facts[f"proxy.upstream@{software}"] = ", ".join(sorted(addresses))


def _generator(body: str) -> str | None:
    found = _GENERATOR.search(body)
    return (found.group(1) or found.group(2)).strip() if found else None


def _hop(hop: Mapping[str, Any]) -> str:
    """ "301 http://shop.example/": the query left out, as it carries each run's own mark."""
    url = urlsplit(str(hop.get("url", "?")))
    return f"{hop.get('status', '?')} {urlunsplit((url.scheme, url.netloc, url.path, '', ''))}"


def _most_common(values: Iterable[str]) -> str | None:
    counted = Counter(values).most_common(1)
    return counted[0][0] if counted else None


def _where(address: str, port: object) -> str:
    if port in (None, ""):
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _dicts(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [cast(dict[str, Any], v) for v in value if isinstance(v, dict)]
