"""Name resolution shared by the steps: resolver specs and the one lookup a probe pins to."""

from __future__ import annotations

import asyncio
import socket

import dns.asyncresolver
import dns.exception
import dns.resolver

from checks.guard import parse_ip


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


class ResolveFailed(Exception):
    """The target's name did not resolve; ``kind`` is nxdomain, servfail, timeout or noanswer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


async def resolve_host(host: str, resolvers: tuple[str, ...], timeout_s: float) -> list[str]:
    """Addresses for ``host``: through the first configured resolver that answers, else the
    system's resolver (getaddrinfo, which also reads /etc/hosts). IPv4 first."""
    if parse_ip(host) is not None:
        return [str(parse_ip(host))]
    if not resolvers:
        return await _system_lookup(host, timeout_s)
    last: ResolveFailed | None = None
    for spec in resolvers:
        try:
            return await _dns_lookup(host, spec, timeout_s)
        except ResolveFailed as exc:
            if exc.kind == "nxdomain":
                raise
            last = exc
    assert last is not None
    raise last


async def _dns_lookup(host: str, spec: str, timeout_s: float) -> list[str]:
    resolver = make_resolver(spec, timeout_s)
    found: list[str] = []
    errors: list[ResolveFailed] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype)
            found.extend(r.to_text() for r in answer)
        except dns.resolver.NXDOMAIN:
            raise ResolveFailed("nxdomain", f"{host} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            continue
        except dns.resolver.NoNameservers:
            errors.append(ResolveFailed("servfail", f"{spec} failed to answer for {host}"))
        except dns.exception.Timeout:
            errors.append(ResolveFailed("timeout", f"{spec} did not answer for {host} in time"))
    if found:
        return found
    if errors:
        raise errors[0]
    raise ResolveFailed("noanswer", f"{host} has no A or AAAA record")


async def _system_lookup(host: str, timeout_s: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s
        )
    except TimeoutError:
        raise ResolveFailed("timeout", f"the system resolver did not answer for {host}") from None
    except socket.gaierror as exc:
        kind = "nxdomain" if exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA) else "servfail"
        raise ResolveFailed(kind, f"{host} did not resolve: {exc.strerror}") from None
    addresses: list[str] = []
    for family, *_rest, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in addresses and family in (socket.AF_INET, socket.AF_INET6):
            addresses.append(addr)
    addresses.sort(key=lambda a: ":" in a)
    return addresses
