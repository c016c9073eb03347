"""End to end: a whole diagnosis names the network-path cause, against real servers.

firewall_drop: a namespace whose iptables drops the port. unreachable: a loopback port
nothing listens on. tls_error: a real nginx serving an expired certificate, and one for
another name. upstream_refused: a real nginx answering 502 in front of a dead app port,
proven by the upstream probe alone (no log configured).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

import pytest

from badgateway.checks.model import Cause, Diagnosis
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import Settings, Site
from tests.lab.certs import CertPair, LabCerts
from tests.lab.fixtures_netns import NetnsListener
from tests.lab.fixtures_proxies import Proxy
from tests.lab.process import ManagedProcess, free_port, free_ports, require_binary, wait_for_port

LOOPBACK = ip_network("127.0.0.0/8")


def lab_settings(*networks: str, **extra: object) -> Settings:
    """Short timeouts and budget: every probe here either answers at once or never."""
    allowed = (LOOPBACK, *(ip_network(n) for n in networks))
    options: dict[str, object] = {
        "allow_networks": allowed,
        "timeout_s": 1.5,
        "diagnosis_budget_s": 6.0,
        "reload_attempts": 2,
        "reload_spacing_s": 0.2,
        **extra,
    }
    return Settings(**options)  # type: ignore[arg-type]


def causes_of(diagnosis: Diagnosis) -> str:
    """What to print when the verdict is wrong: every finding with a cause."""
    return "\n".join(
        f"{step.name}: {f.code} {f.severity.value} {f.cause} w{int(f.weight)} {f.message}"
        for step in diagnosis.steps
        for f in step.findings
    )


@pytest.mark.netns
async def test_firewall_drop(netns_http_server: NetnsListener) -> None:
    lab = netns_http_server.lab
    with lab.firewall(netns_http_server.port, "drop"):
        started = time.monotonic()
        diagnosis = await diagnose(netns_http_server.url, lab_settings(str(lab.network)))
    assert diagnosis.verdict.cause is Cause.FIREWALL_DROP, causes_of(diagnosis)
    assert any(f.code == "tcp_timeout" for f in diagnosis.verdict.evidence)
    assert time.monotonic() - started < 7.0


async def test_unreachable() -> None:
    port = free_port()
    diagnosis = await diagnose(f"http://127.0.0.1:{port}/", lab_settings())
    assert diagnosis.verdict.cause is Cause.UNREACHABLE, causes_of(diagnosis)
    assert f"127.0.0.1:{port}" in diagnosis.verdict.summary


# --- TLS, served by a real nginx ------------------------------------------------------


@dataclass(frozen=True)
class TlsNginx:
    ports: dict[str, int]  # certificate name -> the port serving it


def _tls_nginx_config(directory: Path, servers: dict[str, tuple[int, CertPair]]) -> str:
    blocks = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pair.cert};
        ssl_certificate_key {pair.key};
        location / {{ return 200 "ok\\n"; }}
    }}"""
        for port, pair in servers.values()
    )
    temp = " ".join(
        f"{name}_temp_path {directory}/tmp_{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
error_log {directory}/error.log warn;
pid {directory}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {temp}
{blocks}
}}
"""


@pytest.fixture(scope="module")
def tls_nginx(tls_certs: LabCerts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNginx]:
    """One nginx, one TLS server block per certificate."""
    binary = require_binary("nginx", "/usr/sbin/nginx")
    directory = tmp_path_factory.mktemp("tls-nginx")
    names = ("valid", "expired", "wrong_host")
    servers = {
        name: (port, getattr(tls_certs, name))
        for name, port in zip(names, free_ports(len(names)), strict=True)
    }
    (directory / "nginx.conf").write_text(_tls_nginx_config(directory, servers))
    argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    process = ManagedProcess([*argv, "-g", "daemon off;"], directory / "stdout.log")
    try:
        for port, _pair in servers.values():
            wait_for_port(port)
        yield TlsNginx({name: port for name, (port, _pair) in servers.items()})
    finally:
        process.stop()


async def test_tls_expired(tls_nginx: TlsNginx, tls_certs: LabCerts) -> None:
    port = tls_nginx.ports["expired"]
    diagnosis = await diagnose(
        f"https://127.0.0.1:{port}/", lab_settings(ca_file=str(tls_certs.ca))
    )
    assert diagnosis.verdict.cause is Cause.TLS_ERROR, causes_of(diagnosis)
    assert f"expired on {tls_certs.expired.day}" in diagnosis.verdict.summary


async def test_tls_wrong_host_name(tls_nginx: TlsNginx, tls_certs: LabCerts) -> None:
    port = tls_nginx.ports["wrong_host"]
    diagnosis = await diagnose(
        f"https://127.0.0.1:{port}/", lab_settings(ca_file=str(tls_certs.ca))
    )
    assert diagnosis.verdict.cause is Cause.TLS_ERROR, causes_of(diagnosis)
    assert "issued for other.test, not 127.0.0.1" in diagnosis.verdict.summary


async def test_tls_valid_is_no_tls_error(tls_nginx: TlsNginx, tls_certs: LabCerts) -> None:
    port = tls_nginx.ports["valid"]
    diagnosis = await diagnose(
        f"https://127.0.0.1:{port}/", lab_settings(ca_file=str(tls_certs.ca))
    )
    assert diagnosis.verdict.cause is not Cause.TLS_ERROR, causes_of(diagnosis)
    firewall = next(s for s in diagnosis.steps if s.name == "firewall")
    assert firewall.details["tls"]["verified"] is True


# --- behind the proxy -------------------------------------------------------------------


async def test_upstream_refused_from_the_probe_alone(
    nginx_proxy: Callable[..., Proxy],
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proxy = nginx_proxy(dead)
    site = Site(name="shop", url=proxy.url, upstreams=(dead,))  # no logs
    diagnosis = await diagnose("shop", lab_settings(sites=(site,)))
    assert diagnosis.verdict.cause is Cause.UPSTREAM_REFUSED, causes_of(diagnosis)
    assert f"start the app at {dead} (nothing listens there)" in diagnosis.verdict.next_steps
