"""Caddy 2 logs: one JSON object per line (Caddy's default encoder), or the same entry in
its console encoder's tab-separated form, possibly behind a syslog/journal prefix.

``{"level":"error","ts":1714564800.12,"logger":"http.log.error","msg":"dial tcp
10.0.0.5:8080: connect: connection refused","request":{"remote_ip":"...","remote_port":
"...","host":"...","uri":"/?_bgw=..."},"status":502,...}``

A proxied request that fails is logged once, by the logger ``http.log.error`` (with a
site ``log`` directive ``http.log.error.log0``...), at ERROR for a 5xx, with the Go error
as the message: Caddy's reverse_proxy passes on the error of Go's net/http transport and
dialer verbatim (caddyhttp/server.go, reverseproxy.statusError). So the rules below are
Go's messages (net/http/transport.go, net/http/response.go, net, crypto/tls, crypto/x509)
as Caddy 2.6 writes them. The site's access log (``http.log.access``: "handled request"
with the status) names no reason; its 5xx lines are errors without a cause. The
reverse_proxy handler's own lines name the dialled upstream: "upstream roundtrip" (DEBUG,
one per attempt, repeating what the error line says), and the active health checker's
"HTTP request failed" / "active health check failed", which are first-hand evidence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from badgateway.checks.http_status import server_failed
from badgateway.checks.logparse import LogLine, Rule, first_match, parse_stamp, rule
from badgateway.checks.model import Cause

# Caddy's loggers are named after its modules: http.*, tls.*, admin.*, pki.*, events...
# Requiring one keeps other zap-based programs' JSON logs (same keys) from being claimed.
_CADDY_LOGGER = re.compile(r"^(?:http|tls|admin|pki|caddy|events|layer4|security)(?:\.|$)")
# Loggers whose error texts are about the upstream: the request's error, reverse_proxy
# (and its health checkers), its transports (fastcgi). Other loggers' network errors (the
# ACME client failing to resolve its CA, under "tls.obtain") say nothing about the app.
_PROXY_LOGGER = re.compile(
    r"^(?:http\.log\.error|http\.handlers\.reverse_proxy|http\.reverse_proxy)"
)
_ACCESS_LOGGER = re.compile(r"^http\.log\.access(?:\.|$)")
_ERROR_LEVELS = frozenset({"error", "dpanic", "panic", "fatal"})
# A longer line is not handed to json (bounded work per line); an access entry carries the
# request's headers, cookies included, so a few KiB is usual.
JSON_MAX_CHARS = 64 * 1024

# "Dec  1 14:54:22 host caddy[123]: {...}": journald/rsyslog in front of the JSON.
_SYSLOG_PREFIX = re.compile(r"^[^{\t]*?\bcaddy\[\d+\]: ")
# Console encoder: "2024/05/01 12:00:00.123\tERROR\thttp.log.error\tmsg\t{fields}", with
# the level in ANSI colours even when written to a file.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONSOLE_TIME = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?$")
_LOGGER_NAME = re.compile(r"^[a-z0-9_]+(?:\.[A-Za-z0-9_-]+)*$")
_LEVELS = frozenset({"debug", "info", "warn", "error", "dpanic", "panic", "fatal"})

# Go's dialer and resolver name what they dialled: "dial tcp 10.0.0.5:8080: ...",
# "dial unix /run/app.sock: ...", "dial tcp: lookup app.internal on 10.0.0.2:53: ...";
# a failed read names both ends: "read tcp 10.0.0.1:41022->10.0.0.5:8080: read: ...".
_LOOKUP = re.compile(r"\blookup (?P<u>[^\s:]+)(?: on \S+)?: ")
_DIAL = re.compile(r"\bdial (?P<net>tcp[46]?|unix) (?P<u>\S+?): ")
_PEER = re.compile(r"\b(?:read|write) (?P<net>tcp[46]?|unix) \S*?->(?P<u>\S+?): ")

_DIAL_ERROR = r"\bdial \S+ \S+: (?:connect: )?"
RULES: tuple[Rule, ...] = (
    # First: a failed lookup carries its own network error ("... on 10.0.0.2:53: dial tcp
    # 10.0.0.2:53: connect: connection refused" is the resolver refusing, not the app).
    rule(r"\blookup \S+(?: on \S+)?: ", Cause.UPSTREAM_DNS, "upstream name not resolved"),
    rule(r"no upstreams available", Cause.OVERLOAD, "no upstreams available", secondary=True),
    rule(
        r"\bdial unix \S+: connect: resource temporarily unavailable",
        Cause.OVERLOAD,
        "connect to upstream socket: resource temporarily unavailable (listen queue full)",
    ),
    rule(
        _DIAL_ERROR + r"permission denied",
        Cause.UPSTREAM_PERMISSION,
        "permission denied connecting to the upstream",
    ),
    rule(
        _DIAL_ERROR + r"(?:connection refused|no such file or directory)",
        Cause.UPSTREAM_REFUSED,
        "connect to upstream refused",
    ),
    rule(
        _DIAL_ERROR + r"(?:no route to host|network is unreachable|host is down)",
        Cause.UPSTREAM_REFUSED,
        "no route to the upstream",
    ),
    rule(_DIAL_ERROR + r"i/o timeout", Cause.UPSTREAM_TIMEOUT, "connect to upstream timed out"),
    rule(
        r"timeout awaiting response headers|context deadline exceeded|i/o timeout"
        r"|Client\.Timeout exceeded",
        Cause.UPSTREAM_TIMEOUT,
        "upstream timed out",
    ),
    rule(
        r"server response headers exceeded \d+ bytes",
        Cause.UPSTREAM_HEADER_TOO_BIG,
        "response headers too big",
    ),
    rule(
        r"\b(?:tls|x509): |server gave HTTP response to HTTPS client",
        Cause.UPSTREAM_TLS,
        "TLS handshake with upstream failed",
    ),
    rule(
        r"malformed HTTP |malformed MIME header|Content-Length|transfer encoding",
        Cause.UPSTREAM_INVALID,
        "upstream sent an invalid response",
    ),
    rule(
        r"unexpected EOF|(?:^|: )EOF$|connection reset by peer|broken pipe"
        r"|server closed idle connection",
        Cause.UPSTREAM_CLOSED,
        "upstream closed the connection early",
    ),
)


@dataclass(frozen=True)
class Entry:
    """One Caddy log entry, whichever encoder wrote it."""

    level: str
    ts: object  # a float/int epoch or a formatted string, as the encoder wrote it
    logger: str | None
    msg: str
    fields: dict[str, Any]


def _json_entry(text: str) -> Entry | None:
    if len(text) > JSON_MAX_CHARS:  # a log line, not a document: bounded work per line
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested too deep
        return None
    if not isinstance(data, dict):
        return None
    level, ts, msg, logger = data.get("level"), data.get("ts"), data.get("msg"), data.get("logger")
    if not isinstance(level, str) or not isinstance(msg, str):
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float | str):
        return None
    if logger is not None and not isinstance(logger, str):
        return None
    return Entry(level.lower(), ts, logger, msg, data)


def _console_entry(text: str) -> Entry | None:
    parts = _ANSI.sub("", text).split("\t")
    if len(parts) < 3 or not _CONSOLE_TIME.match(parts[0]) or parts[1].lower() not in _LEVELS:
        return None
    rest = parts[2:]
    fields: dict[str, Any] = {}
    if len(rest) > 1 and rest[-1].startswith("{"):
        try:
            loaded = json.loads(rest[-1])
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            fields = loaded
            rest = rest[:-1]
    # The logger column is absent for Caddy's root logger ("serving initial configuration").
    logger = rest[0] if len(rest) > 1 and _LOGGER_NAME.match(rest[0]) else None
    msg = "\t".join(rest[1:] if logger is not None else rest)
    return Entry(parts[1].lower(), parts[0], logger, msg, fields)


def entry(line: str) -> Entry | None:
    """The Caddy log entry on ``line``; None when the line is not one."""
    text = line.strip()
    prefix = _SYSLOG_PREFIX.match(text)
    if prefix is not None:
        text = text[prefix.end() :]
    if text.startswith("{"):
        return _json_entry(text)
    return _console_entry(text)


def detect(line: str) -> bool:
    found = entry(line)
    logger = found.logger if found is not None else None
    return logger is not None and _CADDY_LOGGER.match(logger) is not None


def _epoch_seconds(value: float) -> float:
    """unix_seconds_float is ~1.7e9 now, unix_milli_float ~1.7e12, unix_nano ~1.7e18."""
    for limit, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
        if value > limit:
            return value / scale
    return value


def parse_time(ts: object) -> datetime | None:
    """Caddy's ``time_format``s: epoch seconds (default), milli- or nanoseconds, ISO 8601 /
    RFC 3339, "wall" (2006/01/02 15:04:05[.000]) and common_log. Caddy writes the formatted
    ones in UTC unless ``time_local`` is set, so a time without a zone is taken as UTC."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        seconds = _epoch_seconds(float(ts))
        try:
            return datetime.fromtimestamp(seconds, UTC).astimezone()
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(ts, str):
        return None
    text = ts.strip()
    when: datetime | None = None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        wall = re.match(r"^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d+))?$", text)
        if wall is not None:
            when = parse_stamp(wall[1], "%Y/%m/%d %H:%M:%S")
            if when is not None:
                when = when.replace(microsecond=int((wall[2] or "0")[:6].ljust(6, "0")))
        else:
            when = parse_stamp(text, "%d/%b/%Y:%H:%M:%S %z")
        if when is None:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _error_text(found: Entry) -> str | None:
    """The Go error that says why, on the lines that speak about the upstream."""
    logger = found.logger or ""
    if not _PROXY_LOGGER.match(logger):
        return None
    fields = found.fields
    if logger.startswith("http.log.error"):
        # When the site's handle_errors route fails too, Caddy logs "error handling handler
        # error" with the original error's message under "first_error".
        first = fields.get("first_error")
        if isinstance(first, dict) and _text(first.get("msg")):
            return str(first["msg"])
        return found.msg
    error = _text(fields.get("error"))
    if error is None or found.msg == "upstream roundtrip":
        # The DEBUG "upstream roundtrip" repeats, per attempt, what the request's error line
        # says: counting it too would count each failure twice.
        return None
    if found.msg == "aborting with incomplete response" and error.startswith("write "):
        return None  # the client went away while the body streamed to it
    return error


