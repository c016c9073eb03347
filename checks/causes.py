"""The cause taxonomy in one table: for each cause, the layer of the path it lies in, what it
means and what to do about it. The verdict's layers, the set of causes behind the proxy and
docs/causes.md are all read off this table.

docs/causes.md is generated from it (``python -m badgateway.checks.causes > docs/causes.md``), and a
test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from badgateway.checks.model import Cause


class Layer(StrEnum):
    """Where on the way from a client to the app a cause lies, outside in (the definition
    order is the order the verdict walks them in): a failure further out hides everything
    behind it."""

    NAME = "name"  # the name does not resolve at all
    # The site works from some of the places it is probed from and fails from others: what
    # differs lies between those places and the site, so it comes before what every place sees.
    REACH = "reach"
    ANSWER = "answer"  # the name resolves, to the wrong or to differing addresses
    EDGE = "edge"  # the network path to the site and its TLS
    WAF = "waf"  # a WAF or CDN in front refuses the request
    APP_SERVER = "app_server"  # behind the proxy: its upstreams and their runtime
    APPLICATION = "application"  # the application's own error, relayed by the proxy


# Behind the proxy: evidence for these only explains a failure the edge passed through.
_BEHIND_THE_PROXY_LAYERS = (Layer.APP_SERVER, Layer.APPLICATION)


@dataclass(frozen=True)
class CauseInfo:
    """One cause. ``layer`` is None for a conclusion that is no place of failure (healthy,
    transient, unknown): such a cause is named when no layer has evidence."""

    layer: Layer | None
    title: str
    meaning: str
    next_steps: tuple[str, ...]

    @property
    def behind_proxy(self) -> bool:
        return self.layer in _BEHIND_THE_PROXY_LAYERS


CATALOGUE: dict[Cause, CauseInfo] = {
    Cause.HEALTHY: CauseInfo(
        None,
        "The site answers normally",
        "Every attempt, cache bypassed and with a second client, got a non-error answer.",
        (
            "If users still see errors, ask for the exact URL, time and their IP or region.",
            "Check whether the error is limited to one path, one edge location or one client.",
        ),
    ),
    Cause.TRANSIENT: CauseInfo(
        None,
        "Transient failure",
        "Errors were seen, but a retry succeeded: the failure comes and goes.",
        (
            "Look at the proxy's error log around the failing attempt for the upstream error.",
            "Check for deploys, restarts or autoscaling events at that time.",
            "Watch the site for a few minutes; re-run the diagnosis if errors return.",
        ),
    ),
    Cause.DNS_NXDOMAIN: CauseInfo(
        Layer.NAME,
        "The name does not exist (NXDOMAIN)",
        "The DNS says the host name does not exist, so no client can reach the site.",
        (
            "Check the spelling of the host name.",
            "Check that the record exists in the authoritative zone and that the domain has "
            "not expired (registrar, NS delegation).",
        ),
    ),
    Cause.DNS_FAILURE: CauseInfo(
        Layer.NAME,
        "DNS lookups fail",
        "Resolvers answer SERVFAIL or do not answer at all for the name.",
        (
            "Query the authoritative servers directly (dig +trace) to find the broken link.",
            "Check DNSSEC signatures and the NS delegation at the registrar.",
        ),
    ),
    Cause.DNS_MISMATCH: CauseInfo(
        Layer.ANSWER,
        "DNS points somewhere unexpected",
        "The name resolves to an address other than the one the site is expected at.",
        (
            "Compare the records with the intended addresses; fix the record if it is wrong.",
            "If a migration is under way, wait for the old TTL to run out.",
        ),
    ),
    Cause.DNS_INCONSISTENT: CauseInfo(
        Layer.ANSWER,
        "Resolvers disagree",
        "Different resolvers return different answers: a change is still propagating, or "
        "an authoritative server is out of sync.",
        (
            "Wait for the longest TTL seen to run out, or flush the resolvers you control.",
            "Check that every authoritative server serves the same zone serial.",
        ),
    ),
    Cause.UNREACHABLE: CauseInfo(
        Layer.EDGE,
        "Nothing accepts connections at the site's address",
        "TCP connections to the site's address are refused or fail: the proxy or load "
        "balancer itself is down or not listening on that port.",
        (
            "Check that the proxy/load balancer process is running and listening on the port.",
            "Check the address the DNS gives is the server you expect.",
        ),
    ),
    Cause.FIREWALL_DROP: CauseInfo(
        Layer.EDGE,
        "Packets are dropped on the way (firewall)",
        "TCP connection attempts time out with no answer: a firewall or security group is "
        "silently dropping the traffic.",
        (
            "Check firewall rules and security groups for the port on the path to the server.",
            "Compare from another network; a drop for some sources only is an allow-list.",
        ),
    ),
    Cause.TLS_ERROR: CauseInfo(
        Layer.EDGE,
        "The site's TLS is broken",
        "The TLS handshake with the site fails or its certificate is expired, for another "
        "name, or not trusted.",
        (
            "Renew or replace the certificate; check it covers the host name.",
            "Serve the full chain (leaf plus intermediates).",
        ),
    ),
    Cause.BLOCKED: CauseInfo(
        Layer.WAF,
        "Blocked by a WAF or CDN",
        "A web application firewall or CDN refuses the request (403 or a block page): a "
        "block, not a gateway failure.",
        (
            "Look up the block in the WAF/CDN console using the request ID.",
            "Check rate limits, bot rules and IP allow-lists.",
        ),
    ),
    Cause.UPSTREAM_REFUSED: CauseInfo(
        Layer.APP_SERVER,
        "The app server refuses connections",
        "The proxy cannot connect to its upstream: nothing is listening there (the app is "
        "down, crashed, or on another port).",
        (
            "Start or restart the application service and check why it stopped.",
            "Check the upstream address and port in the proxy configuration match the app's.",
        ),
    ),
    Cause.UPSTREAM_PERMISSION: CauseInfo(
        Layer.APP_SERVER,
        "The proxy may not connect to its app's socket",
        "The app is running, but the proxy's worker user is refused by the file permissions "
        "of the app's unix socket (connect() fails with 13: Permission denied).",
        (
            "Give the proxy's user access to the socket: in a php-fpm pool set listen.owner, "
            "listen.group (e.g. www-data) and listen.mode = 0660, then reload the pool.",
            "Check the directory holding the socket is searchable by the proxy's user.",
        ),
    ),
    Cause.UPSTREAM_TIMEOUT: CauseInfo(
        Layer.APP_SERVER,
        "The app server does not answer in time",
        "The proxy connected (or tried) but the upstream did not answer before the proxy's "
        "timeout.",
        (
            "Check the application for slow requests, locks, or a stuck worker pool.",
            "Check the network between proxy and upstream; compare the proxy's timeouts.",
        ),
    ),
    Cause.UPSTREAM_CLOSED: CauseInfo(
        Layer.APP_SERVER,
        "The app server closes the connection mid-response",
        "The upstream accepted the request but closed the connection before a complete "
        "response: typically a crash, an OOM kill or a keep-alive mismatch.",
        (
            "Check the application's logs and the kernel log (OOM killer) at that time.",
            "Make the upstream's keep-alive timeout longer than the proxy's.",
        ),
    ),
    Cause.UPSTREAM_INVALID: CauseInfo(
        Layer.APP_SERVER,
        "The app server sends an invalid response",
        "The upstream's answer is not valid HTTP (garbage, wrong protocol, bad headers).",
        (
            "Check the proxy points at an HTTP port (not a TLS, FastCGI or database port).",
            "Capture one upstream response directly and fix the headers it sends.",
        ),
    ),
    Cause.UPSTREAM_HEADER_TOO_BIG: CauseInfo(
        Layer.APP_SERVER,
        "The app server's response headers are too big",
        "The upstream sends headers larger than the proxy's buffer (often huge cookies).",
        (
            "Shrink the headers (cookies, debug headers) the application sends.",
            "Or raise the proxy's buffer (nginx proxy_buffer_size / fastcgi_buffer_size).",
        ),
    ),
    Cause.UPSTREAM_TLS: CauseInfo(
        Layer.APP_SERVER,
        "TLS between proxy and app server fails",
        "The proxy's TLS handshake with its upstream fails (certificate, protocol, SNI).",
        (
            "Check the upstream certificate and the proxy's proxy_ssl_* settings.",
            "Check the upstream actually speaks TLS on that port.",
        ),
    ),
    Cause.UPSTREAM_DNS: CauseInfo(
        Layer.APP_SERVER,
        "The proxy cannot resolve its upstream",
        "The proxy fails to resolve the upstream's host name.",
        (
            "Check the resolver the proxy uses and the upstream's DNS record.",
            "Check service discovery (the upstream may have been removed).",
        ),
    ),
    Cause.OVERLOAD: CauseInfo(
        Layer.APP_SERVER,
        "The app is overloaded",
        "The application has no capacity left: worker pools are full (php-fpm "
        "max_children, no live upstreams, queue full).",
        (
            "Raise the worker pool size if memory allows, or add instances.",
            "Find what is slow or what is flooding the site (traffic spike, bots).",
        ),
    ),
    Cause.APP_TIMEOUT: CauseInfo(
        Layer.APP_SERVER,
        "The app's own time limit kills requests",
        "The application runtime aborts requests that run too long (php-fpm "
        "request_terminate_timeout, max_execution_time, a worker timeout).",
        (
            "Find the slow request in the application logs and fix it.",
            "Align the application's time limit with the proxy's timeout.",
        ),
    ),
    Cause.SERVER_ERROR: CauseInfo(
        Layer.APPLICATION,
        "The application itself fails",
        "The error comes from the application (a 500 of its own), not from the gateway.",
        ("Look at the application's own error log and recent deploys.",),
    ),
    Cause.REGIONAL: CauseInfo(
        Layer.REACH,
        "It fails from some places only",
        "The site answers from some of the places the bot probes from and fails from others: "
        "the network path between those places and the site (a firewall allow-list, a "
        "routing problem), geo-DNS that sends them to another address, or a CDN location that "
        "serves them.",
        (
            "Compare what the failing places resolve and connect to with the working ones "
            "(the table in the DNS and firewall steps).",
            "Check firewall allow-lists and security groups for the failing places' source "
            "addresses, and geo-DNS or CDN routing for their region.",
            "Tell users in the failing regions; the site itself is up.",
        ),
    ),
    Cause.CLIENT_SIDE: CauseInfo(
        None,
        "It works from everywhere but where you are",
        "Every place the bot probes from reaches the site, and only the asker's side fails: "
        "the problem is on the way from the asker (their connection, VPN, proxy or DNS), not "
        "at the site.",
        (
            "Try the site with the VPN or proxy off, or from another network (a phone's data).",
            "Compare what your machine resolves (`dig NAME`, `nslookup NAME`) with the "
            "addresses in the DNS step; flush the local DNS cache.",
            "Check a local firewall, antivirus or corporate proxy that filters the site.",
        ),
    ),
    Cause.UNKNOWN: CauseInfo(
        None,
        "Cause not determined",
        "The site fails but the evidence gathered does not single out one cause.",
        (
            "Add the proxy's error log and the upstream addresses to the site's settings so "
            "the bot can see behind the proxy.",
            "Escalate to the hosting provider with the summary from the host step.",
        ),
    ),
}


def causes_in(*layers: Layer) -> tuple[tuple[Cause, ...], ...]:
    """The causes of each of ``layers``, one tuple per layer, in the table's order."""
    return tuple(
        tuple(cause for cause, info in CATALOGUE.items() if info.layer is layer) for layer in layers
    )


# The verdict's layers, outside in.
LAYERS: tuple[tuple[Cause, ...], ...] = causes_in(*Layer)
# The causes that lie behind the proxy, in the table's order.
BEHIND_THE_PROXY: tuple[Cause, ...] = tuple(
    cause for cause, info in CATALOGUE.items() if info.behind_proxy
)


def render_markdown() -> str:
    lines = [
        "# Causes",
        "",
        "Every verdict names exactly one of these causes. This file is generated from "
        "`checks/causes.py` (`python -m badgateway.checks.causes > docs/causes.md`).",
        "",
    ]
    for cause, info in CATALOGUE.items():
        lines += [f"## `{cause.value}` — {info.title}", "", info.meaning, "", "What to do:", ""]
        lines += [f"- {step}" for step in info.next_steps]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
