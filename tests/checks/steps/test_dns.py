"""The dns step against real BIND servers (tests.lab.fixtures_dns): what each resolver said,
and the findings the verdict rests on. Also the lookup the runner pins probes to."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest

from badgateway.checks import dns_client
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.readable import duration_text
from badgateway.checks.resolve import ResolveFailed, resolve_host
from badgateway.checks.settings import Settings, Site
from badgateway.checks.steps import dns as dns_step
from badgateway.checks.steps import step_named
from badgateway.checks.target import parse_target
from tests.lab import fixtures_dns as lab_names
from tests.lab.fixtures_dns import DnsLab

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


async def run_dns(
    host: str, resolvers: tuple[str, ...], *, timeout_s: float = 2.0, site: Site | None = None
) -> StepResult:
    settings = Settings(
        resolvers=resolvers,
        allow_networks=LOOPBACK,
        timeout_s=timeout_s,
        sites=(site,) if site else (),
    )
    target = parse_target(site.name if site else host, settings)
    return await dns_step.run(ProbeContext(target=target, settings=settings))


def only(result: StepResult, code: str) -> Finding:
    matching = [f for f in result.findings if f.code == code]
    assert len(matching) == 1, [f.code for f in result.findings]
    return matching[0]


def per_resolver(result: StepResult) -> dict[str, dict[str, Any]]:
    return {r["resolver"]: r for r in result.details["resolvers"]}


def test_the_step_is_registered() -> None:
    step = step_named("dns")
    assert step is not None and step.order == 20 and step.title == "DNS"


async def test_resolvers_that_agree(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.www, (dns_lab.primary, dns_lab.secondary))
    assert result.status is Status.OK
    ok = only(result, "dns_ok")
    assert ok.cause is None and "2 resolvers agree" in ok.message
    for entry in per_resolver(result).values():
        assert entry["status"] == "ok" and entry["rcode"] == "NOERROR"
        assert entry["addresses"] == [lab_names.WWW_IP]
        assert entry["elapsed_ms"] < 2000
    assert result.details["ttl_max"] == 300
    assert lab_names.WWW_IP in result.summary


async def test_a_and_aaaa_are_both_asked(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.dual, (dns_lab.primary,))
    assert per_resolver(result)[dns_lab.primary]["addresses"] == [
        lab_names.WWW_IP,
        lab_names.DUAL_IPV6,
    ]


async def test_cname_chain_is_followed_and_its_ttls_reported(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.cname_head, (dns_lab.primary, dns_lab.secondary))
    assert result.status is Status.OK
    assert result.details["cname_chain"] == list(lab_names.CNAME_CHAIN)
    entry = per_resolver(result)[dns_lab.primary]
    assert entry["addresses"] == [lab_names.CNAME_TARGET_IP]
    ttls = {(r["name"], r["type"]): r["ttl"] for r in entry["records"]}
    assert ttls == {("a.test", "CNAME"): 60, ("b.test", "CNAME"): 120, ("c.test", "A"): 30}
    assert result.details["ttl_max"] == 120  # the slowest link decides when a change is seen
    assert "a.test → b.test → c.test → 127.0.0.11" in result.summary


@pytest.mark.parametrize(("name", "ttl", "shown"), [("short", 5, "5 s"), ("long", 86400, "24 h")])
async def test_ttl_reporting(dns_lab: DnsLab, name: str, ttl: int, shown: str) -> None:
    host = dns_lab.short_ttl if name == "short" else dns_lab.long_ttl
    result = await run_dns(host, (dns_lab.primary,))
    assert result.details["ttl_max"] == ttl
    assert shown in result.summary


async def test_nxdomain(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.missing, (dns_lab.primary, dns_lab.secondary))
    assert result.status is Status.FAIL
    finding = only(result, "dns_nxdomain")
    assert finding.cause is Cause.DNS_NXDOMAIN and finding.weight is Weight.OBSERVED
    assert finding.data["negative_ttl"] == 60  # the SOA minimum: how long the NXDOMAIN sticks
    assert {e["rcode"] for e in per_resolver(result).values()} == {"NXDOMAIN"}


async def test_a_name_without_addresses(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.noaddr, (dns_lab.primary,))
    finding = only(result, "dns_no_address")
    assert finding.severity is Status.FAIL and finding.cause is Cause.DNS_NXDOMAIN
    assert per_resolver(result)[dns_lab.primary]["status"] == "nodata"


async def test_servfail_from_every_resolver(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.servfail, (dns_lab.primary, dns_lab.secondary))
    assert result.status is Status.FAIL
    finding = only(result, "dns_failure")
    assert finding.cause is Cause.DNS_FAILURE and finding.weight is Weight.OBSERVED
    assert "SERVFAIL" in finding.message
    assert {e["status"] for e in per_resolver(result).values()} == {"servfail"}


async def test_a_dead_resolver_times_out_within_the_probe_timeout(dns_lab: DnsLab) -> None:
    started = time.monotonic()
    result = await run_dns(dns_lab.www, (dns_lab.dead, dns_lab.primary), timeout_s=0.6)
    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 1.5
    entries = per_resolver(result)
    assert entries[dns_lab.dead]["status"] == "timeout"
    assert entries[dns_lab.primary]["status"] == "ok"
    finding = only(result, "dns_partial_failure")
    # One dead resolver among answering ones is shown, but is no proof of a DNS failure.
    assert finding.severity is Status.WARN and finding.weight is Weight.HINT


async def test_only_dead_resolvers_is_a_dns_failure(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.www, (dns_lab.dead,), timeout_s=0.4)
    finding = only(result, "dns_failure")
    assert finding.severity is Status.FAIL and "no answer within 0.4 s" in finding.message


async def test_one_resolver_servfails_while_the_other_answers(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.half, (dns_lab.primary, dns_lab.secondary))
    assert result.status is Status.WARN
    assert only(result, "dns_partial_failure").cause is Cause.DNS_FAILURE
    assert per_resolver(result)[dns_lab.secondary]["addresses"] == ["127.0.0.23"]


async def test_disagreeing_resolvers(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.moved, (dns_lab.primary, dns_lab.secondary))
    assert result.status is Status.WARN
    finding = only(result, "dns_inconsistent")
    assert finding.cause is Cause.DNS_INCONSISTENT and finding.weight is Weight.OBSERVED
    assert finding.data["resolvers"] == {
        dns_lab.primary: lab_names.MOVED_PRIMARY_IP,
        dns_lab.secondary: lab_names.MOVED_SECONDARY_IP,
    }
    assert finding.data["ttl_max"] == 3600 and "3600 s (1 h)" in finding.message


async def test_resolvers_disagree_whether_the_name_exists(dns_lab: DnsLab) -> None:
    result = await run_dns(dns_lab.gone, (dns_lab.primary, dns_lab.secondary))
    finding = only(result, "dns_existence_differs")
    assert finding.cause is Cause.DNS_INCONSISTENT and finding.severity is Status.WARN
    assert "NXDOMAIN" in finding.message and lab_names.GONE_PRIMARY_IP in finding.message


async def test_expected_ip_mismatch(dns_lab: DnsLab) -> None:
    site = Site("shop", f"http://{dns_lab.www}/", expected_ips=("127.0.0.99",))
    result = await run_dns(dns_lab.www, (dns_lab.primary,), site=site)
    assert result.status is Status.FAIL
    finding = only(result, "dns_mismatch")
    assert finding.cause is Cause.DNS_MISMATCH and finding.weight is Weight.OBSERVED
    assert finding.data["answers"] == {dns_lab.primary: [lab_names.WWW_IP]}
    assert "127.0.0.99" in finding.data["next_step"]


async def test_expected_ips_matching(dns_lab: DnsLab) -> None:
    # Only IPv4 is listed, so the AAAA record (::1) is not judged.
    site = Site("shop", f"http://{dns_lab.dual}/", expected_ips=(lab_names.WWW_IP,))
    result = await run_dns(dns_lab.dual, (dns_lab.primary,), site=site)
    assert result.status is Status.OK
    only(result, "dns_ok")


async def test_an_unexpected_address_beside_the_expected_one(dns_lab: DnsLab) -> None:
    site = Site("shop", f"http://{dns_lab.mixed}/", expected_ips=(lab_names.LOOP_IP,))
    result = await run_dns(dns_lab.mixed, (dns_lab.primary,), site=site)
    finding = only(result, "dns_unexpected_address")
    assert finding.severity is Status.WARN and finding.cause is Cause.DNS_MISMATCH
    assert finding.data["answers"] == {dns_lab.primary: [lab_names.PRIVATE_IP]}


async def test_a_literal_address_is_skipped() -> None:
    result = await run_dns("127.0.0.1", ())
    assert result.status is Status.SKIPPED and "address" in result.summary


def test_system_resolvers_come_from_resolv_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nnameserver ::1\n")
    monkeypatch.setattr(dns_client, "RESOLV_CONF", str(conf))
    assert dns_client.system_resolvers() == ["127.0.0.53", "[::1]"]
    monkeypatch.setattr(dns_client, "RESOLV_CONF", str(tmp_path / "missing"))
    assert dns_client.system_resolvers() == []


async def test_without_resolvers_getaddrinfo_and_resolv_conf_are_asked(
    dns_lab: DnsLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's resolv.conf names a server off this host, so the lab stands in for it;
    # "localhost" comes from the hosts file and so never leaves the machine.
    monkeypatch.setattr(dns_step, "system_resolvers", lambda: [dns_lab.primary])
    result = await run_dns("localhost", ())
    entries = per_resolver(result)
    assert entries["getaddrinfo"]["addresses"] == ["127.0.0.1"]
    assert entries[dns_lab.primary]["status"] == "refused"  # not a zone the lab serves
    override = only(result, "dns_local_override")
    assert override.severity is Status.WARN and override.cause is None


def test_duration_text() -> None:
    assert duration_text(30) == "30 s"
    assert duration_text(300) == "300 s (5 min)"
    assert duration_text(7200) == "7200 s (2 h)"
    assert duration_text(604800) == "604800 s (7 days)"


async def test_the_result_is_json(dns_lab: DnsLab) -> None:
    import json

    result = await run_dns(dns_lab.moved, (dns_lab.primary, dns_lab.secondary, dns_lab.dead))
    again = StepResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.to_dict() == result.to_dict()


# The one lookup probes are pinned to (checks.resolve.resolve_host).


async def test_pinning_uses_the_first_resolver_with_addresses(dns_lab: DnsLab) -> None:
    first = await resolve_host(dns_lab.moved, (dns_lab.secondary, dns_lab.primary), 2.0)
    assert first == [lab_names.MOVED_SECONDARY_IP]
    # SERVFAIL from the first resolver, an answer from the second.
    assert await resolve_host(dns_lab.half, (dns_lab.primary, dns_lab.secondary), 2.0) == [
        "127.0.0.23"
    ]
    # NXDOMAIN from one resolver while another has the name: the site exists for some.
    assert await resolve_host(dns_lab.gone, (dns_lab.secondary, dns_lab.primary), 2.0) == [
        lab_names.GONE_PRIMARY_IP
    ]


async def test_pinning_a_dead_first_resolver_costs_one_timeout(dns_lab: DnsLab) -> None:
    started = time.monotonic()
    found = await resolve_host(dns_lab.www, (dns_lab.dead, dns_lab.dead, dns_lab.primary), 0.5)
    assert found == [lab_names.WWW_IP]
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize(
    ("name", "kind"), [("missing", "nxdomain"), ("servfail", "servfail"), ("noaddr", "noanswer")]
)
async def test_pinning_failures(dns_lab: DnsLab, name: str, kind: str) -> None:
    with pytest.raises(ResolveFailed) as caught:
        await resolve_host(getattr(dns_lab, name), (dns_lab.primary, dns_lab.secondary), 2.0)
    assert caught.value.kind == kind
