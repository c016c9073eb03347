"""Host: who answers at the site's address, and a summary ready to send to that provider.

When the cause lies with a CDN, a cloud load balancer or the hosting company, the fastest
fix is a ticket that carries what their support asks for: the address, the exact time in
UTC, the status seen and their own request IDs. This step finds the provider (reverse DNS,
the answering software's headers, a few published address ranges) and writes that ticket
text into ``details["provider_summary"]``. It makes one request of its own: steps are
independent and may run on different workers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from datetime import UTC, datetime
from typing import TypedDict, cast

import dns.exception
import dns.resolver
import dns.reversename

from badgateway.checks.attempt import Attempt, AttemptDict
from badgateway.checks.context import ProbeContext
from badgateway.checks.fingerprint import (
    REQUEST_ID_HEADERS,
    Fingerprint,
    FingerprintDict,
    identify_attempt,
)
from badgateway.checks.http_probe import cache_busted, fetch
from badgateway.checks.http_status import server_failed
from badgateway.checks.model import Finding, Status, StepResult
from badgateway.checks.readable import ms_text
from badgateway.checks.resolve import make_resolver
from badgateway.checks.steps import Step

PTR_TIMEOUT_S = 2.0
MAX_PTR_LOOKUPS = 4

# Reverse-DNS name patterns of the usual hosts, first match wins.
PTR_PROVIDERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), name)
    for pattern, name in (
        (r"\.cloudfront\.net$", "Amazon CloudFront"),
        (r"\.amazonaws\.com$", "Amazon Web Services"),
        (r"(\.googleusercontent\.com|\.1e100\.net)$", "Google Cloud"),
        (r"(\.your-server\.de|\.hetzner\.(com|de|cloud))$", "Hetzner"),
        (r"(\.ovh\.(net|com|ca|us)|\.ip-\d+-\d+-\d+\.(eu|net|us))$", "OVHcloud"),
        (r"digitalocean", "DigitalOcean"),
        (r"(\.linode\.com|\.linodeusercontent\.com)$", "Akamai Cloud (Linode)"),
        (r"(\.akamaitechnologies\.com|\.akamaiedge\.net|\.akamai\.net)$", "Akamai"),
        (r"(\.cloudapp\.net|\.cloudapp\.azure\.com|azure)", "Microsoft Azure"),
        (r"fastly", "Fastly"),
        (r"cloudflare", "Cloudflare"),
        (r"\.vultrusercontent\.com$|vultr", "Vultr"),
        (r"\.scw\.cloud$|scaleway", "Scaleway"),
    )
)

# Published ranges of edge networks that rarely change (Cloudflare's ips-v4/ips-v6 lists,
# Fastly's public-ip-list). Cloud providers' ranges are too large and volatile to embed.
PUBLISHED_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), name)
    for net, name in (
        ("173.245.48.0/20", "Cloudflare"),
        ("103.21.244.0/22", "Cloudflare"),
        ("103.22.200.0/22", "Cloudflare"),
        ("103.31.4.0/22", "Cloudflare"),
        ("141.101.64.0/18", "Cloudflare"),
        ("108.162.192.0/18", "Cloudflare"),
        ("190.93.240.0/20", "Cloudflare"),
        ("188.114.96.0/20", "Cloudflare"),
        ("197.234.240.0/22", "Cloudflare"),
        ("198.41.128.0/17", "Cloudflare"),
        ("162.158.0.0/15", "Cloudflare"),
        ("104.16.0.0/13", "Cloudflare"),
        ("104.24.0.0/14", "Cloudflare"),
        ("172.64.0.0/13", "Cloudflare"),
        ("131.0.72.0/22", "Cloudflare"),
        ("2400:cb00::/32", "Cloudflare"),
        ("2606:4700::/32", "Cloudflare"),
        ("2803:f800::/32", "Cloudflare"),
        ("2405:b500::/32", "Cloudflare"),
        ("2405:8100::/32", "Cloudflare"),
        ("2a06:98c0::/29", "Cloudflare"),
        ("2c0f:f248::/32", "Cloudflare"),
        ("151.101.0.0/16", "Fastly"),
        ("199.232.0.0/16", "Fastly"),
        ("2a04:4e40::/32", "Fastly"),
        ("2a04:4e42::/32", "Fastly"),
    )
)

# The answering software, when it is a hosted service, names the provider.
PRODUCER_PROVIDERS = {
    "Cloudflare": "Cloudflare",
    "CloudFront": "Amazon CloudFront",
    "AWS ELB": "Amazon Web Services (Elastic Load Balancing)",
    "Fastly": "Fastly",
    "Akamai": "Akamai",
    "Google": "Google Cloud",
    "Heroku": "Heroku",
}


def provider_from_ptr(name: str | None) -> str | None:
    if not name:
        return None
    for pattern, provider in PTR_PROVIDERS:
        if pattern.search(name.rstrip(".")):
            return provider
    return None


def provider_from_address(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    for net, provider in PUBLISHED_RANGES:
        if ip.version == net.version and ip in net:
            return provider
    return None


def identify_provider(
    address: str, ptr: str | None, fingerprint: Fingerprint | None
) -> tuple[str | None, str]:
    """(provider, how it was told). The answering service beats the address's owner: a
    Cloudflare page at an AWS address is Cloudflare's to explain."""
    if fingerprint is not None and fingerprint.producer in PRODUCER_PROVIDERS:
        return PRODUCER_PROVIDERS[fingerprint.producer], f"{fingerprint.producer} headers"
    by_range = provider_from_address(address)
    if by_range:
        return by_range, "published address range"
    by_ptr = provider_from_ptr(ptr)
    if by_ptr:
        return by_ptr, f"reverse DNS name {ptr}"
    return None, "not recognised"


