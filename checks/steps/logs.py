"""Step "logs": read the site's proxy and app-server logs and say what they blame.

The proxy knows why it answered 502: it wrote it in its error log ("connect() failed (111:
Connection refused) while connecting to upstream"). This step reads the recent tail of
each configured log, keeps the lines inside the settings' time window, and turns the lines
it understands into one finding per (log, cause), weighted OBSERVED because the server said
so itself. Lines it does not understand are counted, not claimed. Every quoted line is
redacted first.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from checks.context import ProbeContext
from checks.logparse import FORMATS, LogLine, classifier, detect_format
from checks.model import Cause, Finding, Status, StepResult, Weight
from checks.redact import redact
from checks.settings import LogSource, Site
from checks.steps import ANYWHERE, Parts, Step

TAIL_BYTES = 2 * 1024 * 1024  # only the recent end of a log is read
MAX_SAMPLES = 3
SAMPLE_CHARS = 500

# An app server's own verdict explains what the proxy in front of it saw: php-fpm killing a
# request (request_terminate_timeout) is why nginx's connection was reset, and a full pool
# is why requests queued until the proxy timed out.
_EXPLAINS: dict[Cause, frozenset[Cause]] = {
    Cause.APP_TIMEOUT: frozenset({Cause.UPSTREAM_CLOSED, Cause.UPSTREAM_TIMEOUT}),
    Cause.OVERLOAD: frozenset({Cause.UPSTREAM_TIMEOUT}),
}
_APP_SERVER_FORMATS = frozenset({"php-fpm"})

_NO_LOGS = (
    "no logs configured for this site; add the proxy's error log to the site in the sites "
    'file, e.g. logs = [{ path = "/var/log/nginx/error.log" }] (format is detected, or set '
    'format = "nginx" | "apache" | "haproxy" | "php-fpm")'
)


def _next_step(cause: Cause, upstream: str | None) -> str | None:
    if not upstream:
        return None
    u = upstream
    where = (
        f"the socket {u} exists and its service is running"
        if u.startswith("unix:")
        else f"something listens on {u} (curl -v http://{u}/ from the proxy host)"
    )
    steps = {
        Cause.UPSTREAM_REFUSED: f"Check that the app behind {u} is running and that {where}.",
        Cause.UPSTREAM_TIMEOUT: f"Find out why {u} answers slowly (slow requests, busy "
        "workers, load) and compare with the proxy's timeouts.",
        Cause.UPSTREAM_CLOSED: f"Check {u}'s own logs and the kernel log (OOM killer, "
        "crashes) at the times above.",
        Cause.UPSTREAM_INVALID: f"Request {u} directly (curl -v) and check it speaks plain "
        "HTTP on that port.",
        Cause.UPSTREAM_HEADER_TOO_BIG: f"Look at the headers {u} sends (curl -sI); shrink "
        "them (cookies) or raise the proxy's header buffer.",
        Cause.UPSTREAM_TLS: f"Check the certificate and TLS settings of {u} "
        f"(openssl s_client -connect {u}).",
        Cause.UPSTREAM_DNS: f"Check that the proxy's resolver resolves the upstream name in {u}.",
        Cause.OVERLOAD: f"Check the capacity of {u} (busy workers, max_children/maxconn) "
        "and what is loading it.",
        Cause.APP_TIMEOUT: f"Find the slow request in {u}'s slow log and fix it, or align its "
        "time limit with the proxy's timeout.",
    }
    return steps.get(cause)


@dataclass
class Tally:
    """Lines of one log that point at one cause (or at none: the unclassified errors)."""

    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    samples: list[str] = field(default_factory=list)
    whats: Counter[str] = field(default_factory=Counter)
    upstreams: Counter[str] = field(default_factory=Counter)

    def add(self, line: str, parsed: LogLine, when: datetime) -> None:
        self.count += 1
        self.first_seen = self.first_seen or when
        self.last_seen = when
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(redact(line.strip())[:SAMPLE_CHARS])
        if parsed.what:
            self.whats[parsed.what] += 1
        if parsed.upstream:
            self.upstreams[parsed.upstream] += 1

    @property
    def upstream(self) -> str | None:
        return redact(self.upstreams.most_common(1)[0][0]) if self.upstreams else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "samples": self.samples,
            "whats": dict(self.whats),
            "upstreams": dict(self.upstreams),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tally:
        return cls(
            count=int(d["count"]),
            first_seen=_when(d.get("first_seen")),
            last_seen=_when(d.get("last_seen")),
            samples=list(d.get("samples", [])),
            whats=Counter(d.get("whats", {})),
            upstreams=Counter(d.get("upstreams", {})),
        )

    @property
    def what(self) -> str:
        return self.whats.most_common(1)[0][0] if self.whats else "error lines"


@dataclass
class LogScan:
    """What one log's recent lines say."""

    path: str
    format: str | None
    detected: bool
    empty: bool = False  # nothing logged at all
    bytes_read: int = 0
    lines_read: int = 0
    lines_in_window: int = 0
    causes: dict[Cause, Tally] = field(default_factory=dict)  # first-hand failures
    consequences: dict[Cause | None, Tally] = field(default_factory=dict)
    unclassified: Tally = field(default_factory=Tally)

    def to_dict(self) -> dict[str, Any]:
        """JSON, so that a scan made on the machine holding the log can travel."""
        return {
            "path": self.path,
            "format": self.format,
            "detected": self.detected,
            "empty": self.empty,
            "bytes_read": self.bytes_read,
            "lines_read": self.lines_read,
            "lines_in_window": self.lines_in_window,
            "causes": {c.value: t.to_dict() for c, t in self.causes.items()},
            "consequences": {
                (c.value if c else ""): t.to_dict() for c, t in self.consequences.items()
            },
            "unclassified": self.unclassified.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogScan:
        return cls(
            path=str(d["path"]),
            format=d.get("format"),
            detected=bool(d.get("detected")),
            empty=bool(d.get("empty")),
            bytes_read=int(d.get("bytes_read", 0)),
            lines_read=int(d.get("lines_read", 0)),
            lines_in_window=int(d.get("lines_in_window", 0)),
            causes={Cause(c): Tally.from_dict(t) for c, t in d.get("causes", {}).items()},
            consequences={
                (Cause(c) if c else None): Tally.from_dict(t)
                for c, t in d.get("consequences", {}).items()
            },
            unclassified=Tally.from_dict(d["unclassified"]),
        )

    def claims(self) -> dict[Cause, Tally]:
        """The causes this log is evidence for. Consequences ("no live upstreams") claim
        their cause only when the log shows no first-hand failure that explains them."""
        if self.causes:
            return dict(self.causes)
        return {c: t for c, t in self.consequences.items() if c is not None}


def read_tail(path: str, limit: int = TAIL_BYTES) -> tuple[list[str], int]:
    """The complete lines in the last ``limit`` bytes of ``path``, and the bytes read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - limit)
        f.seek(start)
        data = f.read(limit)
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the seek
    return lines, len(data)


def scan_lines(
    lines: list[str], fmt: str, since: datetime, path: str = "", detected: bool = False
) -> LogScan:
    """Classify the lines written at or after ``since``."""
    scan = LogScan(path=path, format=fmt, detected=detected)
    classify = classifier(fmt)
    last_when: datetime | None = None
    for line in lines:
        parsed = classify(line)
        if parsed is None:
            continue
        # A line without a time stamp (a continuation) belongs with the line before it.
        when = parsed.when or last_when
        last_when = when
        if when is None or when < since:
            continue
        scan.lines_in_window += 1
        if parsed.secondary:
            scan.consequences.setdefault(parsed.cause, Tally()).add(line, parsed, when)
        elif parsed.cause is not None:
            scan.causes.setdefault(parsed.cause, Tally()).add(line, parsed, when)
        elif parsed.is_error:
            scan.unclassified.add(line, parsed, when)
    return scan


def scan_log(source: LogSource, since: datetime) -> LogScan:
    lines, size = read_tail(source.path)
    if not any(line.strip() for line in lines):
        # Nothing logged at all: quiet, whatever the format would have been.
        return LogScan(path=source.path, format=source.format, detected=False, empty=True)
    fmt = source.format or detect_format(lines)
    if fmt is None or fmt not in FORMATS:
        return LogScan(path=source.path, format=None, detected=True, bytes_read=size)
    scan = scan_lines(lines, fmt, since, source.path, detected=source.format is None)
    scan.bytes_read, scan.lines_read = size, len(lines)
    return scan


def _iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _window_text(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def _claim_finding(scan: LogScan, cause: Cause, tally: Tally, window: str) -> Finding:
    upstream = tally.upstream
    where = f" (upstream {upstream})" if upstream else ""
    last = tally.last_seen.strftime("%H:%M:%S") if tally.last_seen else "?"
    data: dict[str, Any] = {
        "count": tally.count,
        "first_seen": _iso(tally.first_seen),
        "last_seen": _iso(tally.last_seen),
        "samples": tally.samples,
        "log": scan.path,
        "format": scan.format,
        "upstream": upstream,
    }
    next_step = _next_step(cause, upstream)
    if next_step:
        data["next_step"] = next_step
    return Finding(
        code=f"log_{cause.value}",
        message=f"{scan.format} log {scan.path}: {tally.count}× {tally.what}{where} in the "
        f"last {window}, last at {last}",
        severity=Status.FAIL,
        cause=cause,
        weight=Weight.OBSERVED,
        data=data,
    )


def findings_for(scans: list[LogScan], window_s: float) -> list[Finding]:
    window = _window_text(window_s)
    app_claims = {
        cause: scan
        for scan in scans
        if scan.format in _APP_SERVER_FORMATS
        for cause in scan.claims()
    }
    findings: list[Finding] = []
    for scan in scans:
        if scan.empty:
            findings.append(
                Finding(
                    "log_quiet",
                    f"{scan.path} is empty: nothing logged",
                    Status.OK,
                    data={"log": scan.path, "lines_in_window": 0},
                )
            )
            continue
        if scan.format is None:
            findings.append(
                Finding(
                    "log_format_unknown",
                    f"{scan.path}: not an nginx, Apache, HAProxy or php-fpm error log; set "
                    "its format in the sites file",
                    Status.WARN,
                    data={"log": scan.path},
                )
            )
            continue
        for cause, tally in scan.claims().items():
            finding = _claim_finding(scan, cause, tally, window)
            explainer = next(
                (
                    (app, app_scan)
                    for app, app_scan in app_claims.items()
                    if app_scan is not scan and cause in _EXPLAINS.get(app, ())
                ),
                None,
            )
            if explainer is not None:
                # A symptom of what the app server reports: shown, but not evidence of its own.
                app, app_scan = explainer
                finding = Finding(
                    finding.code,
                    f"{finding.message}; explained by {app_scan.path}: "
                    f"{app_scan.claims()[app].what}",
                    Status.WARN,
                    None,
                    Weight.OBSERVED,
                    {**finding.data, "explained_by": app.value, "cause_seen": cause.value},
                )
            findings.append(finding)
        if scan.causes:
            for cause_or_none, tally in scan.consequences.items():
                findings.append(
                    Finding(
                        "log_consequence",
                        f"{scan.format} log {scan.path}: {tally.count}× {tally.what} "
                        "(follows from the failures above)",
                        Status.OK,
                        data={
                            "count": tally.count,
                            "log": scan.path,
                            "samples": tally.samples,
                            "cause_seen": cause_or_none.value if cause_or_none else None,
                        },
                    )
                )
        if scan.unclassified.count:
            findings.append(
                Finding(
                    "log_unclassified_errors",
                    f"{scan.format} log {scan.path}: {scan.unclassified.count} other error "
                    f"line(s) in the last {window} not recognised",
                    Status.WARN,
                    data={
                        "count": scan.unclassified.count,
                        "log": scan.path,
                        "samples": scan.unclassified.samples,
                        "first_seen": _iso(scan.unclassified.first_seen),
                        "last_seen": _iso(scan.unclassified.last_seen),
                    },
                )
            )
        if not scan.claims() and not scan.unclassified.count:
            findings.append(
                Finding(
                    "log_quiet",
                    f"{scan.format} log {scan.path}: no gateway errors in the last {window}",
                    Status.OK,
                    data={"log": scan.path, "lines_in_window": scan.lines_in_window},
                )
            )
    return findings


def _summary(findings: list[Finding], scans: list[LogScan], window_s: float) -> str:
    blamed: Counter[str] = Counter()
    for f in findings:
        if f.cause is not None:
            blamed[f.cause.value] += int(f.data.get("count", 1))
    read = f"{len(scans)} log(s) read"
    if blamed:
        listed = ", ".join(f"{cause} ×{n}" for cause, n in blamed.most_common())
        return f"{read}; in the last {_window_text(window_s)} they show {listed}"
    return f"{read}; no gateway error they can explain in the last {_window_text(window_s)}"


def _scan_detail(scan: LogScan) -> dict[str, Any]:
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


async def run_part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """Scan the site's logs that lie at ``place``: run on that machine."""
    sources = _sources_at(ctx.target.site, place)
    since = datetime.now().astimezone() - timedelta(seconds=ctx.settings.log_window_s)
    scans: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    for source in sources:
        label = _label(place, source.path)
        try:
            scan = await asyncio.to_thread(scan_log, source, since)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            finding = Finding(
                "log_unreadable",
                f"cannot read {label}: {reason}",
                Status.WARN,
                data={"log": label, "error": reason},
            )
            unreadable.append(finding.to_dict())
            continue
        scan.path = label
        scans.append(scan.to_dict())
    return {"place": place, "scans": scans, "unreadable": unreadable}


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
    findings = findings_for(scans, window_s) + unreadable + not_read
    summary = _summary(findings, scans, window_s)
    if unreadable:
        summary += f"; {len(unreadable)} log(s) unreadable"
    if missing:
        summary += f"; logs on {', '.join(sorted(p or 'any machine' for p in missing))} not read"
    details: dict[str, Any] = {"window_s": window_s, "logs": [_scan_detail(s) for s in scans]}
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
                f"(badgateway worker --queues logs@{place}, with REDIS_URL set)"
            )
    return assemble(ctx, parts, missing)


STEP = Step(
    name="logs",
    order=40,
    title="Logs",
    run=run,
    parts=Parts(places=places, run=run_part, assemble=assemble),
)
