"""Lab fixtures for the network path: a network namespace holding a host that a firewall
guards, and the test certificates (tests.lab.certs).

``netns_lab`` creates a namespace ``bgw-<random>`` joined to this machine by a veth pair
on a /30 out of a TEST-NET range (RFC 5737, e.g. 198.51.100.0/24): documentation space, so
the address can never be a real host, and it exists only inside the namespace the test made. Inside,
``iptables`` (whichever backend works in a namespace here: nft, else legacy) drops or
rejects a port, so a connect from this machine times out or is refused for real.

Tests that use it are marked ``@pytest.mark.netns``; they are skipped, with the reason,
when not root or when ``ip netns``/``iptables`` do not work here (containers without
CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.lab.certs import LabCerts, make_test_certs
from tests.lab.process import ManagedProcess, free_port

# TEST-NET-2, -3 and -1 (RFC 5737): reserved for documentation, never routed, so the
# address can never be a real host. A range this machine already uses (some sandboxes put
# eth0 in TEST-NET-1) is passed over.
NETNS_POOLS = tuple(
    ipaddress.IPv4Network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24")
)

FirewallAction = Literal["drop", "reject", "unreachable"]
_RULE_TARGETS: dict[FirewallAction, tuple[str, ...]] = {
    "drop": ("-j", "DROP"),  # silence: the connect times out
    "reject": ("-j", "REJECT", "--reject-with", "tcp-reset"),  # RST: connection refused
    "unreachable": ("-j", "REJECT", "--reject-with", "icmp-host-unreachable"),
}


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class NetnsLab:
    """A namespace reachable from this machine at ``address`` over a veth pair."""

    name: str
    network: ipaddress.IPv4Network  # the /30 both ends live in; allow it in Settings
    host_address: str  # this machine's end of the veth pair
    address: str  # the namespace's end: where its servers listen
    iptables: str  # the iptables binary that works inside the namespace

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(*self.argv(*command), check=check)

    def start(self, command: list[str], log_path: Path) -> ManagedProcess:
        """A server process inside the namespace; the caller stops it."""
        return ManagedProcess(self.argv(*command), log_path)

    @contextlib.contextmanager
    def firewall(self, port: int, action: FirewallAction = "drop") -> Iterator[None]:
        """While inside the block, incoming TCP to ``port`` in the namespace is dropped,
        reset (refused) or answered with ICMP host-unreachable."""
        rule = ("INPUT", "-p", "tcp", "--dport", str(port), *_RULE_TARGETS[action])
        self.run(self.iptables, "-w", "-A", *rule)
        try:
            yield
        finally:
            self.run(self.iptables, "-w", "-D", *rule, check=False)


def _require_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (run the suite as root)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed (run scripts/install-test-servers)")


def _addresses_in_use() -> set[ipaddress.IPv4Network]:
    taken: set[ipaddress.IPv4Network] = set()
    shown = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
    for line in shown.splitlines():
        fields = line.split()
        if "inet" in fields:
            with contextlib.suppress(ValueError):
                taken.add(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    return taken


def pick_subnet(
    prefix: int = 30, pools: tuple[ipaddress.IPv4Network, ...] = NETNS_POOLS
) -> ipaddress.IPv4Network:
    """A random /``prefix`` of ``pools`` that no interface here overlaps (parallel runs stay
    apart)."""
    taken = _addresses_in_use()
    for pool in pools:
        free = [n for n in pool.subnets(new_prefix=prefix) if not any(n.overlaps(t) for t in taken)]
        if free:
            return free[secrets.randbelow(len(free))]
    pytest.skip(f"every /{prefix} of the TEST-NET ranges is in use here")


def _working_iptables(namespace: str) -> str:
    """The first iptables that can add and delete a rule inside the namespace."""
    rule = ("INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
    tried: list[str] = []
    for binary in ("iptables", "iptables-nft", "iptables-legacy"):
        path = shutil.which(binary)
        if path is None:
            continue
        added = _run("ip", "netns", "exec", namespace, path, "-w", "-A", *rule, check=False)
        if added.returncode == 0:
            _run("ip", "netns", "exec", namespace, path, "-w", "-D", *rule, check=False)
            return path
        tried.append(f"{binary}: {added.stderr.strip()}")
    pytest.skip("no iptables works inside a network namespace here: " + "; ".join(tried))


@contextlib.contextmanager
def netns_lab_context() -> Iterator[NetnsLab]:
    """Create the namespace and veth pair; always delete them (which removes the veth too)."""
    _require_netns()
    tag = secrets.token_hex(3)
    name = f"bgw-{tag}"
    outside, inside = f"bgw{tag}h", f"bgw{tag}n"  # interface names stay under 16 chars
    network = pick_subnet()
    host_ip, ns_ip = (str(h) for h in network.hosts())
    created = _run("ip", "netns", "add", name, check=False)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    try:
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", name)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", outside)
        _run("ip", "link", "set", outside, "up")
        _run("ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", inside)
        _run("ip", "-n", name, "link", "set", inside, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        yield NetnsLab(name, network, host_ip, ns_ip, _working_iptables(name))
    finally:
        _run("ip", "link", "del", outside, check=False)
        _run("ip", "netns", "del", name, check=False)


@pytest.fixture(scope="module")
def netns_lab() -> Iterator[NetnsLab]:
    """A fresh namespace for the module, deleted afterwards."""
    with netns_lab_context() as lab:
        yield lab


@dataclass(frozen=True)
class NetnsListener:
    lab: NetnsLab
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{self.lab.address}:{self.port}/"


@pytest.fixture(scope="module")
def netns_http_server(
    netns_lab: NetnsLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetnsListener]:
    """Python's HTTP server listening inside the namespace (reachable until firewalled)."""
    port = free_port()  # any port is free in a new namespace; this one is also free here
    root = tmp_path_factory.mktemp("netns-www")
    (root / "index.html").write_text("hello from the namespace\n")
    command = [sys.executable, "-m", "http.server", str(port), "--bind", netns_lab.address]
    command += ["--directory", str(root)]
    process = netns_lab.start(command, root.parent / f"{netns_lab.name}.log")
    try:
        _wait_inside(netns_lab, port, process)
        yield NetnsListener(netns_lab, port, process)
    finally:
        process.stop()


def _wait_inside(lab: NetnsLab, port: int, process: ManagedProcess) -> None:
    """Wait for the server by connecting from this machine over the veth pair."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"the namespace's server exited: {process.output()}")
        with contextlib.suppress(OSError), socket.create_connection((lab.address, port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {lab.address}:{port} in {lab.name}")


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    """The test CA and leaf certificates (valid, expired, expiring, wrong host, self-signed)."""
    return make_test_certs(tmp_path_factory.mktemp("certs"))
