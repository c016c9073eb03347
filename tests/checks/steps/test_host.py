"""The host step: reverse DNS, provider identification and the plain-text provider summary,
against real nginx on loopback (and the lab's BIND for the configured-resolver path)."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.fingerprint import Fingerprint
from badgateway.checks.model import Status, StepResult
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings
from badgateway.checks.steps.host import (
    STEP,
    identify_provider,
    provider_from_address,
    provider_from_ptr,
    reverse_name,
    run,
)
from badgateway.checks.target import parse_target
from tests.lab.fixtures_dns import DnsLab
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import free_port
from tests.lab.site_nginx import running_site_nginx

SETTINGS = Settings(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_s=3)


async def _host(url: str, settings: Settings = SETTINGS) -> StepResult:
    result = await run(await prepare(url, settings))
    assert result.name == STEP.name == "host"
    return result


def _assert_plain(text: str) -> None:
    # Ready to paste into a ticket: no Slack mrkdwn, no links in angle brackets.
    assert not re.search(r"[*`]|<https?:|<@|<!", text)


async def test_healthy_edge_summary(
    module_upstream: Callable[..., Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(module_upstream("ok"))
    result = await _host(proxy.url)
    assert result.status is Status.OK
    assert result.findings[0].code == "host_identified"
    text = result.details["provider_summary"]
    _assert_plain(text)
    assert f"Target: {proxy.url}" in text
    # A loopback address's PTR is not looked up through the system resolver (it says
    # nothing about who hosts the site, and would leak internal addresses upstream).
    assert "Address probed: 127.0.0.1\n" in text
    assert "Answer: HTTP 200 OK from nginx" in text
    assert re.search(r"Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", text)
    assert result.details["ptr"] == {"127.0.0.1": None}
    assert result.details["producer"] == "nginx"
    assert result.details["provider"] is None


async def test_failing_edge_summary_quotes_status_page_and_timing(
    module_upstream: Callable[..., Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(module_upstream("refused"))
    result = await _host(proxy.url)
    assert result.status is Status.WARN
    assert [f.code for f in result.findings] == ["host_identified", "edge_answer"]
    assert all(f.cause is None for f in result.findings)  # the reload step judges
    text = result.details["provider_summary"]
    _assert_plain(text)
    assert "Answer: HTTP 502 Bad Gateway from nginx; connect " in text
    assert "first byte" in text
    assert "Body excerpt: <html> <head><title>502 Bad Gateway</title>" in text
    assert "Error page: nginx (by header and page)" in text


async def test_request_ids_are_quoted(tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_site_nginx(tmp_path_factory.mktemp("host-site")) as site:
        settings = SETTINGS
        ctx = ProbeContext(
            parse_target(f"http://site.test:{site.http_port}/fail", settings),
            settings,
            addresses=("127.0.0.1",),
        )
        result = await run(ctx)
    text = result.details["provider_summary"]
    assert re.search(r"Request IDs: x-request-id: [0-9a-f]{32}", text)
    assert "Answer: HTTP 503" in text


async def test_refused_edge_summary() -> None:
    result = await _host(f"http://127.0.0.1:{free_port()}/")
    text = result.details["provider_summary"]
    assert "Answer: no HTTP answer: refused" in text
    assert "Request IDs: none sent" in text
    assert result.findings[1].code == "edge_answer"


async def test_skipped_without_addresses() -> None:
    ctx = ProbeContext(
        parse_target("http://missing.test/", SETTINGS), SETTINGS, resolve_error="NXDOMAIN"
    )
    result = await run(ctx)
    assert result.status is Status.SKIPPED and "NXDOMAIN" in result.summary


async def test_reverse_dns_through_configured_resolvers(dns_lab: DnsLab) -> None:
    # The lab's servers are authoritative for .test only: no PTR for 127.0.0.1 there.
    assert await reverse_name("127.0.0.1", (dns_lab.primary,), 1.0) is None
    started = time.monotonic()
    assert await reverse_name("127.0.0.1", (dns_lab.dead,), 0.3) is None
    assert time.monotonic() - started < 1.5
    assert await reverse_name("127.0.0.1", (), 1.0) is None  # not global: never asked


def test_provider_from_ptr_names() -> None:
    cases = {
        "ec2-3-120-1-2.eu-central-1.compute.amazonaws.com": "Amazon Web Services",
        "server-13-32-1-2.fra56.r.cloudfront.net.": "Amazon CloudFront",
        "2.1.120.34.bc.googleusercontent.com": "Google Cloud",
        "static.88-198-1-2.clients.your-server.de": "Hetzner",
        "ns3001234.ip-51-75-1.eu": "OVHcloud",
        "li1234-56.members.linode.com": "Akamai Cloud (Linode)",
        "a23-1-2-3.deploy.static.akamaitechnologies.com": "Akamai",
        "myvm.westeurope.cloudapp.azure.com": "Microsoft Azure",
        "mail.example.org": None,
    }
    for name, provider in cases.items():
        assert provider_from_ptr(name) == provider, name
    assert provider_from_ptr(None) is None


def test_provider_from_published_ranges_and_priority() -> None:
    assert provider_from_address("104.16.1.1") == "Cloudflare"
    assert provider_from_address("2606:4700::6810:1") == "Cloudflare"
    assert provider_from_address("151.101.1.1") == "Fastly"
    assert provider_from_address("127.0.0.1") is None
    cloudfront = Fingerprint("CloudFront", 0.9, None, None, "")
    # The answering service beats the address's owner and the PTR name.
    assert identify_provider("104.16.1.1", "x.amazonaws.com", cloudfront)[0] == (
        "Amazon CloudFront"
    )
    assert identify_provider("104.16.1.1", "x.amazonaws.com", None)[0] == "Cloudflare"
    provider, how = identify_provider("3.120.1.2", "ec2-3-120-1-2.compute.amazonaws.com", None)
    assert provider == "Amazon Web Services" and "reverse DNS" in how
