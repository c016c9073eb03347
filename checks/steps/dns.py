"""DNS: does the site's name resolve, to the right addresses, the same way everywhere?

The name is looked up (A and AAAA, following CNAMEs) through every configured resolver at
once — or, with none configured, through the nameservers in /etc/resolv.conf plus the C
library's getaddrinfo (which also reads the hosts file). Each lookup records the rcode,
the answers, the CNAME chain, the TTLs and how long it took, so the verdict can tell a
name that does not exist from resolvers that fail, resolvers that disagree, and a record
that points somewhere other than the site's ``expected_ips``. The TTLs say how long a
fix takes to reach every client.

The lookups themselves are checks.dns_client's; this module judges what they found. It runs
a little over 400 lines because the judgements are kept together: which finding hides which
reads in one place (``_analyse``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

from badgateway.checks import place_judgement, places
from badgateway.checks.context import ProbeContext
from badgateway.checks.dns_client import (
    Answer,
    ResolverDict,
    ResolverReport,
    Source,
    address_order,
    ask_getaddrinfo,
    ask_resolver,
    system_resolvers,
)
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.readable import duration_text, ms_text
from badgateway.checks.steps import Parts, Step

NAME = "dns"


def _said(report: ResolverReport, timeout_s: float) -> str:
    """What one resolver said, in a few words."""
    if report.status == Answer.OK:
        return ", ".join(report.addresses)
    return {
        Answer.NXDOMAIN: "NXDOMAIN (no such name)",
        Answer.NODATA: "no A/AAAA record (NOERROR, no data)",
        Answer.SERVFAIL: f"{report.rcode or 'a temporary failure'}",
        Answer.REFUSED: "REFUSED (it will not resolve this name for the bot)",
        Answer.TIMEOUT: f"no answer within {timeout_s:g} s",
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


@dataclass(frozen=True)
class _Answers:
    """What the resolvers said, sorted the way the judgements below read it."""

    host: str
    reports: list[ResolverReport]  # the DNS resolvers' (the C library's only without them)
    timeout_s: float

    @property
    def weight(self) -> Weight:
        # Only the C library answered: it hides the server's reply, so this is read, not seen.
        return Weight.OBSERVED if self.reports[0].source != Source.GETADDRINFO else Weight.INFERRED

    @property
    def answered(self) -> list[ResolverReport]:
        return [r for r in self.reports if r.answered]

    @property
    def failed(self) -> list[ResolverReport]:
        return [r for r in self.reports if not r.answered]

    @property
    def with_addresses(self) -> list[ResolverReport]:
        return [r for r in self.answered if r.status == Answer.OK]

    @property
    def without(self) -> list[ResolverReport]:
        """Resolvers that answered that there is no address (NXDOMAIN, no data)."""
        return [r for r in self.answered if r.status != Answer.OK]

    @property
    def ttl_max(self) -> int | None:
        return max((r.ttl_max for r in self.reports if r.ttl_max is not None), default=None)

    @property
    def negative_ttl(self) -> int | None:
        return max(
            (r.negative_ttl for r in self.reports if r.negative_ttl is not None), default=None
        )

    def per_resolver(self) -> dict[str, str]:
        return {r.resolver: _said(r, self.timeout_s) for r in self.reports}

    def listing(self, reports: list[ResolverReport]) -> str:
        return _listing(reports, self.timeout_s)


def _none_answered(said: _Answers) -> tuple[str, Finding]:
    """Every resolver failed: the name resolves nowhere."""
    finding = Finding(
        "dns_failure",
        f"no resolver could resolve {said.host}: {said.listing(said.failed)}",
        Status.FAIL,
        Cause.DNS_FAILURE,
        said.weight,
        {"resolvers": said.per_resolver()},
    )
    return f"{said.host} did not resolve: every resolver failed", finding


def _some_failed(said: _Answers) -> Finding:
    """Some resolvers fail while others answer: clients behind those fail too, but the name
    works elsewhere, so this alone does not explain a failing site."""
    failed = said.failed
    return Finding(
        "dns_partial_failure",
        f"{len(failed)} of {len(said.reports)} resolvers failed for {said.host} while the "
        f"others answered: {said.listing(failed)}",
        Status.WARN,
        Cause.DNS_FAILURE,
        Weight.HINT,
        {"resolvers": {r.resolver: _said(r, said.timeout_s) for r in failed}},
    )


def _no_address(said: _Answers) -> tuple[str, Finding]:
    """Every resolver that answered says there is no address: NXDOMAIN or no data."""
    host, without, negative_ttl = said.host, said.without, said.negative_ttl
    nxdomain = any(r.status == Answer.NXDOMAIN for r in without)
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
    detail = f"{what}: {said.listing(without)}{cached}"
    if len({r.status for r in without}) > 1:
        detail += " (the resolvers disagree between NXDOMAIN and no data)"
    finding = Finding(
        code,
        detail,
        Status.FAIL,
        Cause.DNS_NXDOMAIN,
        said.weight,
        {"resolvers": said.per_resolver(), "negative_ttl": negative_ttl},
    )
    return what, finding


def _existence_differs(said: _Answers) -> Finding:
    """The name resolves through some resolvers and not through others: a record just
    created or deleted (negative caching), or authoritative servers out of sync."""
    ttl_max, negative_ttl = said.ttl_max, said.negative_ttl
    return Finding(
        "dns_existence_differs",
        f"resolvers disagree whether {said.host} exists: {said.listing(said.answered)}"
        + _spread(max(filter(None, (ttl_max, negative_ttl)), default=None)),
        Status.WARN,
        Cause.DNS_INCONSISTENT,
        Weight.OBSERVED,
        {
            "resolvers": said.per_resolver(),
            "ttl_max": ttl_max,
            "negative_ttl": negative_ttl,
            "next_step": _compare_step(said.host),
        },
    )


def _answers_differ(said: _Answers) -> Finding | None:
    """Resolvers with addresses give different sets: disjoint sets are a DNS problem,
    overlapping subsets are how large round-robin pools answer."""
    with_addresses, ttl_max = said.with_addresses, said.ttl_max
    answer_sets = {frozenset(r.addresses) for r in with_addresses}
    if len(answer_sets) <= 1:
        return None
    shared = frozenset.intersection(*answer_sets)
    data: dict[str, Any] = {"resolvers": said.per_resolver(), "ttl_max": ttl_max}
    listing = said.listing(with_addresses) + _spread(ttl_max)
    if shared:
        # Not proof of a DNS problem, so no cause.
        return Finding(
            "dns_answers_differ",
            f"resolvers return different subsets of addresses for {said.host} (all "
            f"include {', '.join(sorted(shared, key=address_order))}): {listing}",
            Status.WARN,
            data=data,
        )
    return Finding(
        "dns_inconsistent",
        f"resolvers disagree about {said.host}: {listing}",
        Status.WARN,
        Cause.DNS_INCONSISTENT,
        Weight.OBSERVED,
        {**data, "next_step": _compare_step(said.host)},
    )


def _resolved(said: _Answers, findings: list[Finding]) -> tuple[str, list[Finding]]:
    """The summary of a name that resolves ("a → b → 192.0.2.1, TTL up to 300 s — …"), and
    an ok finding when nothing above was a problem."""
    with_addresses, ttl_max = said.with_addresses, said.ttl_max
    all_addresses = sorted({a for r in with_addresses for a in r.addresses}, key=address_order)
    chain = max((r.chain for r in with_addresses), key=len)
    shown = f"{_chain_text(chain)} → " if len(chain) > 1 else f"{said.host} → "
    ttl_text = f", TTL up to {duration_text(ttl_max)}" if ttl_max is not None else ""
    summary = f"{shown}{', '.join(all_addresses)}{ttl_text}"
    problems = [_PROBLEM_SHORT[f.code] for f in findings if f.code in _PROBLEM_SHORT]
    if problems:
        summary += " — " + ", ".join(dict.fromkeys(problems))
    if any(f.severity.rank >= Status.WARN.rank for f in findings):
        return summary, findings
    reports = said.reports
    agree = f"{len(reports)} resolvers agree" if len(reports) > 1 else f"via {reports[0].resolver}"
    ok = Finding(
        "dns_ok",
        f"{summary} ({agree})",
        data={"addresses": all_addresses, "ttl_max": ttl_max, "cname_chain": chain},
    )
    return summary, [*findings, ok]


def _analyse(
    host: str,
    reports: list[ResolverReport],
    expected_ips: tuple[str, ...],
    timeout_s: float,
) -> tuple[str, list[Finding]]:
    """Findings and a summary from what the resolvers said."""
    dns_reports = [r for r in reports if r.source != Source.GETADDRINFO] or reports
    said = _Answers(host, dns_reports, timeout_s)
    if not said.answered:
        summary, failure = _none_answered(said)
        return summary, [failure]
    findings: list[Finding] = [_some_failed(said)] if said.failed else []
    if not said.with_addresses:
        summary, missing = _no_address(said)
        return summary, [*findings, missing]
    if said.without:
        findings.append(_existence_differs(said))
    differ = _answers_differ(said)
    if differ is not None:
        findings.append(differ)
    if expected_ips:
        findings += _expected_findings(host, said.with_addresses, expected_ips, said.ttl_max)
    return _resolved(said, findings)


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
    places: NotRequired[list[places.PlaceRow]]  # one row per place, when run from several


async def run(ctx: ProbeContext) -> StepResult:
    host = ctx.target.host
    if ctx.target.is_ip:
        return StepResult(NAME, Status.SKIPPED, "no DNS: the target is an address")
    timeout_s = ctx.probe_timeout()
    asks = [ask_resolver(spec, Source.SETTINGS, host, timeout_s) for spec in ctx.settings.resolvers]
    if not asks:
        asks = [ask_resolver(ns, Source.RESOLV_CONF, host, timeout_s) for ns in system_resolvers()]
        asks.append(ask_getaddrinfo(host, timeout_s))
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
    libc = next((r for r in reports if r.source == Source.GETADDRINFO), None)
    dns_answers = {a for r in reports if r.source != Source.GETADDRINFO for a in r.addresses}
    if libc is None or not libc.addresses or set(libc.addresses) <= dns_answers:
        return []
    via_dns = ", ".join(sorted(dns_answers, key=address_order)) or "nothing"
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


async def run_part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """The lookups at one place, through that place's own resolvers."""
    return await places.run_at(ctx, place, NAME, run, connects=False)


