"""Step "logs": read the site's proxy and app-server logs and say what they blame.

The proxy knows why it answered 502: it wrote it in its error log ("connect() failed (111:
Connection refused) while connecting to upstream"). This step reads the recent tail of
each configured log, keeps the lines inside the settings' time window, and turns the lines
it understands into one finding per (log, cause), weighted OBSERVED because the server said
so itself. Lines it does not understand are counted, not claimed. Every quoted line is
redacted first.

On a quiet site the only failing requests are the diagnosis's own, so the step reads the
logs after the reload step's requests have reached the proxy: it waits for the reload
step's result, then for the lines of the requests the proxy failed (their ``_bgw`` mark, or
their source port) to appear, within a bound. Lines of other sites sharing the log never
decide this site's verdict (``checks.log_owner``). What the scans are evidence for is
``checks.log_findings``'s to say; this module gathers them, from every machine.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

from badgateway.checks.context import ProbeContext
from badgateway.checks.log_findings import APP_SERVER_FORMATS, findings_for, summary_of
from badgateway.checks.log_owner import LineOwners
from badgateway.checks.logparse import FORMATS
from badgateway.checks.logscan import LogScan, scan_log
from badgateway.checks.model import Finding, SentRequest, Status, StepResult
from badgateway.checks.settings import LogSource, Site
from badgateway.checks.steps import ANYWHERE, Parts, Step

# The queues this step's parts go to: the part for machine HOST on "logs@HOST".
QUEUE = "logs"
# The step whose requests to the site the logs step waits for, and the other steps whose
# requests it also looks for: they start together and are back by then, unless something
# else holds them up (the host step's PTR lookups), which is not waited for past a grace.
REQUESTS_FROM = "reload"
ALSO_FROM = ("host",)
_ALSO_GRACE_S = 0.25
# How long to wait for the proxy to log the requests it failed, once they have come back:
# the proxies write the line before (nginx, Apache, Caddy) or just after (HAProxy, Varnish)
# they answer, so this is only reached when a line never comes.
LOG_WAIT_S = 1.5
_POLL_S = 0.05

_NO_LOGS = (
    "no logs configured for this site; add the proxy's error log to the site in the sites "
    'file, e.g. logs = [{ path = "/var/log/nginx/error.log" }] (format is detected, or set '
    f"format = {' | '.join(repr(f) for f in FORMATS)})"
).replace("'", '"')


class ScanDetail(TypedDict):
    """What was read of one log, and what its lines in the window came to."""

    path: str  # "host:path" for a log on a named machine
    format: str | None
    format_detected: bool
    bytes_read: int
    lines_read: int
    lines_in_window: int
    causes: dict[str, int]  # cause -> lines claiming it
    consequences: dict[str, int]  # cause seen ("none") -> lines that follow from it
    unclassified: int
    own_requests_seen: int
    # The upstreams the proxy sent our requests to, as its lines name them: address -> lines.
    own_upstreams: dict[str, int]


class OwnRequests(TypedDict):
    sent: int  # the diagnosis's requests that reached the site
    expected: list[str]  # marks of those the proxy failed (its log should say why)
    seen: list[str]  # marks found in the logs


class LogsDetails(TypedDict):
    window_s: float
    logs: list[ScanDetail]
    own_requests: OwnRequests
    waited_ms: dict[str, int]  # per machine ("*": any), how long the part waited for lines
    hosts_not_read: NotRequired[dict[str, str]]  # machine -> why its logs were not read


def _scan_detail(scan: LogScan) -> ScanDetail:
    return {
        "path": scan.path,
        "format": scan.format,
        "format_detected": scan.detected,
        "bytes_read": scan.bytes_read,
        "lines_read": scan.lines_read,
        "lines_in_window": scan.lines_in_window,
        "causes": {c.value: t.count for c, t in scan.causes.items()},
        "consequences": {(c.value if c else "none"): t.count for c, t in scan.consequences.items()},
        "unclassified": scan.unclassified.count,
        "own_requests_seen": len(scan.own_seen),
        "own_upstreams": dict(scan.own_upstreams),
    }


def places(ctx: ProbeContext) -> tuple[str, ...]:
    """The machines holding the site's logs (``ANYWHERE`` for logs without a ``host``)."""
    site = ctx.target.site
    if site is None:
        return ()
    return tuple(sorted({source.host or ANYWHERE for source in site.logs}))


