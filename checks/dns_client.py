"""A DNS client that says what each resolver said: rcode, answers, CNAME chain, TTLs, time.

dnspython's resolver hides what the diagnosis needs (which server said NXDOMAIN, how long a
negative answer is cached, where a CNAME chain leaves a server's zone), so the lookups here
ask one server at a time with dns.message and follow the chain themselves. The C library's
answer (getaddrinfo: the hosts file, then the DNS) is asked for beside them, as what this
machine's programs get. These are facts; the DNS step judges them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from badgateway.checks.clock import ms_since
from badgateway.checks.resolve import parse_resolver, system_addresses

RESOLV_CONF = "/etc/resolv.conf"  # the system's resolvers when none are configured
_MAX_CNAME_HOPS = 8  # more than this is a loop or a misconfiguration
_ADDRESS_TYPES = ("A", "AAAA")


class Answer(StrEnum):
    """What a lookup through one resolver came to, worst news last."""

    OK = "ok"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"


FAILED = (Answer.SERVFAIL, Answer.REFUSED, Answer.TIMEOUT, Answer.ERROR)


class Source(StrEnum):
    """Where a resolver asked comes from."""

    SETTINGS = "settings"  # the sites file's ``resolvers``
    RESOLV_CONF = "resolv.conf"  # none configured: this machine's nameservers
    GETADDRINFO = "getaddrinfo"  # the C library's lookup (hosts file + DNS); also its label


@dataclass
class Lookup:
    """One record type through one resolver."""

    status: Answer
    rcode: str | None = None
    addresses: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)  # the CNAMEs followed, from the name on
    records: list[dict[str, Any]] = field(default_factory=list)
    negative_ttl: int | None = None  # how long a "no such name/data" is cached
    error: str | None = None


class ResolverDict(TypedDict):
    """A ``ResolverReport`` as JSON (in the DNS step's details)."""

    resolver: str
    source: str
    status: str
    rcode: str | None
    addresses: list[str]
    cname_chain: list[str]
    records: list[dict[str, Any]]
    ttl_max: int | None
    negative_ttl: int | None
    elapsed_ms: int
    error: str | None


@dataclass
class ResolverReport:
    """Everything one resolver said about the name (A and AAAA together)."""

    resolver: str
    source: Source
    status: Answer
    rcode: str | None
    addresses: list[str]
    chain: list[str]
    records: list[dict[str, Any]]
    ttl_max: int | None
    negative_ttl: int | None
    elapsed_ms: int
    error: str | None

    @property
    def answered(self) -> bool:
        return self.status not in FAILED

    def to_dict(self) -> ResolverDict:
        return {
            "resolver": self.resolver,
            "source": self.source.value,
            "status": self.status.value,
            "rcode": self.rcode,
            "addresses": self.addresses,
            "cname_chain": self.chain,
            "records": self.records,
            "ttl_max": self.ttl_max,
            "negative_ttl": self.negative_ttl,
            "elapsed_ms": self.elapsed_ms,
            "error": self.error,
        }


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _negative_ttl(response: dns.message.Message) -> int | None:
    """RFC 2308: a negative answer is cached for min(SOA TTL, SOA minimum)."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return int(min(rrset.ttl, rrset[0].minimum))
    return None


async def _exchange(
    query: dns.message.Message, address: str, port: int, deadline: float
) -> dns.message.Message:
    """Send the query (UDP, TCP on truncation); one resend if the first goes unanswered,
    as stub resolvers do, all within the deadline."""
    for attempt in range(2):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        wait = left / 2 if attempt == 0 else left
        try:
            response, _tcp = await dns.asyncquery.udp_with_fallback(
                query, address, timeout=wait, port=port, ignore_unexpected=True
            )
            return response
        except dns.exception.Timeout:
            continue
    raise dns.exception.Timeout


async def _lookup(address: str, port: int, host: str, rdtype: str, deadline: float) -> Lookup:
    """Ask one server for ``rdtype`` of ``host``, following the CNAME chain; when the chain
    leaves what the server answered (an authoritative server, another zone), ask on."""
    wanted = dns.rdatatype.from_text(rdtype)
    name = dns.name.from_text(host)
    result = Lookup(status=Answer.OK, chain=[_text(name)])
    seen = {name}
    for _hop in range(_MAX_CNAME_HOPS):
        try:
            response = await _exchange(
                dns.message.make_query(name, wanted), address, port, deadline
            )
        except dns.exception.Timeout:
            return _failed(result, Answer.TIMEOUT, None, "no answer in time")
        except (OSError, ValueError, dns.exception.DNSException) as exc:
            return _failed(result, Answer.ERROR, None, f"{type(exc).__name__}: {exc}")
        rcode = response.rcode()
        result.rcode = dns.rcode.to_text(rcode)
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            status = Answer.REFUSED if rcode == dns.rcode.REFUSED else Answer.SERVFAIL
            return _failed(result, status, result.rcode, None)
        current = name
        while True:
            rrset = response.get_rrset(response.answer, current, dns.rdataclass.IN, wanted)
            if rrset is not None:
                result.addresses = sorted({r.to_text() for r in rrset})
                result.records += [
                    {"name": _text(current), "type": rdtype, "ttl": int(rrset.ttl), "value": a}
                    for a in result.addresses
                ]
                return result
            cname = response.get_rrset(
                response.answer, current, dns.rdataclass.IN, dns.rdatatype.CNAME
            )
            if cname is None or not len(cname):
                break
            target = cname[0].target
            result.records.append(
                {
                    "name": _text(current),
                    "type": "CNAME",
                    "ttl": int(cname.ttl),
                    "value": _text(target),
                }
            )
            if target in seen:
                return _failed(result, Answer.ERROR, result.rcode, f"CNAME loop at {_text(target)}")
            seen.add(target)
            result.chain.append(_text(target))
            current = target
        result.negative_ttl = _negative_ttl(response)
        if rcode == dns.rcode.NXDOMAIN:
            result.status = Answer.NXDOMAIN
            return result
        if current == name or result.negative_ttl is not None:
            result.status = Answer.NODATA  # the server vouches (SOA) that there is no such record
            return result
        name = current  # the chain leads out of what this server answered: ask for the rest
    return _failed(result, Answer.ERROR, result.rcode, f"CNAME chain longer than {_MAX_CNAME_HOPS}")


def _failed(result: Lookup, status: Answer, rcode: str | None, error: str | None) -> Lookup:
    result.status, result.rcode, result.error = status, rcode, error
    return result


def _combine(
    resolver: str, source: Source, lookups: list[Lookup], elapsed_ms: int
) -> ResolverReport:
    """A and AAAA into one verdict for the resolver: any address is an answer; otherwise
    NXDOMAIN (a statement about the name) outranks a failure of one type's lookup."""
    addresses = [a for lk in lookups for a in lk.addresses]
    statuses = [lk.status for lk in lookups]
    if addresses:
        status = Answer.OK
    elif Answer.NXDOMAIN in statuses:
        status = Answer.NXDOMAIN
    elif all(s == Answer.NODATA for s in statuses):
        status = Answer.NODATA
    else:
        status = next(s for s in (*FAILED, Answer.NODATA) if s in statuses)
    chosen = next((lk for lk in lookups if lk.status == status), lookups[0])
    records: list[dict[str, Any]] = []
    for lk in lookups:
        records += [r for r in lk.records if r not in records]
    chain = max((lk.chain for lk in lookups), key=len)
    ttls = [int(r["ttl"]) for r in records]
    negative = [lk.negative_ttl for lk in lookups if lk.negative_ttl is not None]
    errors = list(dict.fromkeys(lk.error or lk.rcode or lk.status for lk in lookups))
    return ResolverReport(
        resolver=resolver,
        source=source,
        status=status,
        rcode=chosen.rcode,
        addresses=sorted(set(addresses), key=address_order),
        chain=chain,
        records=records,
        ttl_max=max(ttls) if ttls else None,
        negative_ttl=max(negative) if negative else None,
        elapsed_ms=elapsed_ms,
        error="; ".join(errors) if status in FAILED else None,
    )


def address_order(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


async def ask_resolver(spec: str, source: Source, host: str, timeout_s: float) -> ResolverReport:
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        address, port = parse_resolver(spec)
        ipaddress.ip_address(address)
    except ValueError:
        failed = Lookup(status=Answer.ERROR, error=f"{spec!r} is not an IP address[:port]")
        return _combine(spec, source, [failed], 0)
    lookups = await asyncio.gather(
        *(_lookup(address, port, host, rdtype, deadline) for rdtype in _ADDRESS_TYPES)
    )
    return _combine(spec, source, list(lookups), ms_since(started))


async def ask_getaddrinfo(host: str, timeout_s: float) -> ResolverReport:
    """The C library's answer: what this machine's programs (and a default probe) get."""
    started = time.monotonic()
    lookup = Lookup(status=Answer.OK, chain=[host])
    try:
        lookup.addresses = sorted(await system_addresses(host, timeout_s), key=address_order)
        if not lookup.addresses:
            lookup.status = Answer.NODATA
    except TimeoutError:
        lookup.status, lookup.error = Answer.TIMEOUT, "no answer in time"
    except socket.gaierror as exc:
        lookup.error = exc.strerror
        if exc.errno == socket.EAI_NONAME:
            lookup.status = Answer.NXDOMAIN
        elif exc.errno == getattr(socket, "EAI_NODATA", None):
            lookup.status = Answer.NODATA
        elif exc.errno == socket.EAI_AGAIN:
            lookup.status = Answer.SERVFAIL  # "temporary failure in name resolution"
        else:
            lookup.status = Answer.ERROR
    return _combine(Source.GETADDRINFO.value, Source.GETADDRINFO, [lookup], ms_since(started))


def system_resolvers() -> list[str]:
    """The nameservers this machine uses, from resolv.conf (none if it is missing)."""
    resolver = dns.resolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(RESOLV_CONF)
    except (OSError, dns.resolver.NoResolverConfiguration):
        return []
    shown = (f"[{ns}]" if ":" in str(ns) else str(ns) for ns in resolver.nameservers)
    return [f"{ns}:{resolver.port}" if resolver.port != 53 else ns for ns in shown]
