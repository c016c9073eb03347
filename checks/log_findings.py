"""What the scans of a site's logs are evidence for: one finding per (log, cause) a server
wrote down itself, the lines that only follow from another failure, the lines not
understood, other sites' failures in a shared log, and what to do for each cause.

checks.logscan reads and tallies the logs; the logs step (checks.steps.logs) gathers the
scans from every machine and asks this module what they say.
"""

from __future__ import annotations

import re
from typing import Any

from badgateway.checks.logparse import FORMATS
from badgateway.checks.logscan import LogScan, Tally, iso
from badgateway.checks.model import Cause, Finding, Status, Weight

# An app server's own verdict explains what the proxy in front of it saw: php-fpm killing a
# request (request_terminate_timeout) is why nginx's connection was reset, and a full pool
# is why requests queued until the proxy timed out.
EXPLAINS: dict[Cause, frozenset[Cause]] = {
    Cause.APP_TIMEOUT: frozenset({Cause.UPSTREAM_CLOSED, Cause.UPSTREAM_TIMEOUT}),
    Cause.OVERLOAD: frozenset({Cause.UPSTREAM_TIMEOUT}),
}
# Logs of app servers, which name no request of the proxy's: not waited for.
APP_SERVER_FORMATS = frozenset({"php-fpm"})

# wp-content/plugins/NAME/… or wp-content/themes/NAME/…: the runbook's "deactivate it".
_WP_PART = re.compile(r"wp-content/(?P<kind>plugins|themes)/(?P<name>[^/]+)/")


def _app_file_step(source: str) -> str:
    part = _WP_PART.search(source)
    if part is None:
        return f"Fix the fatal error in {source} (see the log lines above), or roll back the "
        "deploy that changed it."
    kind = "plugin" if part["kind"] == "plugins" else "theme"
    folder = source[: part.end()].rstrip("/")
    return (
        f"Deactivate the {kind} {part['name']} (rename {folder} to switch it off), check "
        f"the site answers, then report the error in {source} to its author."
    )


def _next_step(cause: Cause, upstream: str | None, source: str | None = None) -> str | None:
    if source and cause is Cause.SERVER_ERROR:
        return _app_file_step(source)
    if not upstream:
        return None
    u = upstream
    if u.startswith("unix:"):
        where = f"the socket {u} exists and its service is running"
    elif ":" not in u and "/" not in u:  # a backend's name (Varnish, HAProxy), no address
        where = f"something listens at the address the proxy's configuration gives {u}"
    else:
        where = f"something listens on {u} (curl -v http://{u}/ from the proxy host)"
    steps = {
        Cause.UPSTREAM_REFUSED: f"Check that the app behind {u} is running and that {where}.",
        Cause.UPSTREAM_PERMISSION: f"Let the proxy's worker user open {u}: set the socket's "
        "owner/group/mode (php-fpm: listen.owner, listen.group, listen.mode) to include it.",
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


def window_text(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def _whose(tally: Tally, sent: int) -> str:
    """ "4 of our 4 requests, 12 from users": who the lines are about."""
    parts = []
    if tally.own:
        parts.append(f"{tally.own} of our {max(sent, tally.own)} requests")
    if tally.users:
        parts.append(
            f"{tally.users} from users" if tally.own or tally.probes else f"{tally.users}×"
        )
    if tally.probes:
        parts.append(f"{tally.probes} from badgateway's other probes")
    return ", ".join(parts)


def _claim_finding(scan: LogScan, cause: Cause, tally: Tally, window: str, sent: int) -> Finding:
    upstream = tally.upstream
    where = f" (upstream {upstream})" if upstream else ""
    if tally.source:
        where += f" in {tally.source}"
    last = tally.last_seen.strftime("%H:%M:%S") if tally.last_seen else "?"
    data: dict[str, Any] = {
        "count": tally.count,
        "own": tally.own,
        "users": tally.users,
        "probes": tally.probes,
        "first_seen": iso(tally.first_seen),
        "last_seen": iso(tally.last_seen),
        "samples": tally.samples,
        "log": scan.path,
        "format": scan.format,
        "upstream": upstream,
    }
    if tally.source:
        data["source"] = tally.source
    next_step = _next_step(cause, upstream, tally.source)
    if next_step:
        data["next_step"] = next_step
    return Finding(
        code=f"log_{cause.value}",
        message=f"{scan.format} log {scan.path}: {tally.what}{where}: {_whose(tally, sent)} "
        f"in the last {window}, last at {last}",
        severity=Status.FAIL,
        cause=cause,
        weight=Weight.OBSERVED,
        data=data,
    )


def _others_finding(scan: LogScan) -> Finding:
    listed = "; ".join(
        f"{label}: " + ", ".join(f"{what} ×{n}" for what, n in counts.most_common())
        for label, counts in sorted(scan.others.items())
    )
    return Finding(
        "log_other_sites",
        f"{scan.path} also shows other sites failing (not counted for this site): {listed}",
        Status.OK,
        data={"log": scan.path, "others": {k: dict(v) for k, v in scan.others.items()}},
    )


def findings_for(scans: list[LogScan], window_s: float, sent: int = 0) -> list[Finding]:
    """Findings from the scans of every log of a site; ``sent``: how many of the diagnosis's
    own requests reached the site."""
    window = window_text(window_s)
    app_claims = {
        cause: scan
        for scan in scans
        if scan.format in APP_SERVER_FORMATS
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
                    f"{scan.path}: not a log format badgateway reads ({', '.join(FORMATS)}); "
                    "set its format in the sites file",
                    Status.WARN,
                    data={"log": scan.path},
                )
            )
            continue
        for cause, tally in scan.claims().items():
            finding = _claim_finding(scan, cause, tally, window, sent)
            explainer = next(
                (
                    (app, app_scan)
                    for app, app_scan in app_claims.items()
                    if app_scan is not scan and cause in EXPLAINS.get(app, ())
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
                            "own": tally.own,
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
                        "own": scan.unclassified.own,
                        "log": scan.path,
                        "samples": scan.unclassified.samples,
                        "first_seen": iso(scan.unclassified.first_seen),
                        "last_seen": iso(scan.unclassified.last_seen),
                    },
                )
            )
        if not scan.claims() and not scan.unclassified.count:
            findings.append(
                Finding(
                    "log_quiet",
                    f"{scan.format} log {scan.path}: no gateway errors of this site in the "
                    f"last {window}",
                    Status.OK,
                    data={"log": scan.path, "lines_in_window": scan.lines_in_window},
                )
            )
        if scan.others:
            findings.append(_others_finding(scan))
    return findings


def summary_of(findings: list[Finding], scans: list[LogScan], window_s: float) -> str:
    blamed: dict[str, int] = {}
    for f in findings:
        if f.cause is not None:
            blamed[f.cause.value] = blamed.get(f.cause.value, 0) + int(f.data.get("count", 1))
    read = f"{len(scans)} log(s) read"
    if blamed:
        listed = ", ".join(f"{c} ×{n}" for c, n in sorted(blamed.items(), key=lambda i: -i[1]))
        return f"{read}; in the last {window_text(window_s)} they show {listed}"
    return f"{read}; no gateway error they can explain in the last {window_text(window_s)}"