def _sources_at(site: Site | None, place: str) -> list[LogSource]:
    return [s for s in site.logs if (s.host or ANYWHERE) == place] if site else []


def _label(place: str, path: str) -> str:
    """How a log is named in findings: the same path on two machines is two logs."""
    return f"{place}:{path}" if place else path


async def _own_requests(ctx: ProbeContext) -> tuple[SentRequest, ...]:
    """The diagnosis's requests that reached the site, once they are back."""
    results = [await ctx.result_of(REQUESTS_FROM)]
    others = [asyncio.ensure_future(ctx.result_of(step)) for step in ALSO_FROM]
    if others:
        done, pending = await asyncio.wait(others, timeout=_ALSO_GRACE_S)
        for task in pending:
            task.cancel()
        results += [task.result() for task in done]
    return tuple(r for result in results if result for r in result.sent if r.reached)


async def _scan_sources(
    sources: list[LogSource], place: str, since: datetime, owners: LineOwners | None
) -> tuple[list[LogScan], list[Finding]]:
    scans: list[LogScan] = []
    unreadable: list[Finding] = []
    for source in sources:
        label = _label(place, source.path)
        try:
            scan = await asyncio.to_thread(scan_log, source, since, owners)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            unreadable.append(
                Finding(
                    "log_unreadable",
                    f"cannot read {label}: {reason}",
                    Status.WARN,
                    data={"log": label, "error": reason},
                )
            )
            continue
        scan.path = label
        scans.append(scan)
    return scans, unreadable


def _waits_for_requests(sources: list[LogSource], scans: list[LogScan]) -> bool:
    """Whether these logs would name the proxy's failed requests (an app server's do not)."""
    declared = {s.format for s in sources}
    return not declared <= APP_SERVER_FORMATS and any(
        scan.format not in APP_SERVER_FORMATS for scan in scans
    )


async def run_part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """Scan the site's logs that lie at ``place``: run on that machine, after the
    diagnosis's own requests have come back and the proxy has logged the ones it failed."""
    site = ctx.target.site
    sources = _sources_at(site, place)
    sent = await _own_requests(ctx)
    owners = LineOwners.of(site, ctx.settings.sites, ctx.mark, sent) if site else None
    expected = {r.mark for r in sent if r.gateway_failed}
    # An access log names every request (and, with $upstream_addr, where it went): what it
    # says of a healthy run is only complete once our requests' lines are all written.
    logged = {r.mark for r in sent}
    since = datetime.now().astimezone() - timedelta(seconds=ctx.settings.log_window_s)
    started = time.monotonic()
    give_up = started + max(0.0, min(LOG_WAIT_S, ctx.remaining() - 0.3))
    while True:
        scans, unreadable = await _scan_sources(sources, place, since, owners)
        seen = set().union(*(scan.own_seen for scan in scans))
        wanted = expected | (logged if any(scan.request_log for scan in scans) else set())
        if wanted <= seen or time.monotonic() >= give_up or not _waits_for_requests(sources, scans):
            break
        await asyncio.sleep(_POLL_S)
    return {
        "place": place,
        "scans": [scan.to_dict() for scan in scans],
        "unreadable": [finding.to_dict() for finding in unreadable],
        "sent": len(sent),
        "expected": sorted(expected),
        "waited_ms": round((time.monotonic() - started) * 1000),
    }


