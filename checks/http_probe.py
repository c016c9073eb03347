"""One HTTP(S) request to the target's pinned address, measured like ``curl -w`` and bounded.

The probe dials the address ``checks.runner.prepare`` resolved and vetted, never the name
(so a DNS answer that changes between vetting and probing cannot steer it elsewhere), and
still speaks to the site as a browser would: the Host header carries the URL's authority and
TLS sends the host name as SNI and verifies the certificate against it. Redirects are
followed here, not by httpx, because each new host must be resolved and vetted by the SSRF
guard before a packet goes to it.

Every outcome is an ``Attempt``: a status when a response came, an ``error`` (with a kind
other steps can branch on) when it did not, and the timing phases either way.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any, TypedDict
from urllib.parse import urljoin, urlsplit, urlunsplit

import certifi
import httpx

from checks.context import ProbeContext
from checks.guard import TargetRefused, check_address, parse_ip
from checks.http_status import GATEWAY_STATUSES
from checks.model import SentRequest
from checks.resolve import ResolveFailed, ResolveKind, resolve_host
from checks.settings import Settings

BOT_USER_AGENT = "badgateway/0.1 (+https://github.com/badgateway; 502 diagnosis)"
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)
MAX_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 5
EXCERPT_CHARS = 2000  # how much of the body goes into JSON; fingerprinting sees all it read
_FIRST_BYTES = 64  # of an answer that is not HTTP, quoted as evidence

# Headers that say who answered and how to find the request in their logs.
SELECTED_HEADERS = (
    "server",
    "via",
    "x-powered-by",
    "content-type",
    "content-length",
    "location",
    "retry-after",
    "date",
    "age",
    "x-cache",
    "x-served-by",
    "x-request-id",
    "x-correlation-id",
    "x-amz-cf-id",
    "x-amz-cf-pop",
    "x-amzn-requestid",
    "x-amzn-trace-id",
    "x-amzn-errortype",
    "x-amz-apigw-id",
    "cf-ray",
    "cf-cache-status",
    "cf-mitigated",
    "x-fastly-request-id",
    "x-timer",
    "akamai-grn",
    "x-akamai-request-id",
    "x-reference-error",
    "x-azure-ref",
    "x-ms-request-id",
    "x-cloud-trace-context",
    "x-goog-request-id",
    "x-envoy-upstream-service-time",
    "x-kong-request-id",
    "x-kong-upstream-latency",
    "x-kong-proxy-latency",
    "x-vercel-id",
    "fly-request-id",
    "x-github-request-id",
    "x-iinfo",
    "x-sucuri-id",
    "x-haproxy-server-state",
    "report-to",
    "nel",
)

# HTTPS redirects are common; anything else is the site's own answer.
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class ErrorKind(StrEnum):
    """What went wrong when no (complete) answer came."""

    TIMEOUT = "timeout"
    TLS = "tls"
    REFUSED = "refused"
    RESET = "reset"
    UNREACHABLE = "unreachable"
    CLOSED = "closed"  # the server closed the connection without an answer
    PROTOCOL = "protocol"  # an answer that is not HTTP
    OTHER = "other"
    NO_ADDRESS = "no_address"  # nothing to dial
    REFUSED_BY_GUARD = "refused_by_guard"  # a redirect to an address the guard refuses
    DNS = "dns"  # a redirect's host did not resolve


class ErrorPhase(StrEnum):
    """How far the request got before it went wrong."""

    CONNECT = "connect"
    TLS = "tls"
    RESPONSE = "response"
    BODY = "body"
    REDIRECT = "redirect"


class AttemptError(TypedDict):
    kind: ErrorKind
    phase: ErrorPhase
    message: str


def _error_from_dict(d: dict[str, Any]) -> AttemptError:
    kinds, phases = {k.value: k for k in ErrorKind}, {p.value: p for p in ErrorPhase}
    return {
        "kind": kinds.get(str(d.get("kind")), ErrorKind.OTHER),
        "phase": phases.get(str(d.get("phase")), ErrorPhase.CONNECT),
        "message": str(d.get("message", "")),
    }


class AttemptDict(TypedDict):
    """An ``Attempt`` as JSON (in the reload and host steps' details)."""

    url: str
    address: str | None
    user_agent: str
    started_at: str
    status: int | None
    reason: str
    http_version: str
    phases: dict[str, float]
    headers: dict[str, str]
    header_names: list[str]
    body_excerpt: str
    body_bytes: int
    body_truncated: bool
    error: AttemptError | None
    redirects: list[dict[str, Any]]
    source: str | None


@dataclass
class Attempt:
    """One request and what came back. ``status`` is None when no response arrived."""

    url: str
    address: str | None
    user_agent: str
    started_at: str  # ISO 8601, UTC
    status: int | None = None
    reason: str = ""
    http_version: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # ms, cumulative like curl -w
    headers: dict[str, str] = field(default_factory=dict)  # SELECTED_HEADERS present
    header_names: list[str] = field(default_factory=list)  # every header name, lower-case
    body: bytes = b""  # up to MAX_BODY_BYTES; not serialised
    body_truncated: bool = False
    error: AttemptError | None = None
    redirects: list[dict[str, Any]] = field(default_factory=list)  # hops before this answer
    source: str | None = None  # "ip:port" the request left from (logs that name the client's
    # port, Apache's and HAProxy's, show it)

    def as_sent(self, mark: str) -> SentRequest:
        """This request as other steps look for it in the site's logs."""
        cut = self.error_kind in (ErrorKind.CLOSED, ErrorKind.RESET, ErrorKind.PROTOCOL)
        return SentRequest(
            mark=mark,
            sent_at=self.started_at,
            source=self.source,
            reached=self.connected,
            answer=str(self.status) if self.status is not None else self.error_kind or "",
            gateway_failed=self.status in GATEWAY_STATUSES or (self.connected and cut),
        )

    @property
    def connected(self) -> bool:
        """A connection to the server was made: it saw the request (or its TLS hello)."""
        return self.status is not None or (
            self.error is not None
            and self.error["phase"] not in (ErrorPhase.CONNECT, ErrorPhase.REDIRECT)
        )

    @property
    def error_kind(self) -> ErrorKind | None:
        return self.error["kind"] if self.error else None

    @property
    def body_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def to_dict(self) -> AttemptDict:
        return {
            "url": self.url,
            "address": self.address,
            "user_agent": self.user_agent,
            "started_at": self.started_at,
            "status": self.status,
            "reason": self.reason,
            "http_version": self.http_version,
            "phases": dict(self.phases),
            "headers": dict(self.headers),
            "header_names": list(self.header_names),
            "body_excerpt": self.body_text[:EXCERPT_CHARS],
            "body_bytes": len(self.body),
            "body_truncated": self.body_truncated,
            "error": self.error.copy() if self.error else None,
            "redirects": list(self.redirects),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        """Rebuild from ``to_dict`` (the body comes back as its excerpt only)."""
        return cls(
            url=d["url"],
            address=d.get("address"),
            user_agent=d.get("user_agent", ""),
            started_at=d.get("started_at", ""),
            status=d.get("status"),
            reason=d.get("reason", ""),
            http_version=d.get("http_version", ""),
            phases=dict(d.get("phases") or {}),
            headers=dict(d.get("headers") or {}),
            header_names=list(d.get("header_names") or []),
            body=str(d.get("body_excerpt", "")).encode(),
            body_truncated=bool(d.get("body_truncated")),
            error=_error_from_dict(d["error"]) if d.get("error") else None,
            redirects=list(d.get("redirects") or []),
            source=d.get("source"),
        )


def cache_busted(url: str, mark: str | None = None) -> str:
    """``url`` with a ``_bgw`` query parameter, so no cache can answer for the origin and the
    request can be found in the site's logs: ``mark`` names the request (a diagnosis's
    ``ProbeContext.request_mark``); without one it is random ("x" + hex, a monitoring probe)."""
    parts = urlsplit(url)
    extra = f"_bgw={mark or 'x' + secrets.token_hex(6)}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifying context: the system store (OpenSSL honours SSL_CERT_FILE/SSL_CERT_DIR there),
    certifi's public roots, and the sites file's ``ca_file`` for a private CA."""
    return _ssl_context(
        settings.ca_file, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    )


@cache
def _ssl_context(ca_file: str | None, env_file: str | None, env_dir: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if env_file and os.path.exists(env_file):
        context.load_verify_locations(cafile=env_file)
    if env_dir and os.path.isdir(env_dir):
        context.load_verify_locations(capath=env_dir)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class _Timer:
    """Collects httpcore trace events into curl-like cumulative phases (ms since start)."""

    def __init__(self, tls: bool = False) -> None:
        self.start = time.monotonic()
        self.marks: dict[str, float] = {}
        self.source: str | None = None
        self.first_bytes = bytearray()  # the start of the answer, as it came off the wire
        # The stream that carries HTTP: the TLS one over https, never the handshake's bytes.
        self._http_stream_ready = (
            "connection.start_tls.complete" if tls else "connection.connect_tcp.complete"
        )

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.marks.setdefault(event, time.monotonic())
        if event == "connection.connect_tcp.complete" and self.source is None:
            self.source = _local_address(info.get("return_value"))
        if event == self._http_stream_ready:
            self._record_reads(info.get("return_value"))

    def _record_reads(self, stream: Any) -> None:
        """Keep the first bytes read from ``stream``. h11 waits for a blank line before it
        judges a status line, so an answer like an SSH banner ("SSH-2.0-…\r\n", then
        silence) would otherwise look like no answer at all."""
        read = getattr(stream, "read", None)
        if read is None:
            return
        first = self.first_bytes

        # httpcore's own read signature, timeout included.
        async def recording_read(max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            data: bytes = await read(max_bytes, timeout)
            if len(first) < _FIRST_BYTES:
                first.extend(data[: _FIRST_BYTES - len(first)])
            return data

        stream.read = recording_read

    def ms(self, event: str) -> float | None:
        at = self.marks.get(event)
        return None if at is None else round((at - self.start) * 1000, 1)

    def seen(self, event: str) -> bool:
        return event in self.marks

    def phases(self, tls: bool) -> dict[str, float]:
        out: dict[str, float] = {"dns": 0.0}  # pinned: no lookup on the request's path
        connect = self.ms("connection.connect_tcp.complete")
        if connect is not None:
            out["connect"] = connect
        if tls:
            handshake = self.ms("connection.start_tls.complete")
            if handshake is not None:
                out["tls"] = handshake
        ttfb = self.ms("http11.receive_response_headers.complete") or self.ms(
            "http2.receive_response_headers.complete"
        )
        if ttfb is not None:
            out["ttfb"] = ttfb
        out["total"] = round((time.monotonic() - self.start) * 1000, 1)
        return out


def _local_address(stream: Any) -> str | None:
    """The "ip:port" a connected httpcore stream left from."""
    try:
        name = stream.get_extra_info("socket").getsockname()
    except (AttributeError, OSError):
        return None
    host, port = str(name[0]), int(name[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return current


def classify_error(exc: BaseException, timer: _Timer, tls: bool) -> AttemptError:
    """Name what went wrong: kind (refused, timeout, reset, tls, closed, unreachable,
    protocol, other) and phase (connect, tls, response, body)."""
    connected = timer.seen("connection.connect_tcp.complete")
    handshaken = not tls or timer.seen("connection.start_tls.complete")
    got_headers = timer.seen("http11.receive_response_headers.complete") or timer.seen(
        "http2.receive_response_headers.complete"
    )
    if not connected:
        phase = ErrorPhase.CONNECT
    elif not handshaken:
        phase = ErrorPhase.TLS
    elif not got_headers:
        phase = ErrorPhase.RESPONSE
    else:
        phase = ErrorPhase.BODY
    root = _root_cause(exc)
    message = str(root) or str(exc) or type(exc).__name__
    kind = ErrorKind.OTHER
    if isinstance(exc, httpx.TimeoutException) or isinstance(root, TimeoutError):
        kind = ErrorKind.TIMEOUT
    elif isinstance(root, ssl.SSLCertVerificationError):
        kind = ErrorKind.TLS
        message = f"certificate verify failed: {root.verify_message or message}"
    elif isinstance(root, ssl.SSLError) or phase is ErrorPhase.TLS:
        kind = ErrorKind.TLS
    elif isinstance(root, ConnectionRefusedError):
        kind = ErrorKind.REFUSED
    elif isinstance(root, ConnectionResetError):
        kind = ErrorKind.RESET
    elif isinstance(root, OSError) and root.errno in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
    ):
        kind = ErrorKind.UNREACHABLE
    elif isinstance(exc, httpx.RemoteProtocolError):
        # h11 says "Server disconnected without sending a response" for a silent close.
        kind = ErrorKind.CLOSED if "disconnected" in message.lower() else ErrorKind.PROTOCOL
    elif isinstance(exc, httpx.ReadError | httpx.WriteError):
        kind = ErrorKind.CLOSED
    return {"kind": kind, "phase": phase, "message": message[:300]}


def _may_be_http(head: bytes) -> bool:
    """Whether ``head`` starts (or may still start) like an HTTP/1 answer (the probe does
    not offer HTTP/2)."""
    return head.startswith(b"HTTP/") or b"HTTP/".startswith(head)


def _dial_url(url: str, address: str) -> str:
    """The URL with its host replaced by the address to dial (keeping port, path, query)."""
    parts = urlsplit(url)
    shown = f"[{address}]" if ":" in address else address
    port = parts.port
    netloc = shown if port is None else f"{shown}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _authority(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    return shown if parts.port in (None, default) else f"{shown}:{parts.port}"


async def _vetted_address(url: str, settings: Settings, timeout_s: float) -> str:
    """Resolve a redirect's host and vet every address; raises TargetRefused/ResolveFailed."""
    host = urlsplit(url).hostname or ""
    literal = parse_ip(host)
    addresses = (
        [str(literal)]
        if literal is not None
        else await resolve_host(host.lower(), settings.resolvers, timeout_s)
    )
    if not addresses:
        raise ResolveFailed(ResolveKind.NOANSWER, f"{host} resolved to no address")
    for address in addresses:
        check_address(address, settings.allow_networks, host=host)
    return addresses[0]


async def _one_request(
    client: httpx.AsyncClient,
    url: str,
    address: str,
    user_agent: str,
    headers: dict[str, str],
    timeout_s: float,
    connect_timeout_s: float | None = None,
) -> Attempt:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    attempt = Attempt(
        url=url,
        address=address,
        user_agent=user_agent,
        started_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    timer = _Timer(tls)
    request_headers = {
        "Host": _authority(url),
        "User-Agent": user_agent,
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
        "Accept-Encoding": "gzip, deflate",
        **headers,
    }
    extensions: dict[str, Any] = {"trace": timer}
    if tls and parts.hostname and parse_ip(parts.hostname) is None:
        extensions["sni_hostname"] = parts.hostname
    try:
        async with asyncio.timeout(timeout_s):
            request = client.build_request(
                "GET",
                _dial_url(url, address),
                headers=request_headers,
                extensions=extensions,
                timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s or timeout_s),
            )
            response = await client.send(request, stream=True)
            try:
                attempt.status = response.status_code
                attempt.reason = response.reason_phrase
                attempt.http_version = response.http_version
                attempt.header_names = sorted({k.lower() for k in response.headers})
                attempt.headers = {
                    name: ", ".join(response.headers.get_list(name))[:500]
                    for name in SELECTED_HEADERS
                    if name in response.headers
                }
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES:
                        attempt.body_truncated = True
                        break
                attempt.body = bytes(body[:MAX_BODY_BYTES])
            finally:
                await response.aclose()
    except TimeoutError as exc:  # our own overall cap
        attempt.error = classify_error(exc, timer, tls)
        attempt.error["kind"] = ErrorKind.TIMEOUT
        attempt.error["message"] = f"no complete answer within {timeout_s:.1f} s"
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        attempt.error = classify_error(exc, timer, tls)
    head = bytes(timer.first_bytes)
    if attempt.error and attempt.status is None and head and not _may_be_http(head):
        attempt.error = {
            "kind": ErrorKind.PROTOCOL,
            "phase": ErrorPhase.RESPONSE,
            "message": f"the answer has no HTTP status line: it starts {head[:40]!r}",
        }
    attempt.phases = timer.phases(tls)
    attempt.source = timer.source
    return attempt


async def fetch(
    ctx: ProbeContext,
    url: str | None = None,
    *,
    user_agent: str = BOT_USER_AGENT,
    headers: dict[str, str] | None = None,
    address: str | None = None,
    follow_redirects: bool = True,
    connect_timeout_s: float | None = None,
) -> Attempt:
    """GET ``url`` (default: the target's URL) at ``address`` (default: the first pinned
    address) and follow up to MAX_REDIRECTS redirects, vetting each new host. Never raises
    for network trouble: the Attempt's ``error`` says what happened. The whole call,
    redirects included, stays within ``ctx.probe_timeout()``; the first connect within
    ``connect_timeout_s`` when given."""
    settings = ctx.settings
    current_url = url or ctx.target.url
    started = time.monotonic()
    budget = ctx.probe_timeout()
    dial = address or (ctx.addresses[0] if ctx.addresses else None)
    if dial is None:
        return Attempt(
            url=current_url,
            address=None,
            user_agent=user_agent,
            started_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            error={
                "kind": ErrorKind.NO_ADDRESS,
                "phase": ErrorPhase.CONNECT,
                "message": ctx.resolve_error or "the target has no vetted address",
            },
        )
    pinned_origin = _origin(current_url)
    hops: list[dict[str, Any]] = []
    async with httpx.AsyncClient(
        verify=ssl_context(settings), follow_redirects=False, trust_env=False
    ) as client:
        while True:
            remaining = max(0.05, budget - (time.monotonic() - started))
            attempt = await _one_request(
                client,
                current_url,
                dial,
                user_agent,
                dict(headers or {}),
                remaining,
                connect_timeout_s if not hops else None,
            )
            attempt.redirects = list(hops)
            location = attempt.headers.get("location")
            if (
                not follow_redirects
                or attempt.status not in _REDIRECT_STATUSES
                or not location
                or len(hops) >= MAX_REDIRECTS
            ):
                return attempt
            next_url = urljoin(current_url, location)
            if urlsplit(next_url).scheme not in ("http", "https"):
                return attempt
            hops.append({"url": current_url, "status": attempt.status, "address": dial})
            if _origin(next_url) == pinned_origin:
                # Same host and port as the vetted target: keep the pinned address.
                next_dial = address or ctx.addresses[0]
            else:
                try:
                    next_dial = await _vetted_address(
                        next_url, settings, max(0.05, budget - (time.monotonic() - started))
                    )
                except TargetRefused as exc:
                    attempt.error = {
                        "kind": ErrorKind.REFUSED_BY_GUARD,
                        "phase": ErrorPhase.REDIRECT,
                        "message": f"redirect to {next_url} not followed: {exc}",
                    }
                    return attempt
                except ResolveFailed as exc:
                    attempt.error = {
                        "kind": ErrorKind.DNS,
                        "phase": ErrorPhase.REDIRECT,
                        "message": f"redirect to {next_url} not followed: {exc}",
                    }
                    return attempt
            current_url, dial = next_url, next_dial


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    literal = parse_ip(host)
    if literal is not None:
        host = str(literal)
    return parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80)
