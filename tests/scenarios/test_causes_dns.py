"""End to end: a whole diagnosis (checks.runner.diagnose) of names served by real BIND
servers names the DNS cause. The answers are loopback addresses where nothing listens on
the target's port; the verdict still names DNS, because a DNS failure hides everything
behind it."""

from __future__ import annotations

import ipaddress

import pytest

from badgateway.checks.model import Cause, Diagnosis
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import Settings, Site
from tests.lab import fixtures_dns as lab_names
from tests.lab.fixtures_dns import DnsLab
from tests.lab.process import free_port

DNS_CAUSES = {Cause.DNS_NXDOMAIN, Cause.DNS_FAILURE, Cause.DNS_MISMATCH, Cause.DNS_INCONSISTENT}


def settings_for(resolvers: tuple[str, ...], *sites: Site, timeout_s: float = 2) -> Settings:
    return Settings(
        resolvers=resolvers,
        allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        timeout_s=timeout_s,
        reload_attempts=2,
        reload_spacing_s=0.1,
        diagnosis_budget_s=6,
        sites=sites,
    )


def url(host: str) -> str:
    # A port nothing listens on, so no other server on this machine gets involved.
    return f"http://{host}:{free_port()}/"


def dns_evidence(diagnosis: Diagnosis) -> list[str]:
    return [f.code for f in diagnosis.verdict.evidence if f.cause in DNS_CAUSES]


async def test_a_name_that_does_not_exist(dns_lab: DnsLab) -> None:
    diagnosis = await diagnose(
        url(dns_lab.missing), settings_for((dns_lab.primary, dns_lab.secondary))
    )
    assert diagnosis.verdict.cause is Cause.DNS_NXDOMAIN
    assert dns_evidence(diagnosis) == ["dns_nxdomain"]


@pytest.mark.parametrize("broken", ["servfail", "dead"])
async def test_resolvers_that_fail(dns_lab: DnsLab, broken: str) -> None:
    resolvers: tuple[str, ...]
    if broken == "servfail":
        host, resolvers = dns_lab.servfail, (dns_lab.primary, dns_lab.secondary)
    else:
        host, resolvers = dns_lab.www, (dns_lab.dead,)
    # Both the pinning lookup and the step wait for the dead resolver: keep that short.
    diagnosis = await diagnose(url(host), settings_for(resolvers, timeout_s=0.8))
    assert diagnosis.verdict.cause is Cause.DNS_FAILURE
    assert dns_evidence(diagnosis) == ["dns_failure"]


async def test_resolvers_that_disagree(dns_lab: DnsLab) -> None:
    diagnosis = await diagnose(
        url(dns_lab.moved), settings_for((dns_lab.primary, dns_lab.secondary))
    )
    assert diagnosis.verdict.cause is Cause.DNS_INCONSISTENT
    assert lab_names.MOVED_SECONDARY_IP in diagnosis.verdict.evidence[0].message


async def test_resolvers_that_disagree_one_with_the_expected_address(dns_lab: DnsLab) -> None:
    # The new address is the expected one and one resolver has it already: a change still
    # spreading, not a wrong record — whichever resolver is listed first.
    for resolvers in (
        (dns_lab.primary, dns_lab.secondary),
        (dns_lab.secondary, dns_lab.primary),
    ):
        site = Site("shop", url(dns_lab.moved), expected_ips=(lab_names.MOVED_SECONDARY_IP,))
        diagnosis = await diagnose("shop", settings_for(resolvers, site))
        assert diagnosis.verdict.cause is Cause.DNS_INCONSISTENT, diagnosis.verdict.summary
        assert "dns_not_yet_everywhere" in dns_evidence(diagnosis)
        assert "dns_mismatch" not in dns_evidence(diagnosis)


async def test_resolvers_that_disagree_whether_the_name_exists(dns_lab: DnsLab) -> None:
    # The first resolver says NXDOMAIN; the second has the name, so it is probed too.
    diagnosis = await diagnose(
        url(dns_lab.gone), settings_for((dns_lab.secondary, dns_lab.primary))
    )
    assert diagnosis.verdict.cause is Cause.DNS_INCONSISTENT
    assert dns_evidence(diagnosis) == ["dns_existence_differs"]


async def test_a_record_pointing_elsewhere(dns_lab: DnsLab) -> None:
    site = Site("shop", url(dns_lab.www), expected_ips=("127.0.0.99",))
    diagnosis = await diagnose("shop", settings_for((dns_lab.primary,), site))
    assert diagnosis.verdict.cause is Cause.DNS_MISMATCH
    assert dns_evidence(diagnosis) == ["dns_mismatch"]
    assert any("127.0.0.99" in step for step in diagnosis.verdict.next_steps)


async def test_one_failing_resolver_among_answering_ones_is_not_the_verdict(
    dns_lab: DnsLab,
) -> None:
    # Server A answers SERVFAIL, B answers: the site is reachable by name, so whatever the
    # other steps find (here: nothing listens) decides, not DNS.
    diagnosis = await diagnose(
        url(dns_lab.half), settings_for((dns_lab.primary, dns_lab.secondary))
    )
    assert diagnosis.verdict.cause not in DNS_CAUSES
    dns_result = next(s for s in diagnosis.steps if s.name == "dns")
    assert [f.code for f in dns_result.findings] == ["dns_partial_failure"]
