"""DNS: does the site's name resolve, to the right addresses, the same way everywhere?

The name is looked up (A and AAAA, following CNAMEs) through every configured resolver at
once — or, with none configured, through the nameservers in /etc/resolv.conf plus the C
library's getaddrinfo (which also reads the hosts file). Each lookup records the rcode,
the answers, the CNAME chain, the TTLs and how long it took, so the verdict can tell a
name that does not exist from resolvers that fail, resolvers that disagree, and a record
that points somewhere other than the site's ``expected_ips``. The TTLs say how long a
fix takes to reach every client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from checks.context import ProbeContext
from checks.model import Cause, Finding, Status, StepResult, Weight
from checks.readable import duration_text, ms_text
from checks.resolve import parse_resolver
from checks.steps import Step

NAME = "dns"
RESOLV_CONF = "/etc/resolv.conf"  # the system's resolvers when none are configured
GETADDRINFO = "getaddrinfo"  # the label of the C library's lookup (hosts file + DNS)
_MAX_CNAME_HOPS = 8  # more than this is a loop or a misconfiguration
_ADDRESS_TYPES = ("A", "AAAA")

# What a lookup through one resolver came to, worst news last.
OK, NODATA, NXDOMAIN, SERVFAIL, REFUSED, TIMEOUT, ERROR = (
    "ok",
    "nodata",
    "nxdomain",
    "servfail",
    "refused",
    "timeout",
    "error",
)
_FAILED = (SERVFAIL, REFUSED, TIMEOUT, ERROR)


@dataclass
class Lookup:
    """One record type through one resolver."""

    status: str
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
    source: str  # "settings", "resolv.conf" or "getaddrinfo"
    status: str
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
        return self.status not in _FAILED

    def to_dict(self) -> ResolverDict:
        return {
            "resolver": self.resolver,
            "source": self.source,
            "status": self.status,
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
    result = Lookup(status=OK, chain=[_text(name)])
    seen = {name}
    for _hop in range(_MAX_CNAME_HOPS):
        try:
            response = await _exchange(
                dns.message.make_query(name, wanted), address, port, deadline
            )
        except dns.exception.Timeout:
            return _failed(result, TIMEOUT, None, "no answer in time")
        except (OSError, ValueError, dns.exception.DNSException) as exc:
            return _failed(result, ERROR, None, f"{type(exc).__name__}: {exc}")
        rcode = response.rcode()
        result.rcode = dns.rcode.to_text(rcode)
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            status = REFUSED if rcode == dns.rcode.REFUSED else SERVFAIL
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
                return _failed(result, ERROR, result.rcode, f"CNAME loop at {_text(target)}")
            seen.add(target)
            result.chain.append(_text(target))
            current = target
        result.negative_ttl = _negative_ttl(response)
        if rcode == dns.rcode.NXDOMAIN:
            result.status = NXDOMAIN
            return result
        if current == name or result.negative_ttl is not None:
            result.status = NODATA  # the server vouches (SOA) that there is no such record
            return result
        name = current  # the chain leads out of what this server answered: ask for the rest
    return _failed(result, ERROR, result.rcode, f"CNAME chain longer than {_MAX_CNAME_HOPS}")


def _failed(result: Lookup, status: str, rcode: str | None, error: str | None) -> Lookup:
    result.status, result.rcode, result.error = status, rcode, error
    return result


def _combine(resolver: str, source: str, lookups: list[Lookup], elapsed_ms: int) -> ResolverReport:
    """A and AAAA into one verdict for the resolver: any address is an answer; otherwise
    NXDOMAIN (a statement about the name) outranks a failure of one type's lookup."""
    addresses = [a for lk in lookups for a in lk.addresses]
    statuses = [lk.status for lk in lookups]
    if addresses:
        status = OK
    elif NXDOMAIN in statuses:
        status = NXDOMAIN
    elif all(s == NODATA for s in statuses):
        status = NODATA
    else:
        status = next(s for s in (*_FAILED, NODATA) if s in statuses)
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
        addresses=sorted(set(addresses), key=_address_order),
        chain=chain,
        records=records,
        ttl_max=max(ttls) if ttls else None,
        negative_ttl=max(negative) if negative else None,
        elapsed_ms=elapsed_ms,
        error="; ".join(errors) if status in _FAILED else None,
    )


