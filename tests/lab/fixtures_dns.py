"""Lab fixtures: real DNS servers (BIND ``named``) on loopback, serving test zones under
``.test.`` (RFC 6761 reserves it), with answers on 127.0.0.x so nothing ever leaves the host.

Use the session-scoped fixture ``dns_lab``::

    def test_x(dns_lab):
        dns_lab.primary     # "127.0.0.1:PORT": server A, the reference answers
        dns_lab.secondary   # "127.0.0.1:PORT": server B, same names, some answers differ
        dns_lab.dead        # "127.0.0.1:PORT": a UDP port that swallows queries (timeouts)

Both servers are authoritative only (``recursion no``), so what they answer is exactly
what the zone files below say. Names (constants in this module, also on the lab object):

==========================  ===================================  ===============================
name                        server A (primary)                   server B (secondary)
==========================  ===================================  ===============================
``www.test`` (WWW)          A 127.0.0.10, TTL 300                same
``dual.test`` (DUAL)        A 127.0.0.10, AAAA ::1, TTL 300      same
``a.test`` (CNAME_HEAD)     CNAME b.test (60) -> CNAME c.test    same
                            (120) -> A 127.0.0.11 (30)
``missing.test`` (MISSING)  NXDOMAIN                             NXDOMAIN
``www.broken.test``         SERVFAIL (zone fails to load)        SERVFAIL
``moved.test`` (MOVED)      A 127.0.0.20, TTL 300                A 127.0.0.21, TTL 3600
``gone.test`` (GONE)        A 127.0.0.22, TTL 300                NXDOMAIN
``www.half.test`` (HALF)    SERVFAIL (zone fails to load)        A 127.0.0.23, TTL 300
``short.test`` (SHORT_TTL)  A 127.0.0.12, TTL 5                  same
``long.test`` (LONG_TTL)    A 127.0.0.13, TTL 86400              same
``noaddr.test`` (NOADDR)    TXT only (NOERROR, no A/AAAA)        same
``metadata.test``           A 169.254.169.254                    same
``metadata6.test``          AAAA fd00:ec2::254                   same
``loop.test`` (LOOP)        A 127.0.0.1                          same
``private.test``            A 10.0.0.5 (never connect: the       same
                            SSRF guard must refuse it)
``mixed.test`` (MIXED)      A 127.0.0.1 and A 10.0.0.5           same
==========================  ===================================  ===============================

A zone whose file fails to load makes BIND 9.18 answer SERVFAIL for every name in it
(verified: "zone broken.test/IN: not loaded due to errors" -> status SERVFAIL), which is
how a real authoritative server with a broken zone behaves.

Outside pytest, ``running_dns_lab(directory)`` is a context manager yielding the same
``DnsLab``, and ``python -m tests.lab.fixtures_dns`` runs one in the foreground.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.lab.process import ManagedProcess, free_udp_port, require_binary

WWW = "www.test"
WWW_IP = "127.0.0.10"
DUAL = "dual.test"
DUAL_IPV6 = "::1"
CNAME_HEAD = "a.test"
CNAME_CHAIN = ("a.test", "b.test", "c.test")
CNAME_TARGET_IP = "127.0.0.11"
MISSING = "missing.test"
SERVFAIL = "www.broken.test"
MOVED = "moved.test"
MOVED_PRIMARY_IP = "127.0.0.20"
MOVED_SECONDARY_IP = "127.0.0.21"
GONE = "gone.test"
GONE_PRIMARY_IP = "127.0.0.22"
HALF = "www.half.test"
HALF_SECONDARY_IP = "127.0.0.23"
SHORT_TTL = "short.test"
LONG_TTL = "long.test"
NOADDR = "noaddr.test"
METADATA = "metadata.test"
METADATA_IP = "169.254.169.254"
METADATA6 = "metadata6.test"
METADATA6_IP = "fd00:ec2::254"
LOOP = "loop.test"
LOOP_IP = "127.0.0.1"
PRIVATE = "private.test"
PRIVATE_IP = "10.0.0.5"
MIXED = "mixed.test"

_SOA = "@ 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n@ 300 IN NS ns.test.\n"

# Records shared by both servers, relative to the "test." zone.
_COMMON_RECORDS = f"""\
ns 300 IN A 127.0.0.1
www 300 IN A {WWW_IP}
dual 300 IN A {WWW_IP}
dual 300 IN AAAA {DUAL_IPV6}
a 60 IN CNAME b.test.
b 120 IN CNAME c.test.
c 30 IN A {CNAME_TARGET_IP}
short 5 IN A 127.0.0.12
long 86400 IN A 127.0.0.13
noaddr 300 IN TXT "no address here"
metadata 300 IN A {METADATA_IP}
metadata6 300 IN AAAA {METADATA6_IP}
loop 300 IN A {LOOP_IP}
private 300 IN A {PRIVATE_IP}
mixed 300 IN A {LOOP_IP}
mixed 300 IN A {PRIVATE_IP}
"""

_PRIMARY_RECORDS = f"""\
moved 300 IN A {MOVED_PRIMARY_IP}
gone 300 IN A {GONE_PRIMARY_IP}
"""

_SECONDARY_RECORDS = f"""\
moved 3600 IN A {MOVED_SECONDARY_IP}
"""

# A zone file BIND refuses to load: the server then answers SERVFAIL for the zone.
_BROKEN_ZONE = _SOA + "this line is not a record !\n"
_HALF_ZONE = _SOA + f"www 300 IN A {HALF_SECONDARY_IP}\n"


@dataclass(frozen=True)
class DnsServer:
    host: str
    port: int
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        """As Settings.resolvers takes it."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DnsLab:
    primary_server: DnsServer
    secondary_server: DnsServer
    dead_server: DnsServer

    @property
    def primary(self) -> str:
        return self.primary_server.address

    @property
    def secondary(self) -> str:
        return self.secondary_server.address

    @property
    def dead(self) -> str:
        return self.dead_server.address

    # The names, for tests that prefer attributes to imports.
    www = WWW
    www_ip = WWW_IP
    dual = DUAL
    cname_head = CNAME_HEAD
    cname_chain = CNAME_CHAIN
    cname_target_ip = CNAME_TARGET_IP
    missing = MISSING
    servfail = SERVFAIL
    moved = MOVED
    gone = GONE
    half = HALF
    short_ttl = SHORT_TTL
    long_ttl = LONG_TTL
    noaddr = NOADDR
    metadata = METADATA
    metadata6 = METADATA6
    loop = LOOP
    private = PRIVATE
    mixed = MIXED


