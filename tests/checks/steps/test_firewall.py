"""The firewall step against real listeners: a namespace behind iptables, loopback ports,
TLS servers, and misbehaving upstream apps."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.runner import prepare, run_step
from badgateway.checks.settings import Settings, Site
from badgateway.checks.steps.firewall import STEP
from badgateway.checks.upstream_findings import upstream_findings
from badgateway.checks.upstream_probe import HEADER_LIMIT_FAIL, UpstreamAttempt
from badgateway.checks.upstream_spec import Upstream, UpstreamKind, parse_upstream
from tests.lab.certs import LabCerts, PlainHttpServer, TlsServer
from tests.lab.fixtures_netns import NetnsListener
from tests.lab.fixtures_upstreams import Upstream as App
from tests.lab.process import free_port

LOOPBACK = ip_network("127.0.0.0/8")
TIMEOUT_S = 1.0


def settings_for(*networks: str, timeout_s: float = TIMEOUT_S, **extra: object) -> Settings:
    allowed = (LOOPBACK, *(ip_network(n) for n in networks))
    return Settings(allow_networks=allowed, timeout_s=timeout_s, **extra)  # type: ignore[arg-type]


async def run_firewall(url: str, settings: Settings, upstreams: tuple[str, ...] = ()) -> StepResult:
    if upstreams:
        site = Site(name="shop", url=url, upstreams=upstreams)
        settings = replace(settings, sites=(site,))
        url = "shop"
    ctx = await prepare(url, settings)
    ctx.deadline = time.monotonic() + settings.diagnosis_budget_s
    return await run_step(STEP, ctx)


def by_code(result: StepResult, code: str) -> Finding:
    found = [f for f in result.findings if f.code == code]
    assert found, f"no {code} finding in {[(f.code, f.message) for f in result.findings]}"
    return found[0]


# --- the edge: a namespace behind iptables ------------------------------------------


@pytest.mark.netns
class TestNamespaceFirewall:
    async def test_open_port(self, netns_http_server: NetnsListener) -> None:
        lab = netns_http_server.lab
        result = await run_firewall(netns_http_server.url, settings_for(str(lab.network)))
        assert result.status is Status.OK, result.findings
        assert by_code(result, "tcp_open").data["address"] == lab.address
        assert result.details["edge"][0]["state"] == "open"

    async def test_dropped_syn_is_a_firewall_drop(self, netns_http_server: NetnsListener) -> None:
        lab = netns_http_server.lab
        started = time.monotonic()
        with lab.firewall(netns_http_server.port, "drop"):
            result = await run_firewall(netns_http_server.url, settings_for(str(lab.network)))
        assert TIMEOUT_S - 0.1 <= time.monotonic() - started < TIMEOUT_S + 1.0
        finding = by_code(result, "tcp_timeout")
        assert finding.cause is Cause.FIREWALL_DROP and finding.weight is Weight.OBSERVED
        assert result.status is Status.FAIL
        assert result.details["edge"][0]["state"] == "timeout"

    async def test_reset_is_refused(self, netns_http_server: NetnsListener) -> None:
        lab = netns_http_server.lab
        with lab.firewall(netns_http_server.port, "reject"):
            result = await run_firewall(netns_http_server.url, settings_for(str(lab.network)))
        finding = by_code(result, "tcp_refused")
        assert finding.cause is Cause.UNREACHABLE and finding.severity is Status.FAIL

    async def test_icmp_host_unreachable(self, netns_http_server: NetnsListener) -> None:
        lab = netns_http_server.lab
        with lab.firewall(netns_http_server.port, "unreachable"):
            result = await run_firewall(netns_http_server.url, settings_for(str(lab.network)))
        finding = by_code(result, "tcp_unreachable")
        assert finding.cause is Cause.UNREACHABLE
        assert "No route to host" in finding.message

    async def test_an_upstream_behind_a_dropping_firewall_times_out(
        self, netns_http_server: NetnsListener
    ) -> None:
        lab = netns_http_server.lab
        with App("ok") as edge, lab.firewall(netns_http_server.port, "drop"):
            result = await run_firewall(
                edge.url,
                settings_for(),  # upstreams are trusted: their network need not be allowed
                upstreams=(f"{lab.address}:{netns_http_server.port}",),
            )
        finding = by_code(result, "upstream_connect_timeout")
        assert finding.cause is Cause.UPSTREAM_TIMEOUT and finding.severity is Status.FAIL
        assert "firewall between the proxy and the app" in finding.message
        assert by_code(result, "tcp_open")  # the edge itself answered

    async def test_the_step_stays_within_its_deadline(
        self, netns_http_server: NetnsListener
    ) -> None:
        lab = netns_http_server.lab
        settings = settings_for(str(lab.network), timeout_s=5.0)
        ctx = await prepare(netns_http_server.url, settings)
        ctx.deadline = time.monotonic() + 0.8
        started = time.monotonic()
        with lab.firewall(netns_http_server.port, "drop"):
            result = await run_step(STEP, ctx)
        assert time.monotonic() - started < 1.0
        assert by_code(result, "tcp_timeout").cause is Cause.FIREWALL_DROP


# --- the edge on loopback -----------------------------------------------------------


async def test_nothing_listening_is_refused() -> None:
    port = free_port()
    result = await run_firewall(f"http://127.0.0.1:{port}/", settings_for())
    finding = by_code(result, "tcp_refused")
    assert finding.cause is Cause.UNREACHABLE and finding.weight is Weight.OBSERVED
    assert f"127.0.0.1:{port}" in finding.message


async def test_no_address_skips_with_the_resolve_error() -> None:
    settings = settings_for()
    ctx = ProbeContext(
        target=(await prepare("http://127.0.0.1/", settings)).target,
        settings=settings,
        resolve_error="shop.test does not exist (NXDOMAIN)",
    )
    result = await run_step(STEP, ctx)
    assert result.status is Status.SKIPPED
    assert "NXDOMAIN" in result.summary


async def test_https_edge_with_an_expired_certificate(tls_certs: LabCerts) -> None:
    with TlsServer(tls_certs.expired) as server:
        result = await run_firewall(
            f"https://127.0.0.1:{server.port}/", settings_for(ca_file=str(tls_certs.ca))
        )
    finding = by_code(result, "tls_expired")
    assert finding.cause is Cause.TLS_ERROR and finding.severity is Status.FAIL
    assert tls_certs.expired.day in finding.message
    tls = result.details["tls"]
    assert tls["verified"] is False and tls["certificate"]["subject"] == "CN=localhost"
    assert result.details["edge"][0]["tls_verified"] is False


async def test_https_edge_with_a_valid_certificate(tls_certs: LabCerts) -> None:
    with TlsServer(tls_certs.valid) as server:
        result = await run_firewall(
            f"https://127.0.0.1:{server.port}/", settings_for(ca_file=str(tls_certs.ca))
        )
    assert result.status is Status.OK, result.findings
    assert by_code(result, "tls_ok")
    assert result.details["tls"]["hostname_match"] is True


# --- upstreams ----------------------------------------------------------------------


@pytest.fixture
def edge() -> Iterator[App]:
    """A healthy front for the site, so only the upstream findings can fail the step."""
    with App("ok") as app:
        yield app


@pytest.mark.parametrize(
    ("kind", "code", "cause"),
    [
        ("refused", "upstream_refused", Cause.UPSTREAM_REFUSED),
        ("garbage", "upstream_invalid", Cause.UPSTREAM_INVALID),
        ("bad_header", "upstream_invalid", Cause.UPSTREAM_INVALID),
        ("close_mid_response", "upstream_closed", Cause.UPSTREAM_CLOSED),
        ("flaky", "upstream_closed", Cause.UPSTREAM_CLOSED),
        ("huge_headers", "upstream_too_big", Cause.UPSTREAM_HEADER_TOO_BIG),
        ("slow", "upstream_timeout", Cause.UPSTREAM_TIMEOUT),
    ],
)
async def test_http_upstream_failures(
    edge: App, upstream: Callable[..., App], kind: str, code: str, cause: Cause
) -> None:
    app = upstream(kind)
    result = await run_firewall(edge.url, settings_for(), upstreams=(app.url,))
    finding = by_code(result, code)
    assert finding.cause is cause
    assert finding.severity is Status.FAIL
    # A slow answer is judged by the probe's timeout, not the proxy's: weaker evidence.
    assert finding.weight is (Weight.INFERRED if kind == "slow" else Weight.OBSERVED)
    assert app.address in finding.data["next_step"]
    assert result.details["upstreams"][0]["upstream"] == app.url


async def test_refused_upstream_names_the_app_to_start(edge: App) -> None:
    dead = free_port()
    result = await run_firewall(edge.url, settings_for(), upstreams=(f"127.0.0.1:{dead}",))
    finding = by_code(result, "upstream_refused")
    assert finding.data["next_step"] == f"start the app at 127.0.0.1:{dead} (nothing listens there)"
    assert result.details["upstreams"][0]["connect"]["state"] == "refused"


async def test_healthy_http_upstream(edge: App, upstream: Callable[..., App]) -> None:
    app = upstream("ok")
    result = await run_firewall(edge.url, settings_for(), upstreams=(app.url,))
    assert result.status is Status.OK, result.findings
    assert by_code(result, "upstream_http_ok").data["http"]["status"] == 200


async def test_app_error_is_not_a_gateway_cause(edge: App, upstream: Callable[..., App]) -> None:
    app = upstream("error500")
    result = await run_firewall(edge.url, settings_for(), upstreams=(app.url,))
    finding = by_code(result, "upstream_http_error")
    assert finding.severity is Status.WARN and finding.cause is None


async def test_headers_over_nginx_default_buffer_are_a_hint(
    edge: App, upstream: Callable[..., App]
) -> None:
    app = upstream("huge_headers", header_bytes=8 * 1024)
    result = await run_firewall(edge.url, settings_for(), upstreams=(app.url,))
    finding = by_code(result, "upstream_header_large")
    assert finding.cause is Cause.UPSTREAM_HEADER_TOO_BIG
    assert finding.severity is Status.WARN and finding.weight is Weight.HINT
    assert 8 * 1024 < finding.data["http"]["head_bytes"] <= HEADER_LIMIT_FAIL


async def test_bare_address_is_connect_only(edge: App, upstream: Callable[..., App]) -> None:
    # A garbage-speaking port written without a scheme may be FastCGI: not spoken HTTP to.
    app = upstream("garbage")
    result = await run_firewall(edge.url, settings_for(), upstreams=(app.address,))
    assert result.status is Status.OK, result.findings
    assert by_code(result, "upstream_open")
    assert result.details["upstreams"][0]["http"] is None


async def test_https_upstream_that_speaks_plain_http(edge: App) -> None:
    with PlainHttpServer() as app:
        result = await run_firewall(edge.url, settings_for(), upstreams=(f"https://{app.address}",))
    finding = by_code(result, "upstream_tls_failed")
    assert finding.cause is Cause.UPSTREAM_TLS
    assert "plain text, not TLS" in finding.message


async def test_https_upstream_with_tls(edge: App, tls_certs: LabCerts) -> None:
    with TlsServer(tls_certs.self_signed) as app:
        result = await run_firewall(
            edge.url, settings_for(), upstreams=(f"https://127.0.0.1:{app.port}",)
        )
    # Like nginx without proxy_ssl_verify, an untrusted upstream certificate is fine.
    assert by_code(result, "upstream_http_ok")


async def test_unix_socket_upstreams(edge: App, tmp_path: Path) -> None:
    listening = tmp_path / "app.sock"
    stale = tmp_path / "stale.sock"  # a socket file left behind by a dead app
    with socket.socket(socket.AF_UNIX) as live, socket.socket(socket.AF_UNIX) as dead:
        live.bind(str(listening))
        live.listen(1)
        dead.bind(str(stale))
        specs = (f"unix:{listening}", f"unix:{stale}", f"unix:{tmp_path / 'missing.sock'}")
        result = await run_firewall(edge.url, settings_for(), upstreams=specs)
    states = [row["connect"]["state"] for row in result.details["upstreams"]]
    assert states == ["open", "refused", "missing"]
    refused = [f for f in result.findings if f.code == "upstream_refused"]
    assert len(refused) == 2 and all(f.cause is Cause.UPSTREAM_REFUSED for f in refused)


async def test_upstreams_are_probed_concurrently(edge: App, upstream: Callable[..., App]) -> None:
    slow = [upstream("slow", delay_s=5) for _ in range(3)]
    started = time.monotonic()
    result = await run_firewall(edge.url, settings_for(), upstreams=tuple(a.url for a in slow))
    assert time.monotonic() - started < 2 * TIMEOUT_S
    assert len([f for f in result.findings if f.code == "upstream_timeout"]) == 3


@pytest.mark.parametrize(
    ("spec", "kind", "host", "port"),
    [
        ("app.internal:8080", "tcp", "app.internal", 8080),
        ("10.0.0.5", "tcp", "10.0.0.5", 80),
        ("[::1]:9000", "tcp", "::1", 9000),
        ("http://app:3000", "http", "app", 3000),
        ("https://app", "https", "app", 443),
        ("unix:/run/php/fpm.sock", "unix", "", 0),
    ],
)
def test_parse_upstream(spec: str, kind: str, host: str, port: int) -> None:
    parsed = parse_upstream(spec)
    assert (parsed.kind, parsed.host, parsed.port) == (kind, host, port)


@pytest.mark.parametrize("spec", ["unix:relative.sock", "ftp://app:21", "app:99999", ":80"])
def test_parse_upstream_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_upstream(spec)


def test_unresolvable_upstream_is_upstream_dns() -> None:
    # The mapping only: resolving a made-up name would send a query off this machine.
    upstream = Upstream("app.gone:8080", UpstreamKind.TCP, "app.gone", 8080)
    attempt = UpstreamAttempt(upstream, "app.gone", resolve_error="no name")
    [finding] = upstream_findings(attempt, TIMEOUT_S)
    assert finding.cause is Cause.UPSTREAM_DNS and finding.weight is Weight.INFERRED
