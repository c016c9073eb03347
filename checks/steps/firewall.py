"""Firewall / network path: can a client open a connection to the site, does its TLS hold,
and can the proxy's upstreams be reached at all?

For every vetted address of the site: a TCP connect (open, refused = nothing listens,
timed out = packets silently dropped by a firewall, unreachable = no route), then for
https the TLS handshake with the site's name (checks.tls_inspect). Then the site's
upstreams from the sites file, probed directly (checks.upstream_probe, judged by
checks.upstream_findings): this proves "the proxy cannot reach its app" even when no proxy
log is at hand. Everything runs at once, within the diagnosis budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, NotRequired, TypedDict, TypeVar, cast

from badgateway.checks import place_judgement, places
from badgateway.checks.connect import ConnectResult, ConnectState, connect_tcp
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.readable import ms_text
from badgateway.checks.steps import ANYWHERE, Parts, Step
from badgateway.checks.tls_findings import tls_findings
from badgateway.checks.tls_inspect import TlsDict, TlsReport, inspect_tls
from badgateway.checks.upstream_findings import upstream_findings
from badgateway.checks.upstream_probe import UpstreamAttemptDict, UpstreamReport, probe_upstreams

NAME = "firewall"
_SPARE_S = 0.15  # finish this much before the step's deadline, to report what was found

T = TypeVar("T")


class EdgeRow(TypedDict):
    """The probe of one address of the site: its TCP connect (``state`` "unfinished" when
    it ran out of time, then nothing else) and whether its TLS verified."""

    address: str
    port: int
    state: str
    place: NotRequired[str]  # the place it was probed from, when probed from several
    ms: NotRequired[int]
    error: NotRequired[str | None]
    tls_verified: NotRequired[bool]


class EdgeTls(TlsDict):
    """The first address's TLS, and the other addresses' when there are several."""

    others: NotRequired[list[TlsDict]]


class NoTls(TypedDict):
    """No TLS handshake was made (plain http, or no address accepted the connection)."""


class FirewallDetails(TypedDict):
    edge: list[EdgeRow]
    tls: EdgeTls | NoTls
    upstreams: list[UpstreamAttemptDict]
    places: NotRequired[list[places.PlaceRow]]  # one row per place, when run from several


def _shown(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _edge_finding(address: str, port: int, result: ConnectResult, timeout_s: float) -> Finding:
    where = _shown(address, port)
    data: dict[str, Any] = {"address": address, "port": port, "connect_ms": result.ms}
    if result.state is ConnectState.OPEN:
        return Finding("tcp_open", f"{where} accepts connections ({result.ms} ms)", data=data)
    if result.state is ConnectState.REFUSED:
        return Finding(
            "tcp_refused",
            f"{where} refuses connections: nothing listens on port {port} there",
            Status.FAIL,
            Cause.UNREACHABLE,
            Weight.OBSERVED,
            data,
        )
    if result.state is ConnectState.TIMEOUT:
        return Finding(
            "tcp_timeout",
            f"connecting to {where} got no answer within {timeout_s:g} s: the packets are "
            "dropped on the way (a firewall), or the host is down",
            Status.FAIL,
            Cause.FIREWALL_DROP,
            Weight.OBSERVED,
            data,
        )
    return Finding(
        "tcp_unreachable" if result.state is ConnectState.UNREACHABLE else "tcp_error",
        f"connecting to {where} fails: {result.error}",
        Status.FAIL,
        Cause.UNREACHABLE,
        Weight.OBSERVED if result.state is ConnectState.UNREACHABLE else Weight.INFERRED,
        data,
    )


async def _probe_edge(
    ctx: ProbeContext, address: str
) -> tuple[ConnectResult, TlsReport | None, float]:
    target = ctx.target
    timeout_s = ctx.probe_timeout()
    connected = await connect_tcp(address, target.port, timeout_s)
    if connected.state is not ConnectState.OPEN or target.scheme != "https":
        return connected, None, timeout_s
    tls = await inspect_tls(
        address, target.port, target.host, ctx.probe_timeout(), ctx.settings.ca_file
    )
    return connected, tls, timeout_s


async def _bounded(awaitable: Awaitable[T], seconds: float) -> T | None:
    """The result, or None when the step's time runs out first."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        return None


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per distinct message, counted: many addresses, one story."""
    merged: dict[tuple[str, str], Finding] = {}
    counts: dict[tuple[str, str], int] = {}
    for finding in findings:
        key = (finding.code, finding.message)
        counts[key] = counts.get(key, 0) + 1
        merged.setdefault(key, finding)
    out: list[Finding] = []
    for key, finding in merged.items():
        if counts[key] > 1:
            finding = Finding(
                finding.code,
                finding.message,
                finding.severity,
                finding.cause,
                finding.weight,
                {**finding.data, "count": counts[key]},
            )
        out.append(finding)
    return out


async def run(ctx: ProbeContext) -> StepResult:
    """The edge and the upstreams, from here."""
    return await _probe(ctx, edge=True, upstreams=True)


async def _probe(ctx: ProbeContext, *, edge: bool, upstreams: bool) -> StepResult:
    """The site's addresses (``edge``) and its upstreams (``upstreams``): a vantage probes
    the edge only, the upstreams are probed where the default workers run."""
    target = ctx.target
    upstream_specs = target.site.upstreams if target.site and upstreams else ()
    edge_addresses = ctx.addresses if edge else ()
    if not edge_addresses and not upstream_specs:
        return StepResult(
            NAME,
            Status.SKIPPED,
            f"no address to connect to: {ctx.resolve_error or 'the name did not resolve'}"
            if edge
            else "no upstreams configured for this site",
        )
    budget = max(0.05, ctx.remaining() - _SPARE_S)
    upstream_timeout = ctx.probe_timeout()
    edge_tasks = [_bounded(_probe_edge(ctx, a), budget) for a in edge_addresses]
    upstream_task = _bounded(probe_upstreams(upstream_specs, upstream_timeout), budget)
    edge_results, upstream_report = await asyncio.gather(asyncio.gather(*edge_tasks), upstream_task)

    findings: list[Finding] = []
    edge_rows: list[EdgeRow] = []
    tls_reports: list[TlsReport] = []
    many = len(edge_addresses) > 1
    for address, outcome in zip(edge_addresses, edge_results, strict=True):
        if outcome is None:
            edge_rows.append({"address": address, "port": target.port, "state": "unfinished"})
            findings.append(
                Finding(
                    "edge_unfinished",
                    f"the probe of {_shown(address, target.port)} did not finish in time",
                    Status.WARN,
                )
            )
            continue
        connected, tls, timeout_s = outcome
        row: EdgeRow = {
            "address": address,
            "port": target.port,
            "state": connected.state,
            "ms": connected.ms,
            "error": connected.error,
        }
        findings.append(_edge_finding(address, target.port, connected, timeout_s))
        if tls is not None:
            row["tls_verified"] = tls.verified
            tls_reports.append(tls)
            findings.extend(tls_findings(tls, show_address=many))
        edge_rows.append(row)

    details: FirewallDetails = {"edge": edge_rows, "tls": {}, "upstreams": []}
    if tls_reports:
        first = cast(EdgeTls, tls_reports[0].to_dict())
        if len(tls_reports) > 1:
            first["others"] = [r.to_dict() for r in tls_reports[1:]]
        details["tls"] = first
    if edge and not ctx.addresses:
        findings.append(
            Finding(
                "edge_skipped",
                f"the site's address is unknown ({ctx.resolve_error or 'no address'}); "
                "only its upstreams were probed",
            )
        )
    findings.extend(_upstream_findings(upstream_specs, upstream_report, upstream_timeout, details))
    findings = _merge(findings)
    return StepResult.from_findings(NAME, _summary(findings, details), findings, details=details)


def _upstream_findings(
    upstreams: tuple[str, ...],
    report: UpstreamReport | None,
    timeout_s: float,
    details: FirewallDetails,
) -> list[Finding]:
    if not upstreams:
        return []
    if report is None:
        message = "the upstream probes did not finish in time"
        return [Finding("upstreams_unfinished", message, Status.WARN)]
    details["upstreams"] = [a.to_dict() for a in report.attempts]
    found = [
        Finding("upstream_unreadable", f"upstream entry not understood: {text}", Status.WARN)
        for text in report.invalid
    ]
    for attempt in report.attempts:
        found.extend(upstream_findings(attempt, timeout_s))
    return found


def _summary(findings: list[Finding], details: FirewallDetails) -> str:
    problems = [f for f in findings if f.severity.rank >= Status.WARN.rank]
    if problems:
        worst = max(problems, key=lambda f: (f.severity.rank, int(f.weight)))
        more = len(problems) - 1
        return worst.message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
    parts = []
    if details["edge"]:
        parts.append(f"{len(details['edge'])} address(es) accept connections")
    if details["tls"]:
        parts.append("TLS is valid")
    if details["upstreams"]:
        parts.append(f"{len(details['upstreams'])} upstream address(es) answer")
    return ", ".join(parts) or "nothing to probe"


def part_places(ctx: ProbeContext) -> tuple[str, ...]:
    """The edge from every place; the upstreams (behind the proxy, often private) from where
    the default workers run, as today."""
    if not ctx.places:
        return ()
    has_upstreams = bool(ctx.target.site and ctx.target.site.upstreams)
    return (*ctx.places, ANYWHERE) if has_upstreams else ctx.places


async def run_part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """At a place: its own view of the site's addresses, and the edge probed from there. The
    part any worker runs (``ANYWHERE``): the upstreams."""
    if place != ANYWHERE:
        return await places.run_at(ctx, place, NAME, _edge_only, phases=_connect_phase)
    result = await _probe(ctx, edge=False, upstreams=True)
    return {"place": ANYWHERE, "result": result.to_dict()}


def _connect_phase(result: StepResult) -> dict[str, int]:
    """The slowest connect that succeeded, for the table of places."""
    edge = cast(FirewallDetails, result.details).get("edge") or []
    times = [int(row["ms"]) for row in edge if row.get("state") == "open" and row.get("ms")]
    return {"connect": max(times)} if times else {}


async def _edge_only(ctx: ProbeContext) -> StepResult:
    return await _probe(ctx, edge=True, upstreams=False)


def assemble(
    ctx: ProbeContext, parts: Mapping[str, dict[str, Any]], missing: Mapping[str, str]
) -> StepResult:
    """The edge judged across places, then the upstreams as probed where they are."""
    edge_parts = {p: part for p, part in parts.items() if p != ANYWHERE}
    edge_missing = {p: why for p, why in missing.items() if p != ANYWHERE}
    judged = place_judgement.judge(ctx, edge_parts, edge_missing, title="The network path")
    findings = list(judged.findings)
    details: FirewallDetails = {"edge": [], "tls": {}, "upstreams": [], "places": judged.rows}
    for outcome in judged.found:
        theirs = cast(FirewallDetails, outcome.result.details)
        for row in theirs.get("edge") or []:
            details["edge"].append(cast(EdgeRow, {**row, "place": outcome.place}))
        if not details["tls"] and theirs.get("tls"):
            details["tls"] = theirs["tls"]
    summary = judged.summary
    if ANYWHERE in parts:
        upstream = StepResult.from_dict(parts[ANYWHERE]["result"])
        details["upstreams"] = cast(FirewallDetails, upstream.details).get("upstreams") or []
        findings += upstream.findings
        if upstream.status.rank >= Status.WARN.rank:
            summary += f"; upstreams: {upstream.summary}"
    elif ANYWHERE in missing:
        findings.append(
            Finding(
                "upstreams_unprobed",
                f"the upstreams were not probed: {missing[ANYWHERE]}",
                Status.WARN,
            )
        )
    return StepResult.from_findings(NAME, summary, findings, details=details)


def evidence(result: StepResult) -> list[str]:
    """The table of places (when probed from several), then a line per address (TCP), one
    for the TLS handshake, a line per upstream."""
    details = cast(FirewallDetails, result.details)
    lines = places.table_lines(details)
    for edge in details.get("edge") or []:
        state = edge.get("state", "?")
        where = f"{edge['place']}: " if edge.get("place") else ""
        lines.append(
            f"{where}TCP {edge.get('address')}:{edge.get('port')} → {state} "
            f"({ms_text(edge.get('ms'))})"
        )
    tls = cast(EdgeTls, details.get("tls") or {})  # {}: no handshake was made
    if tls.get("address"):
        cert = tls.get("certificate")
        verdict = "verified" if tls.get("verified") else f"NOT verified: {tls.get('verify_error')}"
        subject, until, issuer = (
            (cert.get("subject", "?"), cert.get("not_after", "?"), cert.get("issuer", "?"))
            if cert
            else ("?", "?", "?")
        )
        lines.append(
            f"TLS {tls.get('protocol') or '?'} with SNI {tls.get('server_name')}: {verdict}; "
            f"certificate for {subject} until {until} "
            f"({tls.get('days_left', '?')} days left), issuer {issuer}"
        )
    for up in details.get("upstreams") or []:
        connect = up.get("connect")
        state = (connect.get("state") if connect else None) or up.get("resolve_error") or "?"
        http = up.get("http")
        answer = f" · HTTP {http.get('status')}" if http and http.get("status") else ""
        connect_ms = connect.get("ms") if connect else None
        lines.append(f"upstream {up.get('upstream')} → {state} ({ms_text(connect_ms)}){answer}")
    return lines


STEP = Step(
    name=NAME,
    order=30,
    title="Firewall / network path",
    run=run,
    parts=Parts(places=part_places, run=run_part, assemble=assemble, queue=places.QUEUE),
    evidence=evidence,
)
