"""Root is not the proxy: a unix socket that lets the bot (root here) in is judged by whether
the real web server's unprivileged workers may open it."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path

import pytest

from badgateway.checks.model import Cause, Finding, Status
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings, Site
from badgateway.checks.socket_access import Worker, proxy_workers, socket_access
from badgateway.checks.steps.firewall import run as firewall
from tests.lab.fixtures_proxies import Proxy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the case is the bot running as root")


@pytest.fixture
def app_socket() -> Iterator[Path]:
    """A listening unix socket owned by root, in a directory anyone may traverse."""
    directory = Path(tempfile.mkdtemp(prefix="bg-sock-"))
    directory.chmod(0o755)
    path = directory / "app.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    try:
        yield path
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def nginx_workers_up() -> list[Worker]:
    """nginx listens before its master forks the workers: wait (bounded) until they run."""
    deadline = time.monotonic() + 5
    while not (workers := [w for w in proxy_workers() if w.process == "nginx"]):
        assert time.monotonic() < deadline, "no nginx worker process appeared"
        time.sleep(0.02)
    return workers


async def firewall_findings(proxy: Proxy, path: Path) -> dict[str, Finding]:
    site = Site(name="app", url=proxy.url, upstreams=(f"unix:{path}",))
    settings = Settings(allow_networks=(ip_network("127.0.0.0/8"),), sites=(site,), timeout_s=2)
    result = await firewall(await prepare("app", settings))
    return {f.code: f for f in result.findings}


async def test_a_root_only_socket_is_not_proof_the_proxy_can_reach_its_app(
    upstream: Callable[..., object], nginx_proxy: Callable[..., Proxy], app_socket: Path
) -> None:
    proxy = nginx_proxy(upstream("ok"))  # its workers run as an unprivileged user
    assert all(w.uid != 0 for w in nginx_workers_up())
    os.chmod(app_socket, 0o660)  # root:root, as a pool left at its defaults may make it

    access = socket_access(str(app_socket))
    assert access is not None and access.shown == "0660 root:root"
    assert any(who.startswith("nginx (") for who in access.denied)

    findings = await firewall_findings(proxy, app_socket)
    finding = findings["upstream_permission"]
    assert finding.cause is Cause.UPSTREAM_PERMISSION
    assert finding.severity is Status.FAIL
    assert "upstream_open" not in findings


async def test_a_socket_the_workers_may_open_is_open(
    upstream: Callable[..., object], nginx_proxy: Callable[..., Proxy], app_socket: Path
) -> None:
    proxy = nginx_proxy(upstream("ok"))
    nginx_workers_up()
    os.chmod(app_socket, 0o666)
    findings = await firewall_findings(proxy, app_socket)
    assert "upstream_open" in findings and "upstream_permission" not in findings
    assert "nginx (" in findings["upstream_open"].message


async def test_a_directory_the_workers_cannot_traverse_denies_them(
    upstream: Callable[..., object], nginx_proxy: Callable[..., Proxy], app_socket: Path
) -> None:
    nginx_proxy(upstream("ok"))
    nginx_workers_up()
    os.chmod(app_socket, 0o666)
    os.chmod(app_socket.parent, 0o700)
    access = socket_access(str(app_socket))
    assert access is not None and any(w.startswith("nginx (") for w in access.denied)