async def reverse_name(address: str, resolvers: tuple[str, ...], timeout_s: float) -> str | None:
    """The PTR name of ``address`` via the configured resolvers, else the system's
    (getnameinfo, which reads /etc/hosts first). None when there is none or no answer."""
    if resolvers:
        query = dns.reversename.from_address(address)
        for spec in resolvers:
            try:
                answer = await make_resolver(spec, timeout_s).resolve(query, "PTR")
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return None
            except (dns.exception.DNSException, OSError):
                continue
            for record in answer:
                return str(record.to_text()).rstrip(".")
        return None
    if not ipaddress.ip_address(address).is_global:
        # A private or loopback address's PTR says nothing about who hosts it, and asking
        # the system's (often upstream) resolver for it would leak internal addresses.
        return None
    loop = asyncio.get_running_loop()
    try:
        host, _port = await asyncio.wait_for(
            loop.getnameinfo((address, 0), socket.NI_NAMEREQD), timeout_s
        )
    except (TimeoutError, OSError):
        return None
    return None if host == address else host


def _answer_line(attempt: Attempt, fingerprint: Fingerprint) -> str:
    phases = attempt.phases
    timing = f"connect {ms_text(phases.get('connect'))}"
    if "tls" in phases:
        timing += f", TLS {ms_text(phases.get('tls'))}"
    if "ttfb" in phases:
        timing += f", first byte {ms_text(phases.get('ttfb'))}"
    timing += f", total {ms_text(phases.get('total'))}"
    if attempt.status is None:
        error = attempt.error
        kind, message = (error["kind"], error["message"]) if error else ("?", "")
        return f"no HTTP answer: {kind} ({message}); {timing}"
    by = f" from {fingerprint.producer}" if fingerprint.producer else ""
    return f"HTTP {attempt.status} {attempt.reason}{by}; {timing}"


