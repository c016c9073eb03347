"""The SSRF guard's corpus: every disguise of a forbidden address is refused before any
packet leaves, and redirects cannot lead a probe to one either.

Loopback disguises are run through the whole ``diagnose`` against a recording listener
on the very port they name: the listener must see no connection at all. Disguises of other
forbidden ranges (metadata, private, multicast…) are only passed to ``prepare``, which
vets without probing, so that a guard bug could never send a packet off this host.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import (
    TargetRefused,
    check_address,
    embedded_ipv4,
    parse_ip,
    refusal_reason,
)
from badgateway.checks.http_probe import _vetted_address, fetch
from badgateway.checks.model import Status
from badgateway.checks.runner import diagnose, prepare
from badgateway.checks.settings import Settings
from badgateway.checks.steps.reload import run as run_reload
from badgateway.checks.target import parse_target
from tests.lab.fixtures_dns import DnsLab
from tests.lab.process import ManagedProcess, free_port, require_binary, wait_for_port


@dataclass
class Recorder:
    """A listener that counts every connection it accepts (and answers nothing)."""

    host: str
    port: int = 0
    accepted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(str(peer))
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def recorders() -> Iterator[dict[str, Recorder]]:
    made = {"v4": Recorder("127.0.0.1"), "v4b": Recorder("127.0.0.2")}
    if _ipv6_loopback():
        made["v6"] = Recorder("::1")
    try:
        yield made
    finally:
        for recorder in made.values():
            recorder.close()


@pytest.fixture(autouse=True)
def _no_connection_leaks(recorders: dict[str, Recorder]) -> Iterator[None]:
    for recorder in recorders.values():
        recorder.accepted.clear()
    yield
    for name, recorder in recorders.items():
        assert recorder.accepted == [], f"{name} listener was connected to: {recorder.accepted}"


# Forms that all mean 127.0.0.1 (or ::1) — safe to run a full diagnosis against.
LOOPBACK_DISGUISES = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "0x7f.1",
    "0X7F.0.0.1",
    "127.000.000.001",
    "0177.1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "localhost",
    "LOCALHOST.",
]


@pytest.mark.parametrize("host", LOOPBACK_DISGUISES)
async def test_loopback_disguises_are_refused_and_never_probed(
    host: str, recorders: dict[str, Recorder]
) -> None:
    with pytest.raises(TargetRefused, match=r"loopback|non-public"):
        await diagnose(f"http://{host}:{recorders['v4'].port}/", Settings())


async def test_ipv6_loopback_is_refused_and_never_probed(recorders: dict[str, Recorder]) -> None:
    if "v6" not in recorders:
        pytest.skip("no IPv6 loopback here")
    with pytest.raises(TargetRefused, match="loopback"):
        await diagnose(f"http://[::1]:{recorders['v6'].port}/", Settings())


# Forms of other forbidden ranges: vetted with prepare() only (it never connects).
FORBIDDEN = {
    "169.254.169.254": "cloud metadata",
    "0xa9fea9fe": "cloud metadata",
    "2852039166": "cloud metadata",
    "0251.0376.0251.0376": "cloud metadata",
    "[::ffff:169.254.169.254]": "cloud metadata",
    "[::ffff:0:a9fe:a9fe]": "cloud metadata",
    "[::a9fe:a9fe]": "cloud metadata",
    "[2002:a9fe:a9fe::1]": "cloud metadata",  # 6to4
    "[64:ff9b::a9fe:a9fe]": "cloud metadata",  # NAT64 well-known prefix
    "[64:ff9b:1::a9fe:a9fe]": "NAT64",  # RFC 8215 local-use NAT64
    "[fd00:ec2::254]": "cloud metadata",
    "169.254.1.1": "link-local",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "CGNAT",
    "0.0.0.0": "this network",
    "0": "this network",
    "224.0.0.1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    "198.18.0.1": "benchmarking",
    "192.0.0.170": "IETF",
    "[::]": "unspecified",
    "[::127.0.0.1]": "loopback",  # IPv4-compatible
    "[2002:7f00:1::]": "loopback",  # 6to4 of 127.0.0.1
    "[64:ff9b::7f00:1]": "loopback",  # NAT64 of 127.0.0.1
    "[::ffff:0:7f00:1]": "loopback",  # SIIT IPv4-translated
    "[fe80::1]": "link-local",
    "[fe80::1%25eth0]": "link-local",
    "[fc00::1]": "unique local",
    "[ff02::1]": "multicast",
    "[2001:db8::1]": "documentation",
    "[3fff::1]": "documentation",
}


@pytest.mark.parametrize(("host", "why"), list(FORBIDDEN.items()))
async def test_forbidden_ranges_are_refused(host: str, why: str) -> None:
    with pytest.raises(TargetRefused, match=why):
        await prepare(f"http://{host}/", Settings())
    with pytest.raises(TargetRefused, match=why):
        await prepare(f"https://{host}:8443/x", Settings())


async def test_names_resolving_to_forbidden_addresses(dns_lab: DnsLab) -> None:
    lab = Settings(resolvers=(dns_lab.primary,))
    for name, why in {
        "metadata.test": "cloud metadata",
        "metadata6.test": "cloud metadata",
        "private.test": "private",
        "loop.test": "loopback",
    }.items():
        with pytest.raises(TargetRefused, match=why):
            await prepare(f"http://{name}/", lab)
    # One forbidden address among allowed ones refuses the whole target.
    allowed = Settings(
        resolvers=(dns_lab.primary,), allow_networks=(ipaddress.ip_network("127.0.0.0/8"),)
    )
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.5"):
        await prepare("http://mixed.test/", allowed)
    ctx = await prepare("http://loop.test/", allowed)
    assert ctx.addresses == ("127.0.0.1",)


async def test_name_to_loopback_is_never_probed(
    dns_lab: DnsLab, recorders: dict[str, Recorder]
) -> None:
    lab = Settings(resolvers=(dns_lab.primary,))
    with pytest.raises(TargetRefused):
        await diagnose(f"http://loop.test:{recorders['v4'].port}/", lab)


def test_allow_networks_open_only_what_they_name() -> None:
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    check_address("127.0.0.1", loopback)
    check_address("::ffff:127.0.0.1", loopback)  # the same destination
    with pytest.raises(TargetRefused, match="cloud metadata"):
        check_address("169.254.169.254", loopback)
    # Opening all of IPv6 must not open the IPv4 addresses IPv6 forms embed.
    all_v6 = (ipaddress.ip_network("::/0"),)
    check_address("::1", all_v6)
    for disguised in ("::ffff:169.254.169.254", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe"):
        with pytest.raises(TargetRefused):
            check_address(disguised, all_v6)


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "8.8.8.8"):
        check_address(address)
        assert refusal_reason(ipaddress.ip_address(address)) is None


async def test_public_target_is_prepared_without_probing() -> None:
    ctx = await prepare("http://93.184.216.34/", Settings())  # prepare never connects
    assert ctx.addresses == ("93.184.216.34",)


def test_parse_ip_and_embedded() -> None:
    assert parse_ip("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_ip("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip("shop.example.com") is None
    assert parse_ip("256.1.1.1") is None
    assert parse_ip("1.2.3.4.5") is None
    assert embedded_ipv4(ipaddress.IPv6Address("2002:a9fe:a9fe::")) == ipaddress.ip_address(
        "169.254.169.254"
    )
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None
    with pytest.raises(TargetRefused, match="not an IP address"):
        check_address("not-an-ip")


# --- redirects ----------------------------------------------------------------------------


@dataclass
class Redirector:
    port: int
    paths: dict[str, str]  # path -> Location


@pytest.fixture(scope="module")
def redirector(
    recorders: dict[str, Recorder], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Redirector]:
    """A real nginx on 127.0.0.1 whose paths redirect to forbidden loopback listeners."""
    binary = require_binary("nginx", "/usr/sbin/nginx")
    directory: Path = tmp_path_factory.mktemp("redirector")
    port = free_port()
    other = recorders["v4b"].port
    paths = {
        "/to-127-0-0-2": f"http://127.0.0.2:{other}/",
        "/to-hex": f"http://0x7f000002:{other}/",
        "/to-mapped": f"http://[::ffff:127.0.0.2]:{other}/",
        "/to-localhost-name": f"http://localhost:{recorders['v4'].port}/",
    }
    if "v6" in recorders:
        paths["/to-v6"] = f"http://[::1]:{recorders['v6'].port}/"
    locations = "\n".join(
        f"        location = {path} {{ return 302 {target}; }}" for path, target in paths.items()
    )
    temp = " ".join(
        f"{name}_temp_path {directory}/tmp_{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"""worker_processes 1;
