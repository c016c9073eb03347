"""Name resolution shared by the steps: resolver specs and the one lookup a probe pins to."""

from __future__ import annotations

import asyncio
import socket
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.resolver

from badgateway.checks.guard import parse_ip


def parse_resolver(spec: str) -> tuple[str, int]:
    """'10.0.0.2', '127.0.0.1:5353', '[::1]:53' -> (address, port)."""
    text = spec.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
        return host, port
    if text.count(":") == 1:
        host, port_text = text.split(":")
        return host, int(port_text)
    return text, 53


def make_resolver(spec: str, timeout_s: float) -> dns.asyncresolver.Resolver:
    """A dnspython resolver that asks exactly one server, without reading resolv.conf."""
    address, port = parse_resolver(spec)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [address]
    resolver.port = port
    resolver.timeout = timeout_s
    resolver.lifetime = timeout_s
    resolver.retry_servfail = False
    return resolver


class ResolveKind(StrEnum):
    """Why a name did not resolve, most telling first: a statement about the name beats a
    failure to answer."""

    NXDOMAIN = "nxdomain"
    NOANSWER = "noanswer"  # the name exists but has no A or AAAA record
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"


class ResolveFailed(Exception):
    """The target's name did not resolve, and why (``kind``)."""

    def __init__(self, kind: ResolveKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


async def resolve_host(host: str, resolvers: tuple[str, ...], timeout_s: float) -> list[str]:
    """Addresses for ``host``: from the first configured resolver (in the configured order)
    that has some, else the system's resolver (getaddrinfo, which also reads /etc/hosts).
    IPv4 first.

    All configured resolvers are asked at once, so a dead first resolver costs one timeout,
    not one per resolver. One resolver's NXDOMAIN does not end the search: when resolvers
    disagree whether the name exists, the site exists for some clients and is worth probing
    (the DNS step reports the disagreement).
    """
    if parse_ip(host) is not None:
        return [str(parse_ip(host))]
    if not resolvers:
        return await _system_lookup(host, timeout_s)
    tasks = [asyncio.create_task(_dns_outcome(host, spec, timeout_s)) for spec in resolvers]
    failures: list[ResolveFailed] = []
    try:
        for task in tasks:
            outcome = await task
            if not isinstance(outcome, ResolveFailed):
                return outcome
            failures.append(outcome)
    finally:
        for task in tasks:
            task.cancel()
    # No resolver had an address: a statement about the name beats a failure to answer.
    for kind in ResolveKind:
        for failure in failures:
            if failure.kind == kind:
                raise failure
    raise failures[0]


async def _dns_outcome(host: str, spec: str, timeout_s: float) -> list[str] | ResolveFailed:
    # Returned, not raised: the tasks of resolvers not waited for are dropped unread.
    try:
        return await _dns_lookup(host, spec, timeout_s)
    except ResolveFailed as exc:
        return exc


async def _dns_lookup(host: str, spec: str, timeout_s: float) -> list[str]:
    resolver = make_resolver(spec, timeout_s)
    outcomes = await asyncio.gather(*(_lookup_type(resolver, spec, host, t) for t in ("A", "AAAA")))
    found = [address for addresses, _ in outcomes for address in addresses]
    errors = [error for _, error in outcomes if error is not None]
    if found:
        return found
    for error in errors:
        if error.kind is ResolveKind.NXDOMAIN:
            raise error
    if errors:
        raise errors[0]
    raise ResolveFailed(ResolveKind.NOANSWER, f"{host} has no A or AAAA record")


async def _lookup_type(
    resolver: dns.asyncresolver.Resolver, spec: str, host: str, rdtype: str
) -> tuple[list[str], ResolveFailed | None]:
    """One record type: its addresses, or why there are none (None for 'no such record')."""
    try:
        answer = await resolver.resolve(host, rdtype)
    except dns.resolver.NXDOMAIN:
        return [], ResolveFailed(ResolveKind.NXDOMAIN, f"{host} does not exist (NXDOMAIN)")
    except dns.resolver.NoAnswer:
        return [], None
    except dns.resolver.NoNameservers:
        return [], ResolveFailed(ResolveKind.SERVFAIL, f"{spec} failed to answer for {host}")
    except dns.exception.Timeout:
        return [], ResolveFailed(ResolveKind.TIMEOUT, f"{spec} did not answer for {host} in time")
    except (OSError, ValueError, dns.exception.DNSException) as exc:
        return [], ResolveFailed(
            ResolveKind.SERVFAIL, f"{spec} could not be asked about {host}: {exc}"
        )
    return [r.to_text() for r in answer], None


async def system_addresses(host: str, timeout_s: float, port: int | None = None) -> list[str]:
    """The C library's addresses for ``host`` (getaddrinfo: the hosts file, then the DNS),
    IPv4 and IPv6, each once, in its order. Raises TimeoutError or socket.gaierror."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for family, *_rest, sockaddr in infos:
        address = str(sockaddr[0])
        if family in (socket.AF_INET, socket.AF_INET6) and address not in found:
            found.append(address)
    return found


async def _system_lookup(host: str, timeout_s: float) -> list[str]:
    try:
        addresses = await system_addresses(host, timeout_s)
    except TimeoutError:
        raise ResolveFailed(
            ResolveKind.TIMEOUT, f"the system resolver did not answer for {host}"
        ) from None
    except socket.gaierror as exc:
        nxdomain = exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA)
        kind = ResolveKind.NXDOMAIN if nxdomain else ResolveKind.SERVFAIL
        raise ResolveFailed(kind, f"{host} did not resolve: {exc.strerror}") from None
    addresses.sort(key=lambda a: ":" in a)
    return addresses