def provider_summary(
    ctx: ProbeContext,
    attempt: Attempt,
    fingerprint: Fingerprint,
    ptr_names: dict[str, str | None],
    provider: str | None,
    provider_how: str,
) -> str:
    """Plain text to paste into a support ticket (no chat markup)."""
    started = attempt.started_at.replace("T", " ").replace("+00:00", " UTC")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"Target: {ctx.target.url}",
        f"Time: {started} (summary written {now})",
        f"Address probed: {attempt.address}"
        + (
            f" (reverse DNS: {ptr_names.get(attempt.address or '')})"
            if ptr_names.get(attempt.address or "")
            else ""
        ),
        "All addresses: "
        + ", ".join(f"{a} ({ptr_names[a]})" if ptr_names.get(a) else a for a in ctx.addresses),
        f"Provider: {provider or 'unknown'} ({provider_how})",
        f"Answer: {_answer_line(attempt, fingerprint)}",
    ]
    if attempt.redirects:
        hops = " -> ".join(f"{h['status']} {h['url']}" for h in attempt.redirects)
        lines.append(f"Redirects followed: {hops} -> {attempt.url}")
    ids = [
        f"{name}: {attempt.headers[name]}" for name in REQUEST_ID_HEADERS if name in attempt.headers
    ]
    if not ids and fingerprint.request_id:
        ids = [fingerprint.request_id]
    lines.append("Request IDs: " + ("; ".join(ids) if ids else "none sent"))
    shown = [
        f"{k}: {v}"
        for k, v in attempt.headers.items()
        if k in ("server", "via", "x-cache", "x-served-by", "retry-after", "content-type")
    ]
    if shown:
        lines.append("Response headers: " + "; ".join(shown))
    if fingerprint.producer:
        lines.append(f"Error page: {fingerprint.reason}")
    excerpt = " ".join(attempt.body_text.split())[:300]
    if excerpt and attempt.status is not None and attempt.status >= 400:
        lines.append(f"Body excerpt: {excerpt}")
    lines.append(
        "Probe: one GET from the badgateway diagnosis bot, connecting to the address above."
    )
    return "\n".join(lines)


class HostDetails(TypedDict):
    address: str  # the address the request went to
    ptr: dict[str, str | None]  # address -> reverse DNS name
    provider: str | None
    provider_how: str  # how the provider was told ("published address range"…)
    producer: str | None  # the answering software
    fingerprint: FingerprintDict
    attempt: AttemptDict
    provider_summary: str  # plain text for a ticket to the provider


async def run(ctx: ProbeContext) -> StepResult:
    if not ctx.addresses:
        return StepResult(
            "host",
            Status.SKIPPED,
            f"not tried: {ctx.resolve_error or 'the target has no address'}",
        )
    timeout = min(PTR_TIMEOUT_S, ctx.probe_timeout())
    looked_up = list(ctx.addresses[:MAX_PTR_LOOKUPS])
    mark = ctx.request_mark("h")  # so the logs step counts this request as the diagnosis's
    names, attempt = await asyncio.gather(
        asyncio.gather(*(reverse_name(a, ctx.settings.resolvers, timeout) for a in looked_up)),
        fetch(ctx, cache_busted(ctx.target.url, mark)),
    )
    ptr_names: dict[str, str | None] = dict(zip(looked_up, names, strict=True))
    fingerprint = identify_attempt(attempt)
    address = attempt.address or ctx.addresses[0]
    provider, how = identify_provider(address, ptr_names.get(address), fingerprint)
    summary_text = provider_summary(ctx, attempt, fingerprint, ptr_names, provider, how)
    ptr = ptr_names.get(address)
    who = provider or "an unrecognised host"
    software = f", answering as {fingerprint.producer}" if fingerprint.producer else ""
    findings = [
        Finding(
            "host_identified",
            f"{address}" + (f" ({ptr})" if ptr else "") + f" is {who}{software}",
            Status.OK,
            data={"provider": provider, "how": how, "ptr": ptr},
        )
    ]
    if attempt.status is None or server_failed(attempt.status):
        # Reported, not judged: the reload step owns the verdict on the answer itself.
        findings.append(
            Finding(
                "edge_answer",
                f"The edge answered: {_answer_line(attempt, fingerprint)}",
                Status.WARN,
                data={"request_id": fingerprint.request_id} if fingerprint.request_id else {},
            )
        )
    details: HostDetails = {
        "address": address,
        "ptr": ptr_names,
        "provider": provider,
        "provider_how": how,
        "producer": fingerprint.producer,
        "fingerprint": fingerprint.to_dict(),
        "attempt": attempt.to_dict(),
        "provider_summary": summary_text,
    }
    summary = f"{address} is {who}{software}"
    return StepResult.from_findings(
        "host", summary, findings, details=details, sent=[attempt.as_sent(mark)]
    )


def evidence(result: StepResult) -> list[str]:
    """The provider summary, as one block."""
    summary = cast(HostDetails, result.details).get("provider_summary")
    return [str(summary)] if summary else []


STEP = Step(name="host", order=50, title="Host", run=run, evidence=evidence)