def _address(text: str) -> str:
    """Caddy's network addresses ("tcp/10.0.0.5:80", "unix//run/app.sock") in the form the
    other formats use ("10.0.0.5:80", "unix:/run/app.sock")."""
    network, sep, rest = text.partition("/")
    if sep and network in ("tcp", "tcp4", "tcp6", "udp", "unix"):
        return f"unix:{rest}" if network == "unix" else rest
    return text


def _upstream(found: Entry, error: str | None) -> str | None:
    fields = found.fields
    names = ["upstream", "dial"]
    if "health_checker" in (found.logger or ""):
        names += ["host", "address"]  # there they name the upstream, not the client's Host
    for name in names:
        value = _text(fields.get(name))
        if value is not None:
            return _address(value)
    if error is None:
        return None
    if lookup := _LOOKUP.search(error):
        return lookup["u"]
    for pattern in (_DIAL, _PEER):
        if m := pattern.search(error):
            return f"unix:{m['u']}" if m["net"] == "unix" else m["u"]
    return None


def _client(request: dict[str, Any]) -> str | None:
    ip, port = _text(request.get("remote_ip")), request.get("remote_port")
    if ip is not None:
        if port in (None, ""):
            return None  # the format's "ip:port" only; an ip alone names no connection
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return _text(request.get("remote_addr"))  # Caddy < 2.5


def classify(line: str) -> LogLine | None:
    found = entry(line)
    if found is None:
        return None
    fields = found.fields
    request = fields.get("request")
    request = request if isinstance(request, dict) else {}
    status = fields.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    server_error = status is not None and server_failed(status)
    error = _error_text(found)
    matched = first_match(RULES, error) if error is not None else None
    if _ACCESS_LOGGER.match(found.logger or ""):
        # Access lines are at ERROR for every 4xx too; only a 5xx is a gateway failure.
        is_error = server_error
        what = f"{status} response" if server_error else None
    else:
        is_error = found.level in _ERROR_LEVELS or server_error
        what = matched.what if matched else None
    host = _text(request.get("host"))
    return LogLine(
        when=parse_time(found.ts),
        is_error=is_error,
        cause=matched.cause if matched else None,
        what=what,
        upstream=_upstream(found, error),
        secondary=matched.secondary if matched else False,
        host=host.lower() if host else None,
        client=_client(request),
    )
