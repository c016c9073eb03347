"""What the probe of a site's upstreams is evidence for: the cause each outcome points at,
how strongly, and what to do (checks.upstream_probe gathers the facts).

A refused or missing socket is observed; a silent connect or a slow answer is inferred,
because the probe runs from the bot's host with its own timeout, not from the proxy with
the proxy's; a socket the bot may open is judged against the users the proxy's workers run as.
"""

from __future__ import annotations

import os
from typing import Any

from badgateway.checks.connect import ConnectState
from badgateway.checks.http_status import server_failed
from badgateway.checks.model import Cause, Finding, Status, Weight
from badgateway.checks.socket_access import SocketAccess
from badgateway.checks.upstream_probe import (
    HEADER_LIMIT_FAIL,
    HEADER_LIMIT_WARN,
    HttpAnswer,
    HttpOutcome,
    UpstreamAttempt,
)


def upstream_findings(attempt: UpstreamAttempt, timeout_s: float) -> list[Finding]:
    """What the probe of one address of an upstream is evidence for."""
    up, where = attempt.upstream, attempt.target
    data: dict[str, Any] = {"upstream": up.spec, "address": attempt.address}
    if attempt.resolve_error is not None:
        return [
            Finding(
                "upstream_dns",
                f"upstream {up.label} does not resolve: {attempt.resolve_error}",
                Status.FAIL,
                Cause.UPSTREAM_DNS,
                # The proxy may use another resolver than the bot's host.
                Weight.INFERRED,
                {**data, "next_step": f"check the DNS record of {up.host}"},
            )
        ]
    connect = attempt.connect
    if connect is None:
        return []
    if connect.state in (ConnectState.REFUSED, ConnectState.MISSING):
        what = (
            "nothing listens there" if connect.state is ConnectState.REFUSED else "no socket file"
        )
        return [
            Finding(
                "upstream_refused",
                f"upstream {where} refuses connections ({what})",
                Status.FAIL,
                Cause.UPSTREAM_REFUSED,
                Weight.OBSERVED,
                {**data, "next_step": f"start the app at {up.label} (nothing listens there)"},
            )
        ]
    if connect.state in (ConnectState.TIMEOUT, ConnectState.UNREACHABLE):
        why = (
            f"got no answer within {timeout_s:g} s"
            if connect.state is ConnectState.TIMEOUT
            else f"is unreachable ({connect.error})"
        )
        return [
            Finding(
                f"upstream_connect_{connect.state}",
                f"connecting to upstream {where} {why}: a firewall between the proxy and "
                "the app drops the traffic, or the app's host is down",
                Status.FAIL,
                Cause.UPSTREAM_TIMEOUT,
                # Seen from the bot's host, which need not share the proxy's network path.
                Weight.INFERRED,
                {
                    **data,
                    "next_step": f"check the firewall and routes from the proxy to {up.label}",
                },
            )
        ]
    if connect.state is not ConnectState.OPEN:
        return [
            Finding(
                "upstream_unprobed",
                f"could not probe upstream {where}: {connect.error}",
                Status.WARN,
                data=data,
            )
        ]
    if attempt.access is not None:
        return [_socket_finding(attempt.access, where, {**data, "connect_ms": connect.ms})]
    if attempt.http is None:
        return [
            Finding(
                "upstream_open",
                f"upstream {where} accepts connections ({connect.ms} ms)",
                data={**data, "connect_ms": connect.ms},
            )
        ]
    return [_http_finding(attempt, attempt.http, where, data, timeout_s)]


