"""nginx error log lines: ``2024/05/01 12:00:00 [error] 12#12: *3 <message>, client: ...``,
and access log lines in the ``combined`` shape or as JSON objects (``escape=json``).

The messages are nginx's own (src/http/ngx_http_upstream.c, ngx_http_proxy_module.c,
ngx_event_connect.c); each names the upstream it was talking to in ``upstream: "..."``.

An access line names every request, failed or not, but which upstream served it only when
the ``log_format`` adds ``$upstream_addr`` as a named field after the combined part:
``upstream_addr=$upstream_addr`` (also ``upstream=``, or ``ua="$upstream_addr"`` as nginx
Amplify's format has it). Such lines are detected as nginx's; a plain ``combined`` access
log is read only when its source says ``format = "nginx"`` (it cannot be told from
Apache's). A 5xx access line is an error without a cause: the error line says why.

A JSON access line (``log_format main escape=json '{"time_local":"$time_local",
"request":"$request","status":"$status","upstream_addr":"$upstream_addr",...}'``) is read
for the same facts, under the key names such formats use (the variables' own names mostly:
``time_local``/``time_iso8601``/``msec``/``time``, ``request``/``request_uri``,
``http_host``, ``upstream_addr``/``upstream``); it is detected when it names the upstream.

One record can span several lines: what a FastCGI app wrote to stderr is quoted as it came,
so a PHP fatal error brings its stack trace along, and the ``client: ..., request: "GET
/?_bgw=...", upstream: ...`` that closes the record stands on its last line. ``records``
joins those lines, so the request (and badgateway's mark in it) stays with the error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from badgateway.checks.http_status import server_failed
from badgateway.checks.logparse import (
    LogLine,
    continued_records,
    first_match,
    local_time,
    mark_in,
    parse_stamp,
    rule,
)
from badgateway.checks.logparse.caddy import parse_time
from badgateway.checks.logparse.phpfpm import php_error, php_minor_only
from badgateway.checks.model import Cause

_LINE = re.compile(
    r"^(?P<ts>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>[a-z]+)\] \d+#\d+: "
    r"(?:\*\d+ )?(?P<msg>.*)$",
    re.DOTALL,
)
# An error line, or an access line (every access line is a record of its own).
_RECORD_START = re.compile(
    r'^(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[[a-z]+\] |\S+ \S+ \S+ \[\d{2}/\w{3}/\d{4}:|\{")'
)
# The combined format: $remote_addr - $remote_user [$time_local] "$request" $status ...
_ACCESS = re.compile(
    r"^(?P<client>\S+) \S+ \S+ \[(?P<ts>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<rest>.*)$'
)
# $upstream_addr as a named field: "127.0.0.1:9001", several tried ("a, b"), several
# across internal redirects ("a : b"), "-" when nginx answered itself; quoted or not.
_UPSTREAM_ADDR = re.compile(
    r"(?:^|\s)(?:upstream_addr|upstream|ua)[=:]\s?"
    r'(?:"(?P<q>[^"]*)"|(?P<b>[^\s,"]+(?:(?:, | : )[^\s,"]+)*))'
)
_UPSTREAM = re.compile(r'upstream: "(?P<u>[^"]*)"')
# A JSON access line's keys, in order of preference. An access line is a few hundred bytes:
# a longer line is not handed to json at all, which bounds the work a line costs.
JSON_MAX_CHARS = 16 * 1024
_JSON_TIME = ("time_local", "time_iso8601", "msec", "time", "timestamp", "@timestamp")
_JSON_REQUEST = ("request", "request_uri", "uri")
_JSON_UPSTREAM = ("upstream_addr", "upstream", "ua")
# The Host header as the client sent it, port included, as the error line's ``host:`` gives
# it. Not $host: nginx drops the port there, so a site on port 8443 would read as another.
_JSON_HOST = ("http_host",)
_JSON_CLIENT = ("remote_addr", "client")
_MSEC = re.compile(r"^\d{9,11}(?:\.\d{1,6})?$")  # $msec: "1764637323.123"
_STATUS = re.compile(r"^[1-5]\d\d$")
_TIME_CHARS = 64  # a longer "time" is not one (and is not kept in parse_stamp's cache)
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
    if _LINE.match(line) is not None:
        return True
    fields = _json_object(line)
    if fields is not None:
        # Like the combined shape: a request log is told from others by the upstream field.
        named = any(isinstance(fields.get(k), str) for k in _JSON_UPSTREAM)
        return named and _json_access(fields) is not None
    access = _ACCESS.match(line)
    return access is not None and _UPSTREAM_ADDR.search(access["rest"]) is not None


def records(lines: Iterable[str]) -> Iterator[str]:
    """One record per time-stamped line, with the quoted lines that continue an error line."""
    return continued_records(lines, _RECORD_START)


def upstream_address(text: str) -> str:
    """'http://10.0.0.5:8080/x' -> '10.0.0.5:8080'; 'fastcgi://unix:/a.sock:' -> 'unix:/a.sock'."""
    rest = text.split("://", 1)[1] if "://" in text else text
    if rest.startswith("unix:"):
        return rest.rstrip(":")
    return rest.split("/", 1)[0]


def upstream_addresses(value: str) -> list[str]:
    """The addresses an ``$upstream_addr`` value names, in the order tried: "a, b : c" ->
    [a, b, c]. An upstream group's name (nginx logs it when no server was live) and "-"
    name no address, and are left out."""
    parts = (p.strip() for p in re.split(r", | : ", value))
    return [p for p in parts if ":" in p and " " not in p]


def _access_time(text: str) -> datetime | None:
    return parse_stamp(text, "%d/%b/%Y:%H:%M:%S %z")


def _request_line(when: datetime | None, status: int, upstream: str | None) -> LogLine:
    """What an access record says, whichever its shape."""
    return LogLine(
        when=when,
        is_error=server_failed(status),
        what=f"{status} response" if server_failed(status) else None,
        # Every address this request was sent to, as nginx writes the list.
        upstream=", ".join(upstream_addresses(upstream or "")) or None,
        status=status,
    )


def _access(m: re.Match[str]) -> LogLine:
    named = _UPSTREAM_ADDR.search(m["rest"])
    upstream = (named["q"] if named["q"] is not None else named["b"]) if named else None
    # client stays None: $remote_addr has no port, the mark names our requests.
    return _request_line(_access_time(m["ts"]), int(m["status"]), upstream)


def _json_object(line: str) -> dict[str, Any] | None:
    """The JSON object on the line, if it is one (and not too long to parse)."""
    text = line.strip()
    if len(text) > JSON_MAX_CHARS or not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        return None
    return data if isinstance(data, dict) else None


def _json_text(fields: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the record gives a value ("-" is nginx's "none")."""
    for name in names:
        value = fields.get(name)
        if isinstance(value, str) and value not in ("", "-"):
            return value
    return None


