"""Evidence as a person on call wants to read it: a few lines per step, not a data dump.

Each known step's details get a reader that picks what matters (per-attempt status and
timings, per-resolver answers, TCP/TLS per address, the classified log lines with samples,
the provider summary). A step without a reader here falls back to the generic rendering,
so a new check shows its evidence without touching this file. Lines are plain text; the
caller escapes them for the medium.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checks.model import StepResult

MAX_LINES = 12
Reader = Callable[[StepResult], list[str]]


def _ms(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f} ms"


def _attempt_line(n: int, attempt: dict[str, Any], fingerprint: dict[str, Any] | None) -> str:
    phases = attempt.get("phases") or {}
    timing = " · ".join(
        f"{label} {_ms(phases[key])}"
        for key, label in (("connect", "connect"), ("tls", "TLS"), ("ttfb", "first byte"))
        if phases.get(key) is not None
    )
    who = "browser" if "Mozilla" in str(attempt.get("user_agent", "")) else "bot"
    if attempt.get("status") is not None:
        what = f"{attempt['status']} {attempt.get('reason') or ''}".strip()
    else:
        error = attempt.get("error") or {}
        what = f"no answer: {error.get('kind', '?')} ({error.get('message', '')})"
    producer = (fingerprint or {}).get("producer")
    request_id = (fingerprint or {}).get("request_id")
    extras = [p for p in (f"from {producer}" if producer else "", request_id or "") if p]
    tail = f" · total {_ms(phases.get('total'))}" if phases.get("total") is not None else ""
    parts = [f"{n}. [{who}] {what}", timing + tail if timing else tail.lstrip(" ·"), *extras]
    return " · ".join(p for p in parts if p)


def reload_evidence(result: StepResult) -> list[str]:
    attempts = result.details.get("attempts") or []
    prints = result.details.get("fingerprints") or []
    return [
        _attempt_line(i + 1, a, prints[i] if i < len(prints) else None)
        for i, a in enumerate(attempts)
    ]


def dns_evidence(result: StepResult) -> list[str]:
    lines = []
    for r in result.details.get("resolvers") or []:
        answer = ", ".join(r.get("addresses") or []) or (r.get("error") or r.get("status", "?"))
        chain = r.get("cname_chain") or []
        via = f" via {' → '.join(chain)}" if chain else ""
        ttl = f" · TTL {r['ttl_max']} s" if r.get("ttl_max") is not None else ""
        lines.append(
            f"{r.get('resolver', '?')}: {r.get('status', '?')} → {answer}{via}{ttl} "
            f"({_ms(r.get('elapsed_ms'))})"
        )
    return lines


def firewall_evidence(result: StepResult) -> list[str]:
    lines = []
    for edge in result.details.get("edge") or []:
        state = edge.get("state", "?")
        lines.append(
            f"TCP {edge.get('address')}:{edge.get('port')} → {state} ({_ms(edge.get('ms'))})"
        )
    tls = result.details.get("tls") or {}
    if tls.get("address"):
        cert = tls.get("certificate") or {}
        verdict = "verified" if tls.get("verified") else f"NOT verified: {tls.get('verify_error')}"
        lines.append(
            f"TLS {tls.get('protocol') or '?'} with SNI {tls.get('server_name')}: {verdict}; "
            f"certificate for {cert.get('subject', '?')} until {cert.get('not_after', '?')} "
            f"({tls.get('days_left', '?')} days left), issuer {cert.get('issuer', '?')}"
        )
    for up in result.details.get("upstreams") or []:
        connect = up.get("connect") or {}
        state = connect.get("state") or up.get("resolve_error") or "?"
        http = up.get("http") or {}
        answer = f" · HTTP {http.get('status')}" if http.get("status") else ""
        lines.append(f"upstream {up.get('upstream')} → {state} ({_ms(connect.get('ms'))}){answer}")
    return lines


def logs_evidence(result: StepResult) -> list[str]:
    lines = []
    for log in result.details.get("logs") or []:
        causes = ", ".join(f"{c} ×{n}" for c, n in (log.get("causes") or {}).items())
        lines.append(
            f"{log.get('path')} ({log.get('format') or 'format unknown'}): "
            f"{log.get('lines_in_window', 0)} line(s) in the window; "
            f"{causes or 'nothing classified'}"
        )
    for finding in result.findings:
        for sample in (finding.data.get("samples") or [])[:2]:
            lines.append(f"  » {sample}")
    return lines


def host_evidence(result: StepResult) -> list[str]:
    summary = result.details.get("provider_summary")
    return [str(summary)] if summary else []


READERS: dict[str, Reader] = {
    "reload": reload_evidence,
    "dns": dns_evidence,
    "firewall": firewall_evidence,
    "logs": logs_evidence,
    "host": host_evidence,
}


def step_evidence(result: StepResult) -> list[str] | None:
    """Readable evidence lines for a known step; None to use the generic rendering."""
    reader = READERS.get(result.name)
    if reader is None:
        return None
    try:
        lines = reader(result)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # details of an unexpected shape: show them generically instead
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"…and {len(lines) - MAX_LINES} more"]
    return lines
