"""One HTTP(S) request to the target's pinned address, measured like ``curl -w`` and bounded.

The probe dials the address ``checks.runner.prepare`` resolved and vetted, never the name
(so a DNS answer that changes between vetting and probing cannot steer it elsewhere), and
still speaks to the site as a browser would: the Host header carries the URL's authority and
TLS sends the host name as SNI and verifies the certificate against it. Redirects are
followed here, not by httpx, because each new host must be resolved and vetted by the SSRF
guard before a packet goes to it.

Every outcome is an ``Attempt`` (checks.attempt): a status when a response came, an
``error`` (with a kind other steps can branch on) when it did not, and the timing phases
either way.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import certifi
import httpx

from badgateway.checks.attempt import Attempt, ErrorKind, ErrorPhase
from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import TargetRefused, check_address, parse_ip
from badgateway.checks.http_trace import Timer, classify_error, may_be_http
from badgateway.checks.resolve import ResolveFailed, ResolveKind, resolve_host
from badgateway.checks.settings import Settings

BOT_USER_AGENT = "badgateway/0.1 (+https://github.com/badgateway; 502 diagnosis)"
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)
MAX_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 5

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
    timer = Timer(tls)
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
    if attempt.error and attempt.status is None and head and not may_be_http(head):
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
