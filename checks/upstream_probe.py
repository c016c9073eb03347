"""The direct probe of a site's upstreams: facts about each, judged by checks.upstream_findings.

Upstreams come from the sites file, written by an administrator, so they are trusted and
not vetted by the guard: the point is to reach the private app servers behind the proxy
and prove, without any log, that "the proxy cannot reach its app" (refused, silent, or
answering something that is not HTTP).

How an upstream is written decides how deep it is probed:

- ``http://host:port`` / ``https://host:port``: connect, (TLS handshake,) ``GET /``, and
  judge the response head the way a proxy would.
- ``host:port`` and ``unix:/path``: connect only. Such an entry may well be a FastCGI,
  uwsgi or gRPC backend (php-fpm's 9000, a unix socket); an HTTP request to those gets
  a non-HTTP answer that would be mistaken for a broken app. Guessing from the port
  number is how false verdicts are made, so a bare address is never spoken HTTP to;
  writing the scheme opts in.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

from badgateway.checks.clock import ms_since
from badgateway.checks.connect import (
    ConnectDict,
    ConnectResult,
    ConnectState,
    connect_tcp,
    connect_unix,
    failed_connect,
)
from badgateway.checks.resolve import system_addresses
from badgateway.checks.socket_access import SocketAccess, SocketAccessDict, socket_access
from badgateway.checks.upstream_spec import Upstream, UpstreamKind, parse_upstream

# Response heads larger than this fail behind any proxy left at its defaults: nginx's
# proxy_buffer_size is one memory page (4 KiB on x86-64, 8 KiB on some platforms),
# Apache caps one header field at 8 KiB, HAProxy's whole buffer is 16 KiB. Above it the
# probe blames the headers outright.
HEADER_LIMIT_FAIL = 16 * 1024
# Above nginx's default 4 KiB the head fails unless proxy_buffer_size was raised, which
# the probe cannot see: a warning that names the cause as a hint.
HEADER_LIMIT_WARN = 4 * 1024
# How much of a response head is read before giving up on finding its end.
_READ_CAP = 64 * 1024
_MAX_ADDRESSES = 4
# An HTTP header name (RFC 9110 token); nginx rejects a head with anything else in a name,
# or a NUL byte anywhere ("upstream sent invalid header").
_TOKEN = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
)  # per upstream name; a proxy tries them in turn


class HttpOutcome(StrEnum):
    """How an upstream's answer to ``GET /`` came out."""

    RESPONSE = "response"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    INVALID = "invalid"
    TOO_BIG = "too_big"
    TLS_FAILED = "tls_failed"


class HttpAnswerDict(TypedDict):
    """An ``HttpAnswer`` as JSON."""

    outcome: str
    status: int | None
    head_bytes: int
    ms: int
    detail: str


@dataclass
class HttpAnswer:
    """How the upstream answered ``GET /``."""

    outcome: HttpOutcome
    status: int | None = None
    head_bytes: int = 0
    ms: int = 0
    detail: str = ""

    def to_dict(self) -> HttpAnswerDict:
        return {
            "outcome": self.outcome.value,
            "status": self.status,
            "head_bytes": self.head_bytes,
            "ms": self.ms,
            "detail": self.detail,
        }


class UpstreamAttemptDict(TypedDict):
    """An ``UpstreamAttempt`` as JSON (in the firewall step's details)."""

    upstream: str
    kind: str
    address: str
    port: int | None
    resolve_error: str | None
    connect: ConnectDict | None
    http: HttpAnswerDict | None
    access: SocketAccessDict | None


@dataclass
class UpstreamAttempt:
    """The probe of one address of one upstream."""

    upstream: Upstream
    address: str  # the IP dialled, or the socket path
    connect: ConnectResult | None = None
    http: HttpAnswer | None = None
    resolve_error: str | None = None
    access: SocketAccess | None = None  # a unix socket's owner and mode, and who may open it

    def to_dict(self) -> UpstreamAttemptDict:
        return {
            "upstream": self.upstream.spec,
            "kind": self.upstream.kind.value,
            "address": self.address,
            "port": self.upstream.port or None,
            "resolve_error": self.resolve_error,
            "connect": self.connect.to_dict() if self.connect else None,
            "http": self.http.to_dict() if self.http else None,
            "access": self.access.to_dict() if self.access else None,
        }

    @property
    def target(self) -> str:
        """What was dialled, as a person reads it ("10.0.0.5:8080 (app.internal:8080)")."""
        up = self.upstream
        if up.kind is UpstreamKind.UNIX:
            return up.label
        shown = (
            f"[{self.address}]:{up.port}" if ":" in self.address else f"{self.address}:{up.port}"
        )
        return shown if self.address == up.host else f"{shown} ({up.label})"


async def probe_upstream(upstream: Upstream, timeout_s: float) -> list[UpstreamAttempt]:
    """Probe every address of one upstream (up to four), concurrently."""
    if upstream.kind is UpstreamKind.UNIX:
        attempt = UpstreamAttempt(upstream, upstream.path)
        attempt.connect = await connect_unix(upstream.path, timeout_s)
        if attempt.connect.state is ConnectState.OPEN:
            attempt.access = await asyncio.to_thread(socket_access, upstream.path)
        return [attempt]
    started = time.monotonic()
    try:
        found = await system_addresses(upstream.host, timeout_s, upstream.port)
        addresses = found[:_MAX_ADDRESSES]
    except TimeoutError:
        return [UpstreamAttempt(upstream, upstream.host, resolve_error="the lookup timed out")]
    except socket.gaierror as exc:
        return [UpstreamAttempt(upstream, upstream.host, resolve_error=str(exc.strerror))]
    left = max(0.05, timeout_s - (time.monotonic() - started))
    return list(await asyncio.gather(*(_probe_address(upstream, a, left) for a in addresses)))