def _json_status(value: object) -> int | None:
    if isinstance(value, str) and _STATUS.match(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value  # "status":$status, unquoted in the log_format
    return None


def _json_time(fields: dict[str, Any]) -> datetime | None:
    """$time_local, $time_iso8601 or $msec, under whichever key the format gives it."""
    for name in _JSON_TIME:
        value = fields.get(name)
        if isinstance(value, str):
            if len(value) > _TIME_CHARS:
                continue
            value = float(value) if _MSEC.match(value) else value
        when = parse_time(value)  # Caddy's time formats include all three
        if when is not None:
            return when
    return None


def _json_client(fields: dict[str, Any]) -> str | None:
    """ "ip:port" where the format logs $remote_port too (an ip alone names no connection)."""
    ip, port = _json_text(fields, _JSON_CLIENT), str(fields.get("remote_port"))
    if ip is None or not (port.isascii() and port.isdigit()):  # "41022" or 41022
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _json_access(fields: dict[str, Any]) -> LogLine | None:
    status, request = _json_status(fields.get("status")), _json_text(fields, _JSON_REQUEST)
    when = _json_time(fields)
    if status is None or request is None or when is None:
        return None
    host = _json_text(fields, _JSON_HOST)
    return replace(
        _request_line(when, status, _json_text(fields, _JSON_UPSTREAM)),
        host=host.lower() if host else None,
        server=_json_text(fields, ("server_name",)),
        client=_json_client(fields),
        mark=mark_in(request),
    )


def classify(line: str) -> LogLine | None:
    m = _LINE.match(line)
    if m is None:
        fields = _json_object(line)
        if fields is not None:
            return _json_access(fields)
        access = _ACCESS.match(line)
        return _access(access) if access is not None else None
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