def _place_differs(found: list[places.Outcome]) -> Finding | None:
    """Places whose resolvers answer other addresses than the others' (geo-DNS, or a
    resolver there that still serves an old answer): named, whatever else is judged."""
    split = place_judgement.answers_split(found)
    if split is None:
        return None
    sets = [set(o.addresses) for o in found if o.addresses]
    disjoint = any(not a & b for a in sets for b in sets)
    return Finding(
        "dns_differs_by_place",
        f"the places get different answers: {split}"
        + (" (geo-DNS on purpose, or a resolver there still serving an old answer)"),
        Status.WARN if disjoint else Status.OK,
        data={"answers": {o.place: o.addresses for o in found}},
    )


def assemble(
    ctx: ProbeContext, parts: Mapping[str, dict[str, Any]], missing: Mapping[str, str]
) -> StepResult:
    """One DNS result from every place's lookups: each resolver named with its place."""
    judged = place_judgement.judge(ctx, parts, missing, title="DNS")
    findings = list(judged.findings)
    differs = _place_differs(judged.found)
    if differs is not None:
        findings.insert(0, differs)
    resolvers: list[ResolverDict] = []
    chains: list[list[str]] = []
    ttls: list[int] = []
    timeouts: list[float] = []
    for outcome in judged.found:
        theirs = cast(DnsDetails, outcome.result.details)
        for report in theirs.get("resolvers") or []:
            named = f"{report.get('resolver', '?')} from {outcome.place}"
            resolvers.append(cast(ResolverDict, {**report, "resolver": named}))
        chains.append(list(theirs.get("cname_chain") or []))
        if theirs.get("ttl_max") is not None:
            ttls.append(int(theirs["ttl_max"] or 0))
        if theirs.get("timeout_s"):
            timeouts.append(float(theirs["timeout_s"]))
    details: DnsDetails = {
        "host": ctx.target.host,
        "resolvers": resolvers,
        "cname_chain": max(chains, key=len) if chains else [ctx.target.host],
        "ttl_max": max(ttls, default=None),
        "timeout_s": max(timeouts, default=ctx.settings.timeout_s),
        "places": judged.rows,
    }
    return StepResult.from_findings(NAME, judged.summary, findings, details=details)


def evidence(result: StepResult) -> list[str]:
    """The table of places (when run from several), then one line per resolver: what it
    answered, through which CNAMEs, the TTL, how fast."""
    lines = places.table_lines(result.details)
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


STEP = Step(
    name=NAME,
    order=20,
    title="DNS",
    run=run,
    parts=Parts(places=places.probe_places, run=run_part, assemble=assemble, queue=places.QUEUE),
    evidence=evidence,
)