async def _probe_address(upstream: Upstream, address: str, timeout_s: float) -> UpstreamAttempt:
    attempt = UpstreamAttempt(upstream, address)
    if upstream.kind is UpstreamKind.TCP:
        attempt.connect = await connect_tcp(address, upstream.port, timeout_s)
        return attempt
    attempt.connect, attempt.http = await _http_get(upstream, address, timeout_s)
    return attempt


async def _http_get(
    upstream: Upstream, address: str, timeout_s: float
) -> tuple[ConnectResult, HttpAnswer | None]:
    """Connect (and handshake) then ``GET /`` and read the response head, each step within
    ``timeout_s``. Only the head is read: that is what a proxy judges before relaying."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(address, upstream.port)
    except (OSError, TimeoutError) as exc:
        return failed_connect(exc, started), None
    connected = ConnectResult(ConnectState.OPEN, ms_since(started))
    try:
        if upstream.kind is UpstreamKind.HTTPS:
            try:
                async with asyncio.timeout(timeout_s):
                    await writer.start_tls(_upstream_tls_context(), server_hostname=_sni(upstream))
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                return connected, HttpAnswer(
                    HttpOutcome.TLS_FAILED, ms=ms_since(started), detail=_tls_why(exc)
                )
        request = (
            f"GET / HTTP/1.1\r\nHost: {upstream.label}\r\nUser-Agent: badgateway-probe\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        asked = time.monotonic()
        head = b""
        try:
            writer.write(request.encode("ascii"))
            async with asyncio.timeout(timeout_s):
                await writer.drain()
                while b"\r\n\r\n" not in head and len(head) < _READ_CAP:
                    chunk = await reader.read(_READ_CAP - len(head))
                    if not chunk:
                        break
                    head += chunk
        except TimeoutError:
            if not head:
                return connected, HttpAnswer(HttpOutcome.TIMEOUT, ms=ms_since(asked))
            if len(head) > HEADER_LIMIT_FAIL or not _looks_like_http(head):
                return connected, judge_head(head, ms_since(asked))
            return connected, HttpAnswer(
                HttpOutcome.TIMEOUT,
                head_bytes=len(head),
                ms=ms_since(asked),
                detail="headers stalled",
            )
        except (ConnectionResetError, BrokenPipeError) as exc:
            return connected, HttpAnswer(
                HttpOutcome.CLOSED,
                head_bytes=len(head),
                ms=ms_since(asked),
                detail=str(exc.strerror or exc),
            )
        return connected, judge_head(head, ms_since(asked))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                await writer.wait_closed()


def judge_head(head: bytes, ms: int) -> HttpAnswer:
    """Judge what an upstream sent for ``GET /`` as a proxy would: a status line, header
    lines, a blank line, within the buffer."""
    end = head.find(b"\r\n\r\n")
    if not head:
        return HttpAnswer(HttpOutcome.CLOSED, ms=ms, detail="nothing was sent back")
    if not _looks_like_http(head):
        return _invalid(head, ms)
    size = end + 4 if end >= 0 else len(head)
    if size > HEADER_LIMIT_FAIL:
        return HttpAnswer(HttpOutcome.TOO_BIG, head_bytes=size, ms=ms)
    if end < 0:
        return HttpAnswer(
            HttpOutcome.CLOSED,
            head_bytes=size,
            ms=ms,
            detail=f"the headers stop after {size} bytes",
        )
    lines = head[:end].split(b"\r\n")
    status_line = lines[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not (parts[1].isdigit() and len(parts[1]) == 3):
        return _invalid(head, ms)
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or b"\x00" in value:
            return HttpAnswer(
                HttpOutcome.INVALID,
                head_bytes=size,
                ms=ms,
                detail=f"a malformed header line {line[:60]!r}",
            )
    return HttpAnswer(HttpOutcome.RESPONSE, status=int(parts[1]), head_bytes=size, ms=ms)


def _looks_like_http(head: bytes) -> bool:
    # A proxy accepts "HTTP/1.x" status lines; a head cut short may still be the start of one.
    prefix = b"HTTP/1."
    return head.startswith(prefix) or (len(head) < len(prefix) and prefix.startswith(head))


def _invalid(head: bytes, ms: int) -> HttpAnswer:
    return HttpAnswer(
        HttpOutcome.INVALID, head_bytes=len(head), ms=ms, detail=f"it sent {head[:40]!r} instead"
    )


def _upstream_tls_context() -> ssl.SSLContext:
    # nginx does not verify upstream certificates unless proxy_ssl_verify is on, so the
    # probe judges only whether TLS itself works, as the proxy would.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _sni(upstream: Upstream) -> str | None:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in upstream.host else socket.AF_INET, upstream.host)
    except OSError:
        return upstream.host
    return None


def _tls_why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer to the TLS hello (the port does not speak TLS?)"
    if isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER":
        return "the port answers in plain text, not TLS (use http://)"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    return f"{type(exc).__name__}: {exc}"


@dataclass
class UpstreamReport:
    attempts: list[UpstreamAttempt] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # entries that do not parse


async def probe_upstreams(specs: tuple[str, ...], timeout_s: float) -> UpstreamReport:
    """Parse and probe every upstream of a site, concurrently."""
    report = UpstreamReport()
    parsed: list[Upstream] = []
    for spec in specs:
        try:
            parsed.append(parse_upstream(spec))
        except ValueError as exc:
            report.invalid.append(str(exc))
    for attempts in await asyncio.gather(*(probe_upstream(u, timeout_s) for u in parsed)):
        report.attempts.extend(attempts)
    return report
