"""Connect probes: the TCP connect to a site's edge, and the direct probe of its upstreams.

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
import errno
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from checks.http_status import server_failed
from checks.model import Cause, Finding, Status, Weight
from checks.resolve import system_addresses
from checks.socket_access import SocketAccess, SocketAccessDict, socket_access

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

ConnectState = Literal["open", "refused", "timeout", "unreachable", "missing", "denied", "error"]


class ConnectDict(TypedDict):
    """A ``ConnectResult`` as JSON."""

    state: str
    ms: int
    error: str | None


@dataclass(frozen=True)
class ConnectResult:
    state: ConnectState
    ms: int
    error: str | None = None

    def to_dict(self) -> ConnectDict:
        return {"state": self.state, "ms": self.ms, "error": self.error}


def _classify(exc: BaseException) -> tuple[ConnectState, str]:
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "missing", "no such socket file"
    if isinstance(exc, PermissionError):
        return "denied", "permission denied"
    if isinstance(exc, OSError):
        # asyncio words every failed connect "Connect call failed"; the errno says why.
        text = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
            return "unreachable", text
        return "error", text
    return "error", f"{type(exc).__name__}: {exc}"


async def connect_tcp(address: str, port: int, timeout_s: float) -> ConnectResult:
    """One TCP connect to an IP address, closed at once: open, refused (RST), timeout (no
    answer at all: dropped) or unreachable (ICMP / no route)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout_s):
                await loop.sock_connect(sock, (address, port))
        except (OSError, TimeoutError) as exc:
            state, text = _classify(exc)
            return ConnectResult(state, _ms(started), text)
    return ConnectResult("open", _ms(started))


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@dataclass(frozen=True)
class Upstream:
    """One ``upstreams`` entry of a site, parsed."""

    spec: str
    kind: Literal["tcp", "http", "https", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""  # unix socket path

    @property
    def label(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_upstream(spec: str) -> Upstream:
    """'host:port', 'http://host:port', 'https://host:port', 'unix:/path'. Raises ValueError."""
    text = spec.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ValueError(f"{spec!r}: a unix socket is written unix:/absolute/path")
        return Upstream(spec, "unix", path=path)
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{spec!r}: expected http://host:port or https://host:port")
        default = 443 if parts.scheme == "https" else 80
        kind: Literal["http", "https"] = "https" if parts.scheme == "https" else "http"
        return Upstream(spec, kind, parts.hostname, parts.port or default)
    parts = urlsplit("//" + text)
    if not parts.hostname:
        raise ValueError(f"{spec!r}: expected host:port")
    try:
        port = parts.port or 80  # nginx's own default for a server without a port
    except ValueError:
        raise ValueError(f"{spec!r}: the port is not a number from 1 to 65535") from None
    return Upstream(spec, "tcp", parts.hostname, port)


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

    outcome: Literal["response", "timeout", "closed", "invalid", "too_big", "tls_failed"]
    status: int | None = None
    head_bytes: int = 0
    ms: int = 0
    detail: str = ""

    def to_dict(self) -> HttpAnswerDict:
        return {
            "outcome": self.outcome,
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
            "kind": self.upstream.kind,
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
        if up.kind == "unix":
            return up.label
        shown = (
            f"[{self.address}]:{up.port}" if ":" in self.address else f"{self.address}:{up.port}"
        )
        return shown if self.address == up.host else f"{shown} ({up.label})"

    def findings(self, timeout_s: float) -> list[Finding]:
        up, where = self.upstream, self.target
        data: dict[str, Any] = {"upstream": up.spec, "address": self.address}
        if self.resolve_error is not None:
            return [
                Finding(
                    "upstream_dns",
                    f"upstream {up.label} does not resolve: {self.resolve_error}",
                    Status.FAIL,
                    Cause.UPSTREAM_DNS,
                    # The proxy may use another resolver than the bot's host.
                    Weight.INFERRED,
                    {**data, "next_step": f"check the DNS record of {up.host}"},
                )
            ]
        connect = self.connect
        if connect is None:
            return []
        if connect.state in ("refused", "missing"):
            what = "nothing listens there" if connect.state == "refused" else "no socket file"
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
        if connect.state in ("timeout", "unreachable"):
            why = (
                f"got no answer within {timeout_s:g} s"
                if connect.state == "timeout"
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
        if connect.state != "open":
            return [
                Finding(
                    "upstream_unprobed",
                    f"could not probe upstream {where}: {connect.error}",
                    Status.WARN,
                    data=data,
                )
            ]
        if self.access is not None:
            return [self._socket_finding(self.access, where, {**data, "connect_ms": connect.ms})]
        if self.http is None:
            return [
                Finding(
                    "upstream_open",
                    f"upstream {where} accepts connections ({connect.ms} ms)",
                    data={**data, "connect_ms": connect.ms},
                )
            ]
        return [self._http_finding(self.http, where, data, timeout_s)]

    def _socket_finding(self, access: SocketAccess, where: str, data: dict[str, Any]) -> Finding:
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
        self, answer: HttpAnswer, where: str, data: dict[str, Any], timeout_s: float
    ) -> Finding:
        data = {**data, "http": answer.to_dict()}
        label = self.upstream.label
        if answer.outcome == "response":
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
        cases: dict[str, tuple[Cause, str]] = {
            "timeout": (
                Cause.UPSTREAM_TIMEOUT,
                f"upstream {where} accepts connections but sends no response to GET / "
                f"within {timeout_s:g} s",
            ),
            "closed": (
                Cause.UPSTREAM_CLOSED,
                f"upstream {where} closes the connection without a complete response "
                f"to GET /{': ' + answer.detail if answer.detail else ''}",
            ),
            "invalid": (
                Cause.UPSTREAM_INVALID,
                f"upstream {where} does not answer in HTTP: {answer.detail}",
            ),
            "too_big": (
                Cause.UPSTREAM_HEADER_TOO_BIG,
                f"upstream {where} sends response headers over {answer.head_bytes} bytes, "
                f"more than any proxy's default buffer ({HEADER_LIMIT_FAIL // 1024} KiB)",
            ),
            "tls_failed": (
                Cause.UPSTREAM_TLS,
                f"the TLS handshake with upstream {where} fails: {answer.detail}",
            ),
        }
        cause, message = cases[answer.outcome]
        next_steps = {
            "timeout": f"check why the app at {label} hangs (stuck workers, locks, slow I/O)",
            "closed": f"check the logs of the app at {label} for crashes or OOM kills",
            "invalid": f"check that {label} is the app's HTTP port (not TLS, FastCGI, a DB)",
            "too_big": f"shrink the headers (cookies) the app at {label} sends",
            "tls_failed": f"check that {label} speaks TLS, and its certificate",
        }
        return Finding(
            f"upstream_{answer.outcome}",
            message,
            Status.FAIL,
            cause,
            # The probe waits its own timeout, not the proxy's (nginx: 60 s by default), so a
            # slow answer is weaker evidence than the proxy's log saying it timed out.
            Weight.INFERRED if answer.outcome == "timeout" else Weight.OBSERVED,
            {**data, "next_step": next_steps[answer.outcome]},
        )


async def _connect_unix(path: str, timeout_s: float) -> ConnectResult:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_unix_connection(path)
    except (OSError, TimeoutError) as exc:
        state, text = _classify(exc)
        return ConnectResult(state, _ms(started), text)
    writer.close()
    return ConnectResult("open", _ms(started))


async def probe_upstream(upstream: Upstream, timeout_s: float) -> list[UpstreamAttempt]:
    """Probe every address of one upstream (up to four), concurrently."""
    if upstream.kind == "unix":
        attempt = UpstreamAttempt(upstream, upstream.path)
        attempt.connect = await _connect_unix(upstream.path, timeout_s)
        if attempt.connect.state == "open":
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
    if upstream.kind == "tcp":
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
        state, text = _classify(exc)
        return ConnectResult(state, _ms(started), text), None
    connected = ConnectResult("open", _ms(started))
    try:
        if upstream.kind == "https":
            try:
                async with asyncio.timeout(timeout_s):
                    await writer.start_tls(_upstream_tls_context(), server_hostname=_sni(upstream))
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                return connected, HttpAnswer("tls_failed", ms=_ms(started), detail=_tls_why(exc))
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
                return connected, HttpAnswer("timeout", ms=_ms(asked))
            if len(head) > HEADER_LIMIT_FAIL or not _looks_like_http(head):
                return connected, judge_head(head, _ms(asked))
            return connected, HttpAnswer(
                "timeout", head_bytes=len(head), ms=_ms(asked), detail="headers stalled"
            )
        except (ConnectionResetError, BrokenPipeError) as exc:
            return connected, HttpAnswer(
                "closed", head_bytes=len(head), ms=_ms(asked), detail=str(exc.strerror or exc)
            )
        return connected, judge_head(head, _ms(asked))
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
        return HttpAnswer("closed", ms=ms, detail="nothing was sent back")
    if not _looks_like_http(head):
        return _invalid(head, ms)
    size = end + 4 if end >= 0 else len(head)
    if size > HEADER_LIMIT_FAIL:
        return HttpAnswer("too_big", head_bytes=size, ms=ms)
    if end < 0:
        return HttpAnswer(
            "closed", head_bytes=size, ms=ms, detail=f"the headers stop after {size} bytes"
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
                "invalid", head_bytes=size, ms=ms, detail=f"a malformed header line {line[:60]!r}"
            )
    return HttpAnswer("response", status=int(parts[1]), head_bytes=size, ms=ms)


def _looks_like_http(head: bytes) -> bool:
    # A proxy accepts "HTTP/1.x" status lines; a head cut short may still be the start of one.
    prefix = b"HTTP/1."
    return head.startswith(prefix) or (len(head) < len(prefix) and prefix.startswith(head))


def _invalid(head: bytes, ms: int) -> HttpAnswer:
    return HttpAnswer(
        "invalid", head_bytes=len(head), ms=ms, detail=f"it sent {head[:40]!r} instead"
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