def _unseen_finding(expected: set[str], seen: set[str], scans: list[LogScan]) -> Finding | None:
    """Our requests the proxy failed, none of which any log shows: the logs read may not be
    the answering server's (or it logs above the error level)."""
    if not expected or expected & seen or not scans:
        return None
    paths = ", ".join(s.path for s in scans if s.format not in APP_SERVER_FORMATS)
    return Finding(
        "log_own_requests_unseen",
        f"none of our {len(expected)} failed requests appear in {paths or 'the logs'} "
        f"(waited {LOG_WAIT_S:g} s): is this the log of the server that answered, and does it "
        "log errors?",
        Status.WARN,
        data={"expected": sorted(expected)},
    )


def assemble(
    ctx: ProbeContext, parts: Mapping[str, dict[str, Any]], missing: Mapping[str, str]
) -> StepResult:
    """One result from the logs of every machine, so an app server's log on one machine can
    explain what the proxy on another saw."""
    site = ctx.target.site
    if site is None or not site.logs:
        return StepResult("logs", Status.SKIPPED, _NO_LOGS)
    window_s = ctx.settings.log_window_s
    scans = [LogScan.from_dict(d) for place in sorted(parts) for d in parts[place]["scans"]]
    unreadable = [
        Finding.from_dict(d) for place in sorted(parts) for d in parts[place]["unreadable"]
    ]
    sent = max((int(p.get("sent", 0)) for p in parts.values()), default=0)
    expected = {m for p in parts.values() for m in p.get("expected", ())}
    seen = set().union(*(scan.own_seen for scan in scans))
    not_read: list[Finding] = []
    for place, reason in sorted(missing.items()):
        paths = [s.path for s in _sources_at(site, place)]
        not_read.append(
            Finding(
                "log_host_unread",
                f"logs on {place or 'any machine'} not read ({', '.join(paths)}): {reason}",
                Status.WARN,
                data={"host": place, "logs": paths, "error": reason},
            )
        )
    findings = findings_for(scans, window_s, sent) + unreadable + not_read
    unseen = _unseen_finding(expected, seen, scans)
    if unseen is not None:
        findings.append(unseen)
    summary = summary_of(findings, scans, window_s)
    if expected or seen:
        summary += f"; {len(seen)} of our {max(sent, len(seen))} requests found in them"
    if unreadable:
        summary += f"; {len(unreadable)} log(s) unreadable"
    if missing:
        summary += f"; logs on {', '.join(sorted(p or 'any machine' for p in missing))} not read"
    details: LogsDetails = {
        "window_s": window_s,
        "logs": [_scan_detail(s) for s in scans],
        "own_requests": {"sent": sent, "expected": sorted(expected), "seen": sorted(seen)},
        "waited_ms": {place or "*": int(p.get("waited_ms", 0)) for place, p in parts.items()},
    }
    if missing:
        details["hosts_not_read"] = dict(missing)
    return StepResult.from_findings("logs", summary, findings, details=details)


def _this_machine() -> set[str]:
    name = socket.gethostname().lower()
    return {name, name.split(".")[0]}


async def run(ctx: ProbeContext) -> StepResult:
    """In one process (the CLI, no queue): read the logs that lie here. Logs a site keeps on
    another machine are read there by a worker serving ``logs@HOST``."""
    here = _this_machine()
    parts: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for place in places(ctx):
        if place == ANYWHERE or place.lower() in here:
            parts[place] = await run_part(ctx, place)
        else:
            missing[place] = (
                f"they are read on {place} by a worker serving its queue "
                f"(badgateway worker --queues {QUEUE}@{place}, with REDIS_URL set)"
            )
    return assemble(ctx, parts, missing)


def evidence(result: StepResult) -> list[str]:
    """A line per log read (its format, lines in the window, what they claim), then the
    newest sample lines of each finding."""
    lines = []
    for log in cast(LogsDetails, result.details).get("logs") or []:
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


STEP = Step(
    name="logs",
    order=40,
    title="Logs",
    run=run,
    parts=Parts(places=places, run=run_part, assemble=assemble, queue=QUEUE),
    evidence=evidence,
)
