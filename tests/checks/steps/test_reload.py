"""The reload step against real proxies in front of the lab's upstreams: healthy, transient,
consistent 5xx (with the producer and any cause the page names), a WAF-style block, an edge
that refuses connections, and TLS trouble at the edge."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.http_probe import BROWSER_USER_AGENT
from badgateway.checks.model import Cause, Status, StepResult, Weight
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings
from badgateway.checks.steps.reload import STEP, run
from badgateway.checks.target import parse_target
from badgateway.checks.verdict import decide
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import ManagedProcess, free_port, require_binary, wait_for_port
from tests.lab.site_nginx import SiteNginx, running_site_nginx

SETTINGS = Settings(
    allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    timeout_s=3,
    reload_attempts=3,
    reload_spacing_s=0.1,
)


async def _reload(url: str, settings: Settings = SETTINGS) -> StepResult:
    ctx = await prepare(url, settings)
    result = await run(ctx)
    assert result.name == STEP.name == "reload"
    return result


def _codes(result: StepResult) -> list[str]:
    return [f.code for f in result.findings]


async def test_healthy_site(
    module_upstream: Callable[..., Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(module_upstream("ok"))
    result = await _reload(proxy.url)
    assert result.status is Status.OK
    finding = result.findings[0]
    assert (finding.code, finding.cause, finding.weight) == ("http_ok", Cause.HEALTHY, 3)
    attempts = result.details["attempts"]
    assert len(attempts) == SETTINGS.reload_attempts + 1
    assert all(a["status"] == 200 for a in attempts)
    # Every attempt bypasses caches with its own parameter; the last one is a browser.
    busting = {a["url"].split("_bgw=")[1] for a in attempts}
    assert len(busting) == len(attempts)
    assert attempts[-1]["user_agent"] == BROWSER_USER_AGENT
    # nginx writes a request's access-log line after the answer has gone: wait for the last one.
    assert proxy.access_log is not None
    access_log = proxy.access_log
    for _ in range(150):  # at most 3 s
        if access_log.read_text().count("_bgw=") >= len(attempts):
            break
        await asyncio.sleep(0.02)
    assert access_log.read_text().count("_bgw=") >= len(attempts)
    assert result.details["producer"] == "nginx"
    assert decide([result]).cause is Cause.HEALTHY


async def test_transient_failure_then_success(
    upstream: Callable[..., Upstream], nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = nginx_proxy(upstream("flaky", fail_first=1))
    result = await _reload(proxy.url)
    assert result.status is Status.WARN
    finding = result.findings[0]
    assert (finding.code, finding.cause, finding.weight) == (
        "transient",
        Cause.TRANSIENT,
        Weight.OBSERVED,
    )
    statuses = [a["status"] for a in result.details["attempts"]]
    assert statuses[0] == 502 and statuses[1:] == [200] * SETTINGS.reload_attempts
    assert "502 from nginx" in finding.message
    assert decide([result]).cause is Cause.TRANSIENT


async def test_consistent_nginx_502_names_the_producer_not_a_cause(
    module_upstream: Callable[..., Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(module_upstream("refused"))
    result = await _reload(proxy.url)
    assert result.status is Status.FAIL
    assert _codes(result) == ["http_error"]
    finding = result.findings[0]
    assert finding.cause is None  # nginx's 502 page does not say why; its log does
    assert finding.data["count"] == SETTINGS.reload_attempts + 1
    assert result.details["producer"] == "nginx"
    assert decide([result]).cause is Cause.UNKNOWN


async def test_consistent_haproxy_502_and_504(
    module_upstream: Callable[..., Upstream], module_haproxy_proxy: Callable[..., Proxy]
) -> None:
    closing = module_haproxy_proxy(module_upstream("close_mid_response"))
    result = await _reload(closing.url)
    assert result.status is Status.FAIL
    assert result.details["producer"] == "HAProxy"
    assert all(a["status"] == 502 for a in result.details["attempts"])
    assert result.findings[0].cause is None

    slow = module_haproxy_proxy(module_upstream("slow", delay_s=3), server_timeout_s=1)
    started = time.monotonic()
    result = await _reload(slow.url)
    elapsed = time.monotonic() - started
    finding = result.findings[0]
    assert (finding.code, finding.cause, finding.weight) == (
        "http_error",
        Cause.UPSTREAM_TIMEOUT,
        Weight.INFERRED,
    )
    assert result.details["producer"] == "HAProxy"
    assert decide([result]).cause is Cause.UPSTREAM_TIMEOUT
    # Staggered, not sequential: four 1-second waits overlap (~0.3 s of spacing + 1 s).
    assert elapsed < 2.5


async def test_app_500_passed_through_is_a_server_error(
    module_upstream: Callable[..., Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(module_upstream("error500"))
    result = await _reload(proxy.url)
    assert result.findings[0].cause is Cause.SERVER_ERROR
    assert decide([result]).cause is Cause.SERVER_ERROR


async def test_edge_refusing_connections_is_unreachable() -> None:
    result = await _reload(f"http://127.0.0.1:{free_port()}/")
    assert result.status is Status.FAIL
    finding = result.findings[0]
    assert (finding.code, finding.cause, finding.weight) == (
        "edge_refused",
        Cause.UNREACHABLE,
        Weight.OBSERVED,
    )
    assert decide([result]).cause is Cause.UNREACHABLE


# --- a WAF rule in a real HAProxy ---------------------------------------------------------


def _start_denying_haproxy(directory: Path, backend: str, deny_all: bool) -> tuple[Proxy, int]:
    binary = require_binary("haproxy", "/usr/sbin/haproxy")
    port = free_port()
    rule = (
        "http-request deny"
        if deny_all
        else ("http-request deny if { req.hdr(user-agent) -m sub badgateway }")
    )
    (directory / "haproxy.cfg").write_text(
        f"""defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 2s