def _named_conf(directory: Path, port: int, zones: dict[str, str]) -> str:
    zone_blocks = "".join(
        f'zone "{zone}" {{ type primary; file "{file}"; }};\n' for zone, file in zones.items()
    )
    # No control channel, no DNSSEC, no IPv6 listener: nothing but the test port is bound.
    return f"""\
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    minimal-responses yes;
}};
controls {{ }};
{zone_blocks}"""


def _write_server(directory: Path, port: int, test_records: str, half_ok: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test.zone").write_text(_SOA + _COMMON_RECORDS + test_records)
    (directory / "broken.zone").write_text(_BROKEN_ZONE)
    (directory / "half.zone").write_text(_HALF_ZONE if half_ok else _BROKEN_ZONE)
    conf = directory / "named.conf"
    conf.write_text(
        _named_conf(
            directory,
            port,
            {"test.": "test.zone", "broken.test.": "broken.zone", "half.test.": "half.zone"},
        )
    )
    return conf


def _wait_until_answering(server: DnsServer, timeout: float = 10.0) -> None:
    """Until the server answers for its zone (the port is bound before zones are loaded)."""
    deadline = time.monotonic() + timeout
    query = dns.message.make_query(WWW, "A")
    while time.monotonic() < deadline:
        if server.process is not None and server.process.proc.poll() is not None:
            raise RuntimeError(f"named exited early:\n{server.process.output()}")
        with contextlib.suppress(dns.exception.DNSException, OSError):
            reply = dns.query.udp(query, server.host, port=server.port, timeout=0.2)
            if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                return
        time.sleep(0.05)
    output = server.process.output() if server.process else ""
    raise TimeoutError(f"named on {server.address} did not answer in {timeout} s:\n{output}")


def _start_named(named: str, directory: Path, test_records: str, half_ok: bool) -> DnsServer:
    port = free_udp_port()
    conf = _write_server(directory, port, test_records, half_ok)
    # -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker is plenty for tests.
    process = ManagedProcess(
        [named, "-g", "-4", "-n", "1", "-c", str(conf), "-p", str(port)],
        directory / "named.log",
    )
    return DnsServer("127.0.0.1", port, process)


@contextlib.contextmanager
def _silent_udp_port() -> Iterator[DnsServer]:
    """A bound UDP socket nobody reads: queries sent there are never answered (no ICMP
    'port unreachable' either, so a client really has to time out)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield DnsServer("127.0.0.1", int(sock.getsockname()[1]))
    finally:
        sock.close()


@contextlib.contextmanager
def running_dns_lab(directory: Path) -> Iterator[DnsLab]:
    """Start servers A and B (and the silent port); stop them on exit."""
    named = require_binary("named", "/usr/sbin/named")
    servers: list[DnsServer] = []
    try:
        servers.append(_start_named(named, directory / "primary", _PRIMARY_RECORDS, False))
        servers.append(_start_named(named, directory / "secondary", _SECONDARY_RECORDS, True))
        for server in servers:
            _wait_until_answering(server)
        with _silent_udp_port() as dead:
            yield DnsLab(servers[0], servers[1], dead)
    finally:
        for server in servers:
            if server.process is not None:
                server.process.stop()


class ZoneServer:
    """A BIND of its own serving one zone whose records a test changes: ``serve(records)``
    rewrites the zone file (with a higher serial) and makes named reload it (SIGHUP), as an
    operator's change to the authoritative server does. ``address`` is as Settings.resolvers
    takes it; ``records`` are zone-file lines relative to ``zone``."""

    def __init__(self, directory: Path, zone: str, records: str) -> None:
        named = require_binary("named", "/usr/sbin/named")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.zone, self.serial = directory, zone.rstrip(".") + ".", 1
        self.port = free_udp_port()
        self._write(records)
        conf = directory / "named.conf"
        conf.write_text(_named_conf(directory, self.port, {self.zone: "zone.db"}))
        self.process = ManagedProcess(
            [named, "-g", "-4", "-n", "1", "-c", str(conf), "-p", str(self.port)],
            directory / "named.log",
        )
        self._wait_for_serial()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write(self, records: str) -> None:
        timers = "3600 600 86400 60"  # refresh, retry, expire, negative TTL
        soa = f"@ 300 IN SOA ns.{self.zone} hostmaster.{self.zone} {self.serial} {timers}\n"
        ns = f"@ 300 IN NS ns.{self.zone}\nns 300 IN A 127.0.0.1\n"
        (self.directory / "zone.db").write_text(soa + ns + records)

    def serve(self, records: str) -> None:
        """Replace the zone's records; returns once named answers with the new serial."""
        self.serial += 1
        self._write(records)
        self.process.proc.send_signal(signal.SIGHUP)
        self._wait_for_serial()

    def _wait_for_serial(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        query = dns.message.make_query(self.zone, "SOA")
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"named exited early:\n{self.process.output()}")
            with contextlib.suppress(dns.exception.DNSException, OSError):
                reply = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
                if reply.answer and f" {self.serial} " in reply.answer[0].to_text():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"named did not serve serial {self.serial}:\n{self.process.output()}")

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def zone_server(tmp_path: Path) -> Iterator[Callable[[str, str], ZoneServer]]:
    """``zone_server(zone, records) -> ZoneServer``: stopped at the end of the test."""
    started: list[ZoneServer] = []

    def start(zone: str, records: str) -> ZoneServer:
        server = ZoneServer(tmp_path / f"zone-{len(started)}", zone, records)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def dns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """Servers A (``.primary``) and B (``.secondary``) plus a silent port (``.dead``)."""
    with running_dns_lab(tmp_path_factory.mktemp("dns")) as lab:
        yield lab


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, running_dns_lab(Path(tmp)) as lab:
        print(f"primary={lab.primary} secondary={lab.secondary} dead={lab.dead}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