def _address_order(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


async def _ask_resolver(spec: str, source: str, host: str, timeout_s: float) -> ResolverReport:
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        address, port = parse_resolver(spec)
        ipaddress.ip_address(address)
    except ValueError:
        failed = Lookup(status=ERROR, error=f"{spec!r} is not an IP address[:port]")
        return _combine(spec, source, [failed], 0)
    lookups = await asyncio.gather(
        *(_lookup(address, port, host, rdtype, deadline) for rdtype in _ADDRESS_TYPES)
    )
    return _combine(spec, source, list(lookups), _ms_since(started))


async def _ask_getaddrinfo(host: str, timeout_s: float) -> ResolverReport:
    """The C library's answer: what this machine's programs (and a default probe) get."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    lookup = Lookup(status=OK, chain=[host])
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s
        )
        addresses = {str(info[4][0]) for info in infos if info[0] in _INET_FAMILIES}
        lookup.addresses = sorted(addresses, key=_address_order)
        if not addresses:
            lookup.status = NODATA
    except TimeoutError:
        lookup.status, lookup.error = TIMEOUT, "no answer in time"
    except socket.gaierror as exc:
        lookup.error = exc.strerror
        if exc.errno == socket.EAI_NONAME:
            lookup.status = NXDOMAIN
        elif exc.errno == getattr(socket, "EAI_NODATA", None):
            lookup.status = NODATA
        elif exc.errno == socket.EAI_AGAIN:
            lookup.status = SERVFAIL  # "temporary failure in name resolution"
        else:
            lookup.status = ERROR
    return _combine(GETADDRINFO, GETADDRINFO, [lookup], _ms_since(started))


_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _system_resolvers() -> list[str]:
    """The nameservers this machine uses, from resolv.conf (none if it is missing)."""
    resolver = dns.resolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(RESOLV_CONF)
    except (OSError, dns.resolver.NoResolverConfiguration):
        return []
    shown = (f"[{ns}]" if ":" in str(ns) else str(ns) for ns in resolver.nameservers)
    return [f"{ns}:{resolver.port}" if resolver.port != 53 else ns for ns in shown]


def _said(report: ResolverReport, timeout_s: float) -> str:
    """What one resolver said, in a few words."""
    if report.status == OK:
        return ", ".join(report.addresses)
    return {
        NXDOMAIN: "NXDOMAIN (no such name)",
        NODATA: "no A/AAAA record (NOERROR, no data)",
        SERVFAIL: f"{report.rcode or 'a temporary failure'}",
        REFUSED: "REFUSED (it will not resolve this name for the bot)",
        TIMEOUT: f"no answer within {timeout_s:g} s",
    }.get(report.status, f"error: {report.error}")


def _listing(reports: list[ResolverReport], timeout_s: float) -> str:
    return "; ".join(f"{r.resolver}: {_said(r, timeout_s)}" for r in reports)


def _chain_text(chain: list[str]) -> str:
    return " → ".join(chain)


def _spread(ttl: int | None) -> str:
    if ttl is None:
        return ""
    return f"; the longest TTL seen is {duration_text(ttl)}: a change spreads within that"


_PROBLEM_SHORT = {
    "dns_mismatch": "not the expected address",
    "dns_not_yet_everywhere": "the expected address has not reached every resolver",
    "dns_unexpected_address": "includes unexpected addresses",
    "dns_inconsistent": "resolvers disagree",
    "dns_existence_differs": "resolvers disagree whether it exists",
    "dns_answers_differ": "resolvers return different subsets",
    "dns_partial_failure": "some resolvers fail",
}


def _compare_step(host: str) -> str:
    return (
        f"Ask each authoritative server of {host} directly (dig @server {host}) and compare "
        "the answers and zone serials"
    )


def _analyse(
    host: str,
    reports: list[ResolverReport],
    expected_ips: tuple[str, ...],
    timeout_s: float,
) -> tuple[str, list[Finding]]:
    """Findings and a summary from what the resolvers said."""
    dns_reports = [r for r in reports if r.source != GETADDRINFO] or reports
    # Only the C library answered: it hides the server's reply, so this is read, not seen.
    weight = Weight.OBSERVED if dns_reports[0].source != GETADDRINFO else Weight.INFERRED
    answered = [r for r in dns_reports if r.answered]
    failed = [r for r in dns_reports if not r.answered]
    with_addresses = [r for r in answered if r.status == OK]
    without = [r for r in answered if r.status != OK]
    ttl_max = max((r.ttl_max for r in dns_reports if r.ttl_max is not None), default=None)
    negative_ttl = max(
        (r.negative_ttl for r in dns_reports if r.negative_ttl is not None), default=None
    )
    findings: list[Finding] = []
    per_resolver = {r.resolver: _said(r, timeout_s) for r in dns_reports}

    if not answered:
        findings.append(
            Finding(
                "dns_failure",
                f"no resolver could resolve {host}: {_listing(failed, timeout_s)}",
                Status.FAIL,
                Cause.DNS_FAILURE,
                weight,
                {"resolvers": per_resolver},
            )
        )
        return f"{host} did not resolve: every resolver failed", findings

    if failed:
        # Some resolvers fail while others answer: clients behind those fail too, but the
        # name works elsewhere, so this alone does not explain a failing site.
        findings.append(
            Finding(
                "dns_partial_failure",
                f"{len(failed)} of {len(dns_reports)} resolvers failed for {host} while the "
                f"others answered: {_listing(failed, timeout_s)}",
                Status.WARN,
                Cause.DNS_FAILURE,
                Weight.HINT,
                {"resolvers": {r.resolver: _said(r, timeout_s) for r in failed}},
            )
        )

    if not with_addresses:
        nxdomain = any(r.status == NXDOMAIN for r in without)
        cached = (
            f"; resolvers cache this answer for up to {duration_text(negative_ttl)}"
            if negative_ttl is not None
            else ""
        )
        chain = max((r.chain for r in without), key=len)
        via = f" (via {_chain_text(chain)})" if len(chain) > 1 else ""
        if nxdomain:
            code, what = "dns_nxdomain", f"{host}{via} does not exist (NXDOMAIN)"
        else:
            code, what = "dns_no_address", f"{host}{via} exists but has no A or AAAA record"
        detail = f"{what}: {_listing(without, timeout_s)}{cached}"
        if len({r.status for r in without}) > 1:
            detail += " (the resolvers disagree between NXDOMAIN and no data)"
        findings.append(
            Finding(
                code,
                detail,
                Status.FAIL,
                Cause.DNS_NXDOMAIN,
                weight,
                {"resolvers": per_resolver, "negative_ttl": negative_ttl},
            )
        )
        return what, findings

    if without:
        # The name resolves through some resolvers and not through others: a record just
        # created or deleted (negative caching), or authoritative servers out of sync.
        findings.append(
            Finding(
                "dns_existence_differs",
                f"resolvers disagree whether {host} exists: {_listing(answered, timeout_s)}"
                + _spread(max(filter(None, (ttl_max, negative_ttl)), default=None)),
                Status.WARN,
                Cause.DNS_INCONSISTENT,
                Weight.OBSERVED,
                {
                    "resolvers": per_resolver,
                    "ttl_max": ttl_max,
                    "negative_ttl": negative_ttl,
                    "next_step": _compare_step(host),
                },
            )
        )

    answer_sets = {frozenset(r.addresses) for r in with_addresses}
    if len(answer_sets) > 1:
        shared = frozenset.intersection(*answer_sets)
        data: dict[str, Any] = {"resolvers": per_resolver, "ttl_max": ttl_max}
        listing = _listing(with_addresses, timeout_s) + _spread(ttl_max)
        if shared:
            # Overlapping subsets are how large round-robin pools answer; not proof of a
            # DNS problem, so no cause.
            findings.append(
                Finding(
                    "dns_answers_differ",
                    f"resolvers return different subsets of addresses for {host} (all "
                    f"include {', '.join(sorted(shared, key=_address_order))}): {listing}",
                    Status.WARN,
                    data=data,
                )
            )
        else:
            findings.append(
                Finding(
                    "dns_inconsistent",
                    f"resolvers disagree about {host}: {listing}",
                    Status.WARN,
                    Cause.DNS_INCONSISTENT,
                    Weight.OBSERVED,
                    {**data, "next_step": _compare_step(host)},
                )
            )

    if expected_ips:
        findings += _expected_findings(host, with_addresses, expected_ips, ttl_max)

    all_addresses = sorted({a for r in with_addresses for a in r.addresses}, key=_address_order)
    chain = max((r.chain for r in with_addresses), key=len)
    shown = f"{_chain_text(chain)} → " if len(chain) > 1 else f"{host} → "
    ttl_text = f", TTL up to {duration_text(ttl_max)}" if ttl_max is not None else ""
    summary = f"{shown}{', '.join(all_addresses)}{ttl_text}"
    problems = [_PROBLEM_SHORT[f.code] for f in findings if f.code in _PROBLEM_SHORT]
    if problems:
        summary += " — " + ", ".join(dict.fromkeys(problems))
    if not any(f.severity.rank >= Status.WARN.rank for f in findings):
        agree = (
            f"{len(dns_reports)} resolvers agree"
            if len(dns_reports) > 1
            else f"via {dns_reports[0].resolver}"
        )
        findings.append(
            Finding(
                "dns_ok",
                f"{summary} ({agree})",
                data={"addresses": all_addresses, "ttl_max": ttl_max, "cname_chain": chain},
            )
        )
    return summary, findings


def _expected_findings(
    host: str, reports: list[ResolverReport], expected_ips: tuple[str, ...], ttl_max: int | None
) -> list[Finding]:
    """Compare with the site's expected addresses, per IP version listed there (a site that
    lists only IPv4 addresses says nothing about its AAAA records)."""
    expected = {ipaddress.ip_address(ip) for ip in expected_ips}
    versions = {ip.version for ip in expected}
    findings: list[Finding] = []
    wrong: dict[str, list[str]] = {}  # resolver -> answers, none of them expected
    extra: dict[str, list[str]] = {}  # resolver -> unexpected answers beside expected ones
    right: list[str] = []  # resolvers that give an expected address
    for report in reports:
        got = {ipaddress.ip_address(a) for a in report.addresses}
        judged = {ip for ip in got if ip.version in versions}
        if not judged:
            continue
        unexpected = sorted(str(ip) for ip in judged - expected)
        if not judged & expected:
            wrong[report.resolver] = [str(ip) for ip in sorted(judged, key=int)]
            continue
        right.append(report.resolver)
        if unexpected:
            extra[report.resolver] = unexpected
    shown_expected = ", ".join(expected_ips)
    data = {"expected_ips": list(expected_ips), "ttl_max": ttl_max}
    if wrong and right:
        # Some resolvers already give the expected address: the record is right and the
        # others still serve an old answer (a change propagating), not a wrong record.
        answers = "; ".join(f"{r}: {', '.join(a)}" for r, a in wrong.items())
        findings.append(
            Finding(
                "dns_not_yet_everywhere",
                f"{', '.join(right)} give{'s' * (len(right) == 1)} the expected "
                f"{shown_expected} for {host}, while others still give another address "
                f"({answers}): a change that has not reached every resolver yet" + _spread(ttl_max),
                Status.FAIL,
                Cause.DNS_INCONSISTENT,
                Weight.OBSERVED,
                {**data, "answers": wrong, "next_step": _compare_step(host)},
            )
        )
    elif wrong:
        answers = "; ".join(f"{r}: {', '.join(a)}" for r, a in wrong.items())
        findings.append(
            Finding(
                "dns_mismatch",
                f"{host} resolves to an address the site is not expected at (expected "
                f"{shown_expected}): {answers}" + _spread(ttl_max),
                Status.FAIL,
                Cause.DNS_MISMATCH,
                Weight.OBSERVED,
                {
                    **data,
                    "answers": wrong,
                    "next_step": f"Point the DNS records of {host} at {shown_expected}, "
                    f"or update the site's expected_ips",
                },
            )
        )
    if extra:
        answers = "; ".join(f"{r}: {', '.join(a)}" for r, a in extra.items())
        findings.append(
            Finding(
                "dns_unexpected_address",
                f"{host} also resolves to addresses the site is not expected at (expected "
                f"{shown_expected}): {answers}; some clients go there",
                Status.WARN,
                Cause.DNS_MISMATCH,
                Weight.OBSERVED,
                {**data, "answers": extra},
            )
        )
    return findings


class DnsDetails(TypedDict):
    host: str
    resolvers: list[ResolverDict]  # what each resolver said
    cname_chain: list[str]  # the longest chain any resolver followed, from the name on
    ttl_max: int | None
    timeout_s: float


async def run(ctx: ProbeContext) -> StepResult:
    host = ctx.target.host
    if ctx.target.is_ip:
        return StepResult(NAME, Status.SKIPPED, "no DNS: the target is an address")
    timeout_s = ctx.probe_timeout()
    asks = [_ask_resolver(spec, "settings", host, timeout_s) for spec in ctx.settings.resolvers]
    if not asks:
        asks = [_ask_resolver(ns, "resolv.conf", host, timeout_s) for ns in _system_resolvers()]
        asks.append(_ask_getaddrinfo(host, timeout_s))
    reports = list(await asyncio.gather(*asks))
    expected = ctx.target.site.expected_ips if ctx.target.site else ()
    summary, findings = _analyse(host, reports, expected, timeout_s)
    findings += _hosts_file_findings(host, reports)
    ttl_max = max((r.ttl_max for r in reports if r.ttl_max is not None), default=None)
    chains = [r.chain for r in reports if len(r.chain) > 1]
    details: DnsDetails = {
        "host": host,
        "resolvers": [r.to_dict() for r in reports],
        "cname_chain": max(chains, key=len) if chains else [host],
        "ttl_max": ttl_max,
        "timeout_s": timeout_s,
    }
    return StepResult.from_findings(NAME, summary, findings, details=details)


def _hosts_file_findings(host: str, reports: list[ResolverReport]) -> list[Finding]:
    """getaddrinfo answering other than the DNS means this machine's hosts file (or NSS)
    overrides the name: the bot then probes addresses the site's users never see."""
    libc = next((r for r in reports if r.source == GETADDRINFO), None)
    dns_answers = {a for r in reports if r.source != GETADDRINFO for a in r.addresses}
    if libc is None or not libc.addresses or set(libc.addresses) <= dns_answers:
        return []
    via_dns = ", ".join(sorted(dns_answers, key=_address_order)) or "nothing"
    return [
        Finding(
            "dns_local_override",
            f"this machine resolves {host} to {', '.join(libc.addresses)} (hosts file or "
            f"local resolver), but the DNS says {via_dns}: the bot's probes may not reach "
            "what users reach",
            Status.WARN,
            data={"getaddrinfo": libc.addresses, "dns": sorted(dns_answers)},
        )
    ]


def evidence(result: StepResult) -> list[str]:
    """One line per resolver: what it answered, through which CNAMEs, the TTL, how fast."""
    lines = []
    for r in cast(DnsDetails, result.details).get("resolvers") or []:
        answer = ", ".join(r.get("addresses") or []) or (r.get("error") or r.get("status", "?"))
        chain = r.get("cname_chain") or []
        via = f" via {' → '.join(chain)}" if chain else ""
        ttl = f" · TTL {r['ttl_max']} s" if r.get("ttl_max") is not None else ""
        lines.append(
            f"{r.get('resolver', '?')}: {r.get('status', '?')} → {answer}{via}{ttl} "
            f"({ms_text(r.get('elapsed_ms'))})"
        )
    return lines


STEP = Step(name=NAME, order=20, title="DNS", run=run, evidence=evidence)