def _socket_finding(access: SocketAccess, where: str, data: dict[str, Any]) -> Finding:
    """A socket that let this bot in: may the proxy's workers open it too?"""
    data = {**data, "access": access.to_dict()}
    me = "root" if os.geteuid() == 0 else "this bot's user"
    opened = f"upstream {where} accepts connections from {me}"
    if access.denied and not access.allowed:
        return Finding(
            "upstream_permission",
            f"{opened}, but it is {access.shown}: {', '.join(access.denied)} may not "
            "open it (their connect fails with 13: Permission denied)",
            Status.FAIL,
            Cause.UPSTREAM_PERMISSION,
            # Read off the file's mode and the workers' users, not seen in a connect.
            Weight.INFERRED,
            {
                **data,
                "next_step": f"let the proxy's user open {where}: set listen.owner/"
                f"listen.group to it (or its group) and listen.mode = 0660 in the pool",
            },
        )
    if access.denied:
        return Finding(
            "upstream_permission_partial",
            f"{opened}; it is {access.shown}: {', '.join(access.allowed)} may open it, "
            f"{', '.join(access.denied)} may not",
            Status.WARN,
            data=data,
        )
    others_may_write = access.mode.endswith(("2", "3", "6", "7"))
    if not access.allowed and os.geteuid() == 0 and not others_may_write:
        return Finding(
            "upstream_open_as_root",
            f"{opened}, as any socket does; it is {access.shown}, so whether the proxy's "
            "user may open it depends on that user (no web-server process seen here)",
            Status.WARN,
            data=data,
        )
    who = f"; {', '.join(access.allowed)} may open it" if access.allowed else ""
    return Finding("upstream_open", f"{opened} ({data['connect_ms']} ms){who}", data=data)


def _http_finding(
    attempt: UpstreamAttempt, answer: HttpAnswer, where: str, data: dict[str, Any], timeout_s: float
) -> Finding:
    data = {**data, "http": answer.to_dict()}
    label = attempt.upstream.label
    if answer.outcome is HttpOutcome.RESPONSE:
        status = answer.status or 0
        if answer.head_bytes > HEADER_LIMIT_WARN:
            return Finding(
                "upstream_header_large",
                f"upstream {where} answers HTTP {status} with {answer.head_bytes} bytes of "
                f"headers: more than nginx's default proxy_buffer_size (4 KiB) holds",
                Status.WARN,
                Cause.UPSTREAM_HEADER_TOO_BIG,
                Weight.HINT,
                data,
            )
        return Finding(
            "upstream_http_error" if server_failed(status) else "upstream_http_ok",
            f"upstream {where} answers GET / with HTTP {status} in {answer.ms} ms",
            Status.WARN if server_failed(status) else Status.OK,
            data=data,
        )
    cases: dict[HttpOutcome, tuple[Cause, str]] = {
        HttpOutcome.TIMEOUT: (
            Cause.UPSTREAM_TIMEOUT,
            f"upstream {where} accepts connections but sends no response to GET / "
            f"within {timeout_s:g} s",
        ),
        HttpOutcome.CLOSED: (
            Cause.UPSTREAM_CLOSED,
            f"upstream {where} closes the connection without a complete response "
            f"to GET /{': ' + answer.detail if answer.detail else ''}",
        ),
        HttpOutcome.INVALID: (
            Cause.UPSTREAM_INVALID,
            f"upstream {where} does not answer in HTTP: {answer.detail}",
        ),
        HttpOutcome.TOO_BIG: (
            Cause.UPSTREAM_HEADER_TOO_BIG,
            f"upstream {where} sends response headers over {answer.head_bytes} bytes, "
            f"more than any proxy's default buffer ({HEADER_LIMIT_FAIL // 1024} KiB)",
        ),
        HttpOutcome.TLS_FAILED: (
            Cause.UPSTREAM_TLS,
            f"the TLS handshake with upstream {where} fails: {answer.detail}",
        ),
    }
    cause, message = cases[answer.outcome]
    next_steps = {
        HttpOutcome.TIMEOUT: f"check why the app at {label} hangs (stuck workers, locks, slow I/O)",
        HttpOutcome.CLOSED: f"check the logs of the app at {label} for crashes or OOM kills",
        HttpOutcome.INVALID: f"check that {label} is the app's HTTP port (not TLS, FastCGI, a DB)",
        HttpOutcome.TOO_BIG: f"shrink the headers (cookies) the app at {label} sends",
        HttpOutcome.TLS_FAILED: f"check that {label} speaks TLS, and its certificate",
    }
    return Finding(
        f"upstream_{answer.outcome}",
        message,
        Status.FAIL,
        cause,
        # The probe waits its own timeout, not the proxy's (nginx: 60 s by default), so a
        # slow answer is weaker evidence than the proxy's log saying it timed out.
        Weight.INFERRED if answer.outcome is HttpOutcome.TIMEOUT else Weight.OBSERVED,
        {**data, "next_step": next_steps[answer.outcome]},
    )
