"""nginx error log lines: ``2024/05/01 12:00:00 [error] 12#12: *3 <message>, client: ...``.

The messages are nginx's own (src/http/ngx_http_upstream.c, ngx_http_proxy_module.c,
ngx_event_connect.c); each names the upstream it was talking to in ``upstream: "..."``.

One record can span several lines: what a FastCGI app wrote to stderr is quoted as it came,
so a PHP fatal error brings its stack trace along, and the ``client: ..., request: "GET
/?_bgw=...", upstream: ...`` that closes the record stands on its last line. ``records``
joins those lines, so the request (and badgateway's mark in it) stays with the error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace

from badgateway.checks.logparse import LogLine, continued_records, first_match, local_time, rule
from badgateway.checks.logparse.phpfpm import php_error, php_minor_only
from badgateway.checks.model import Cause

_LINE = re.compile(
    r"^(?P<ts>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>[a-z]+)\] \d+#\d+: "
    r"(?:\*\d+ )?(?P<msg>.*)$",
    re.DOTALL,
)
_RECORD_START = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[[a-z]+\] ")
_UPSTREAM = re.compile(r'upstream: "(?P<u>[^"]*)"')
# nginx ends a request's error line with ", client: 1.2.3.4, server: NAME, request: "...",
# upstream: "...", host: "..."": the server block's first server_name and the Host header.
_SERVER = re.compile(r", server: (?P<s>[^,]*), ")
_HOST = re.compile(r', host: "(?P<h>[^"]*)"')
# A resolver failure has no "upstream:" part (nginx gives up before it picks a peer); the
# name it could not resolve leads the message: "api.internal could not be resolved (3: ...".
_UNRESOLVED = re.compile(r"^(?P<u>[^\s,]+) could not be resolved \(")
_ERROR_LEVELS = frozenset({"error", "crit", "alert", "emerg"})
# A connect() failure names its errno: "connect() failed (111: Connection refused)" or,
# for a unix socket, "connect() to unix:/run/php.sock failed (2: No such file or directory)".
_CONNECT = r"connect\(\) (?:to \S+ )?failed \("

RULES = (
    rule(r"no live upstreams", Cause.OVERLOAD, "no live upstreams", secondary=True),
    # EACCES: a unix socket whose mode or owner shuts out nginx's worker user (a php-fpm
    # pool's listen.owner/group/mode), or an SELinux policy denying the connect.
    rule(
        _CONNECT + r"13: ",
        Cause.UPSTREAM_PERMISSION,
        "connect() to upstream: permission denied",
    ),
    rule(
        _CONNECT + r"11: ",
        Cause.OVERLOAD,
        "connect() to upstream: resource temporarily unavailable (listen queue full)",
    ),
    rule(_CONNECT + r"(?:111|2): ", Cause.UPSTREAM_REFUSED, "connect() to upstream refused"),
    rule(_CONNECT + r"(?:113|101|112): ", Cause.UPSTREAM_REFUSED, "no route to the upstream"),
    # No answer to the SYN: a firewall dropping it, a dead host, a full listen queue.
    rule(
        _CONNECT + r"110: |upstream timed out \([^)]*\) while connecting to upstream",
        Cause.UPSTREAM_TIMEOUT,
        "connect to upstream timed out",
    ),
    rule(r"upstream timed out", Cause.UPSTREAM_TIMEOUT, "upstream timed out"),
    rule(r"upstream sent too big header", Cause.UPSTREAM_HEADER_TOO_BIG, "too big header"),
    rule(r"upstream sent ", Cause.UPSTREAM_INVALID, "upstream sent an invalid response"),
    rule(r"upstream prematurely closed", Cause.UPSTREAM_CLOSED, "upstream closed early"),
    rule(
        r"\(\) failed \((?:104|32): [^)]*\) while [^,]*upstream",
        Cause.UPSTREAM_CLOSED,
        "connection reset by upstream",
    ),
    rule(
        r"could not be resolved|host not found in upstream",
        Cause.UPSTREAM_DNS,
        "upstream name not resolved",
    ),
    rule(
        r"SSL.*handshaking to upstream|upstream SSL certificate",
        Cause.UPSTREAM_TLS,
        "TLS handshake with upstream failed",
    ),
    rule(
        r"FastCGI sent in stderr: .*Maximum execution time",
        Cause.APP_TIMEOUT,
        "PHP max_execution_time exceeded",
    ),
    rule(r"upstream server temporarily disabled", None, "upstream marked down", secondary=True),
)


def detect(line: str) -> bool:
    return _LINE.match(line) is not None


def records(lines: Iterable[str]) -> Iterator[str]:
    """One record per time-stamped line, with the quoted lines that continue it."""
    return continued_records(lines, _RECORD_START)


def upstream_address(text: str) -> str:
    """'http://10.0.0.5:8080/x' -> '10.0.0.5:8080'; 'fastcgi://unix:/a.sock:' -> 'unix:/a.sock'."""
    rest = text.split("://", 1)[1] if "://" in text else text
    if rest.startswith("unix:"):
        return rest.rstrip(":")
    return rest.split("/", 1)[0]


def classify(line: str) -> LogLine | None:
    m = _LINE.match(line)
    if m is None:
        return None
    msg, level = m["msg"], m["level"]
    named = _UPSTREAM.search(msg) or _UNRESOLVED.match(msg)
    server = _SERVER.search(msg)
    host = _HOST.search(msg)
    base = LogLine(
        when=local_time(m["ts"], "%Y/%m/%d %H:%M:%S"),
        is_error=level in _ERROR_LEVELS,
        upstream=upstream_address(named["u"]) if named else None,
        host=host["h"].lower() or None if host else None,
        server=server["s"] or None if server else None,
    )
    if msg.startswith("FastCGI sent in stderr"):
        # What the PHP app itself wrote: a fatal error is the app failing (nginx relays
        # PHP's 500); warnings and notices are the app talking, not a failure.
        php = php_error(msg)
        if php is not None:
            return replace(base, is_error=True, cause=php.cause, what=php.what, source=php.source)
        if php_minor_only(msg):
            return replace(base, is_error=False)
    found = first_match(RULES, msg)
    if found is None:
        return base
    return replace(base, cause=found.cause, what=found.what, secondary=found.secondary)