error_log {directory}/error.log warn;
pid {directory}/nginx.pid;
events {{ worker_connections 32; }}
http {{
    access_log off;
    {temp}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""
    )
    process = ManagedProcess(
        [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        directory / "out.log",
    )
    try:
        wait_for_port(port)
        yield Redirector(port, paths)
    finally:
        process.stop()


# Only the redirector's own address is open; its redirects point elsewhere on loopback.
ONLY_REDIRECTOR = Settings(
    allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), timeout_s=3, reload_spacing_s=0.05
)


def _ctx(url: str) -> ProbeContext:
    return ProbeContext(parse_target(url, ONLY_REDIRECTOR), ONLY_REDIRECTOR, ("127.0.0.1",))


@pytest.mark.parametrize(
    "path", ["/to-127-0-0-2", "/to-hex", "/to-mapped", "/to-v6", "/to-localhost-name"]
)
async def test_redirects_to_forbidden_addresses_are_not_followed(
    path: str, redirector: Redirector, recorders: dict[str, Recorder]
) -> None:
    if path not in redirector.paths:
        pytest.skip("no IPv6 loopback here")
    if path == "/to-localhost-name":
        # localhost is 127.0.0.1, which is open here: make the name itself the test by
        # closing loopback entirely for the hop (the first request is pinned and vetted).
        settings = Settings(timeout_s=3)
        ctx = ProbeContext(
            parse_target(f"http://127.0.0.1:{redirector.port}{path}", settings),
            settings,
            ("127.0.0.1",),
        )
    else:
        ctx = _ctx(f"http://127.0.0.1:{redirector.port}{path}")
    attempt = await fetch(ctx)
    assert attempt.status == 302
    assert attempt.error is not None
    assert attempt.error["kind"] == "refused_by_guard"
    assert redirector.paths[path] in attempt.error["message"]


async def test_reload_step_reports_the_refused_redirect(redirector: Redirector) -> None:
    result = await run_reload(_ctx(f"http://127.0.0.1:{redirector.port}/to-127-0-0-2"))
    codes = [f.code for f in result.findings]
    assert "redirect_not_followed" in codes
    assert result.status is Status.OK  # the site answered; it was the bot that stopped


async def test_redirect_targets_that_resolve_to_metadata_are_refused(dns_lab: DnsLab) -> None:
    settings = Settings(resolvers=(dns_lab.primary,))
    for url in (
        "http://metadata.test/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://private.test/",
    ):
        with pytest.raises(TargetRefused):
            await _vetted_address(url, settings, 1.0)