frontend web
    bind 127.0.0.1:{port}
    {rule}
    default_backend app
backend app
    server app1 {backend}
"""
    )
    process = ManagedProcess(
        [binary, "-f", str(directory / "haproxy.cfg"), "-db"], directory / "out.log"
    )
    wait_for_port(port)
    return Proxy("haproxy", "haproxy", directory, directory / "out.log", process, port), port


@pytest.fixture
def denying_haproxy(
    tmp_path: Path, upstream: Callable[..., Upstream]
) -> Iterator[Callable[[bool], str]]:
    started: list[Proxy] = []
    app = upstream("ok")

    def make(deny_all: bool) -> str:
        directory = tmp_path / f"hap-{len(started)}"
        directory.mkdir()
        proxy, port = _start_denying_haproxy(directory, app.address, deny_all)
        started.append(proxy)
        return f"http://127.0.0.1:{port}/"

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()


async def test_waf_rule_blocking_every_client(denying_haproxy: Callable[[bool], str]) -> None:
    result = await _reload(denying_haproxy(True))
    assert result.status is Status.FAIL
    finding = result.findings[0]
    assert (finding.code, finding.cause) == ("blocked", Cause.BLOCKED)
    assert decide([result]).cause is Cause.BLOCKED


async def test_waf_rule_blocking_the_bot_only(denying_haproxy: Callable[[bool], str]) -> None:
    result = await _reload(denying_haproxy(False))
    finding = result.findings[0]
    assert (finding.code, finding.cause, finding.severity) == ("blocked", Cause.BLOCKED, "warn")
    assert "got 200" in finding.message
    assert decide([result]).cause is Cause.BLOCKED


# --- TLS at the edge ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteNginx]:
    with running_site_nginx(tmp_path_factory.mktemp("reload-tls")) as server:
        yield server


def _pinned(url: str, settings: Settings) -> ProbeContext:
    return ProbeContext(parse_target(url, settings), settings, addresses=("127.0.0.1",))


async def test_untrusted_certificate_is_a_tls_error(tls_site: SiteNginx) -> None:
    result = await run(_pinned(f"https://site.test:{tls_site.https_port}/", SETTINGS))
    finding = result.findings[0]
    assert (finding.code, finding.cause, finding.weight) == (
        "tls_failed",
        Cause.TLS_ERROR,
        Weight.INFERRED,
    )
    assert "certificate verify failed" in finding.message
    assert decide([result]).cause is Cause.TLS_ERROR


async def test_private_ca_makes_the_same_site_healthy(tls_site: SiteNginx) -> None:
    settings = Settings(
        allow_networks=SETTINGS.allow_networks,
        reload_attempts=2,
        reload_spacing_s=0.05,
        ca_file=str(tls_site.certs.ca),
    )
    result = await run(_pinned(f"https://site.test:{tls_site.https_port}/", settings))
    assert result.findings[0].cause is Cause.HEALTHY
    assert all("tls" in a["phases"] for a in result.details["attempts"])


async def test_skipped_without_addresses() -> None:
    ctx = ProbeContext(
        parse_target("http://missing.test/", SETTINGS),
        SETTINGS,
        resolve_error="missing.test does not exist (NXDOMAIN)",
    )
    result = await run(ctx)
    assert result.status is Status.SKIPPED
    assert "NXDOMAIN" in result.summary
    assert result.findings == []
