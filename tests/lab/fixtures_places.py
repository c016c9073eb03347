"""The places lab (issue 14): network namespaces as the places a site is probed from.

``places_lab`` (module scope) builds, out of tests.lab.fixtures_netns's pieces:

* a bridge on this machine, on a /28 of a TEST-NET range (RFC 5737) that no interface here
  overlaps, joining every namespace below by a veth pair: one segment, no routing, so no
  sysctl of this machine is touched;
* a site namespace: a real HTTP server (Python's) on ``site.address:8080``, a second address
  where the site used to be (``site.old_address``: nothing listens there now, so a connect
  is refused), and the central DNS server (BIND) that the sites file's ``resolvers`` name;
* one namespace per place (``eu-west``, ``us-east``), each with its own DNS server (BIND on
  the place's address) and its own vantage worker PROCESS (``ip netns exec NS badgateway
  worker --vantage NAME``, this checkout on PYTHONPATH). eu-west resolves through
  /etc/netns/NS/resolv.conf (what ``ip netns exec`` puts in place of /etc/resolv.conf: the
  machine's own resolvers), us-east through BADGATEWAY_VANTAGE_RESOLVERS;
* an ``asker`` namespace with no worker, for a terminal that cannot reach the site, and
  with the asker machine's DNS server (BIND), which `diagnose --from`'s own view (``here``)
  resolves through, wherever the terminal runs;
* a redis-server on loopback and on this machine's address on the bridge, and a default
  worker here (its sink records every call in Redis, tests.lab.fixtures_redis.LabSink).

Tests change one thing and put it back: ``firewall_from(place)`` (the site drops that
place's traffic), ``answers(place, address)`` (that place's resolver answers another
address), ``blocked(ns)`` (a namespace cannot connect to the site). ``diagnose(...)`` runs
`badgateway diagnose shop --from …` as a user would, here or inside a namespace. Everything
(namespaces, bridge, /etc/netns entries, processes) is removed afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.exception
import dns.message
import dns.query
import pytest

from tests.lab import REPO
from tests.lab.fixtures_dns import _named_conf
from tests.lab.fixtures_netns import (
    NETNS_POOLS,
    _require_netns,
    _run,
    _working_iptables,
    pick_subnet,
)
from tests.lab.fixtures_redis import LAB_QUEUE_ENV, RedisServer
from tests.lab.process import ManagedProcess, require_binary
from tests.lab.slack_limits import UNLIMITED_ENV

PLACES = ("eu-west", "us-east")
SITE_PORT = 8080
SITE_NAME = "shop.lab.test"
HOST_WAIT_S = 9  # how long the default worker waits for a place (the budget is 6 s)
# Processes started in the lab run this checkout's CLI, with the lab's place step installed
# (tests.lab.place_steps), so a test may also submit that step.
CLI = (sys.executable, "-m", "tests.lab.place_steps")
# Pools the test network guard lets the test process talk to (tests/conftest.py).
_GUARDED_POOLS = tuple(
    p for p in NETNS_POOLS if not p.overlaps(ipaddress.ip_network("192.0.2.0/24"))
)


class ZoneAt:
    """BIND serving ``lab.test`` on ``address:53`` inside a namespace; ``serve(ip)`` makes
    ``shop.lab.test`` answer ``ip`` (a new serial, SIGHUP), as an operator's change does."""

    def __init__(self, ns: str, address: str, directory: Path, answer: str) -> None:
        named = require_binary("named", "/usr/sbin/named")
        directory.mkdir(parents=True, exist_ok=True)
        self.address, self.directory, self.serial = address, directory, 0
        conf = directory / "named.conf"
        # The lab's named.conf, listening on this namespace's address instead of loopback.
        text = _named_conf(directory, 53, {"lab.test.": "zone.db"})
        conf.write_text(text.replace("{ 127.0.0.1; }", f"{{ {address}; }}"))
        self._write(answer)
        argv = ["ip", "netns", "exec", ns, named, "-g", "-4", "-n", "1", "-c", str(conf)]
        self.process = ManagedProcess(argv, directory / "named.log")
        self._wait_for_serial()

    def _write(self, answer: str) -> None:
        self.serial += 1
        soa = f"@ 300 IN SOA ns.lab.test. hostmaster.lab.test. {self.serial} 3600 600 86400 5\n"
        records = f"@ 300 IN NS ns.lab.test.\nns 300 IN A {self.address}\nshop 5 IN A {answer}\n"
        (self.directory / "zone.db").write_text(soa + records)

    def serve(self, answer: str) -> None:
        self._write(answer)
        self.process.proc.send_signal(signal.SIGHUP)
        self._wait_for_serial()

    def _wait_for_serial(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        query = dns.message.make_query("lab.test.", "SOA")
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"named exited early:\n{self.process.output()}")
            with contextlib.suppress(dns.exception.DNSException, OSError):
                reply = dns.query.udp(query, self.address, port=53, timeout=0.2)
                if reply.answer and f" {self.serial} " in reply.answer[0].to_text():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"named on {self.address} did not serve serial {self.serial}")


@dataclass
class Namespace:
    label: str  # "site", "eu-west", "asker"
    name: str  # the namespace's name
    address: str  # its end on the lab's segment


@dataclass
class PlacesLab:
    directory: Path
    subnet: ipaddress.IPv4Network
    host_address: str  # this machine's address on the bridge
    iptables: str
    site: Namespace
    old_address: str  # where the site used to be (in the site namespace; nothing listens)
    places: dict[str, Namespace]
    asker: Namespace
    redis: RedisServer
    sites_path: Path
    dns: dict[str, ZoneAt] = field(default_factory=dict)  # "central" and each place
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def redis_url_there(self) -> str:
        """Redis as the namespaces reach it (over the bridge)."""
        return f"redis://{self.host_address}:{self.redis.port}/0"

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS"))}
        return {
            **base,
            **LAB_QUEUE_ENV,
            **UNLIMITED_ENV,
            "PYTHONPATH": str(REPO),
            "BADGATEWAY_SITES": str(self.sites_path),
            "REDIS_URL": self.redis_url_there,
            **extra,
        }

    def in_ns(self, ns: str | None, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)

    # -- processes -------------------------------------------------------------------------

    def start_default_worker(self) -> None:
        env = self.env(
            REDIS_URL=self.redis.url,
            BADGATEWAY_SINK="tests.lab.place_steps:places_sink",
            BADGATEWAY_WORKER_NAME="central",
            BADGATEWAY_QUEUE_HOST_WAIT_S=str(HOST_WAIT_S),
        )
        self._start("central", [*CLI, "worker"], env, "default")

    def start_vantage(self, place: str) -> None:
        ns = self.places[place]
        extra = {"BADGATEWAY_WORKER_NAME": f"v-{place}"}
        if place == "us-east":  # eu-west resolves through its /etc/netns resolv.conf
            extra["BADGATEWAY_VANTAGE_RESOLVERS"] = f"{ns.address}:53"
        argv = self.in_ns(ns.name, *CLI, "worker", "--vantage", place)
        self._start(f"v-{place}", argv, self.env(**extra), f"probe@{place}")

    def _start(self, name: str, argv: list[str], env: dict[str, str], queue: str) -> None:
        log = self.directory / f"{name}-{int(time.time() * 1000)}.log"
        process = ManagedProcess(argv, log, env=env, cwd=str(REPO))
        self.processes[name] = process
        key = f"bgw:saq:{queue}:worker_info:{name}-{queue}"
        client = self.redis.client()
        deadline = time.monotonic() + 30
        try:
            while not client.exists(key):
                if process.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{process.output()[-3000:]}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self, name: str) -> None:
        """SIGKILL a lab process (``v-us-east``): no goodbye, its jobs left running."""
        process = self.processes.pop(name)
        os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait(10)

    def active(self, queue: str) -> int:
        client = self.redis.client()
        try:
            return cast("int", client.llen(f"bgw:saq:{queue}:active"))
        finally:
            client.close()

    def diagnose(self, *places: str, ns: str | None = None) -> subprocess.Popen[str]:
        """`badgateway diagnose shop --from PLACES --json`, here or inside ``ns``."""
        redis_url = self.redis_url_there if ns else self.redis.url
        argv = self.in_ns(ns, *CLI, "diagnose", "shop", "--from", ",".join(places), "--json")
        # The asker's machine resolves through its own DNS server (``answers("asker", …)``).
        resolver = f"{self.asker.address}:53"
        return subprocess.Popen(
            argv,
            env=self.env(REDIS_URL=redis_url, BADGATEWAY_VANTAGE_RESOLVERS=resolver),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def diagnosis(self, *places: str, ns: str | None = None) -> dict[str, Any]:
        """The JSON document `diagnose --from` prints; fails with its stderr otherwise."""
        return finished(self.diagnose(*places, ns=ns))

    # -- what tests change -----------------------------------------------------------------

    @contextlib.contextmanager
    def firewall_from(self, place: str) -> Iterator[None]:
        """The site drops every packet from ``place`` (a firewall allow-list that lacks it)."""
        rule = ("INPUT", "-s", self.places[place].address, "-j", "DROP")
        _run("ip", "netns", "exec", self.site.name, self.iptables, "-w", "-A", *rule)
        try:
            yield
        finally:
            _run("ip", "netns", "exec", self.site.name, self.iptables, "-w", "-D", *rule)

    @contextlib.contextmanager
    def answers(self, place: str, address: str) -> Iterator[None]:
        """``place``'s resolver answers ``address`` for the site's name (an old record)."""
        self.dns[place].serve(address)
        try:
            yield
        finally:
            self.dns[place].serve(self.site.address)

    @contextlib.contextmanager
    def blocked(self, ns: Namespace) -> Iterator[None]:
        """``ns`` cannot connect to the site (a VPN or local firewall on the asker's side);
        its DNS still answers."""
        port = ("-p", "tcp", "--dport", str(SITE_PORT))
        rule = ("OUTPUT", "-d", self.site.address, *port, "-j", "REJECT")
        _run("ip", "netns", "exec", ns.name, self.iptables, "-w", "-A", *rule)
        try:
            yield
        finally:
            _run("ip", "netns", "exec", ns.name, self.iptables, "-w", "-D", *rule)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(signal.SIGTERM, timeout=10)
        self.processes.clear()
        for server in self.dns.values():
            server.process.stop()


def finished(run: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = run.communicate(timeout=timeout)
    if run.returncode != 0:
        raise AssertionError(f"diagnose --from exited {run.returncode}:\n{err[-3000:]}")
    return dict(json.loads(out))


def _sites(path: Path, subnet: ipaddress.IPv4Network, central: str) -> None:
    places = ", ".join(f'"{p}"' for p in PLACES)
    path.write_text(
        f"""[settings]
allow_networks = ["{subnet}"]
resolvers = ["{central}:53"]
timeout_s = 2.5
diagnosis_budget_s = 6
vantages = [{places}]

[[site]]
name = "shop"
url = "http://{SITE_NAME}:{SITE_PORT}/"
""",
        encoding="utf-8",
    )


@contextlib.contextmanager
def _segment(
    tag: str, subnet: ipaddress.IPv4Network, labels: list[str]
) -> Iterator[tuple[str, list[Namespace]]]:
    """The bridge (this machine's address: the first) and one namespace per label on it."""
    hosts = [str(h) for h in subnet.hosts()]
    bridge = f"bgwb{tag}"
    made: list[Namespace] = []
    try:
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{hosts[0]}/{subnet.prefixlen}", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        for i, label in enumerate(labels):
            ns = Namespace(label, f"bgw-{tag}-{label}", hosts[i + 1])
            _run("ip", "netns", "add", ns.name)
            made.append(ns)
            outside, inside = f"bgw{tag}{i}h", f"bgw{tag}{i}n"
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", inside, "netns", ns.name)
            _run("ip", "link", "set", outside, "master", bridge, "up")
            _run(
                "ip",
                "-n",
                ns.name,
                "addr",
                "add",
                f"{ns.address}/{subnet.prefixlen}",
                "dev",
                inside,
            )
            _run("ip", "-n", ns.name, "link", "set", inside, "up")
            _run("ip", "-n", ns.name, "link", "set", "lo", "up")
        yield hosts[0], made
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth, and so the pair
            _run("ip", "netns", "del", ns.name, check=False)
        _run("ip", "link", "del", bridge, check=False)


@contextlib.contextmanager
def places_lab_context(directory: Path) -> Iterator[PlacesLab]:
    _require_netns()
    tag = secrets.token_hex(3)
    subnet = pick_subnet(28, _GUARDED_POOLS)
    netns_etc: list[Path] = []
    lab: PlacesLab | None = None
    with _segment(tag, subnet, ["site", *PLACES, "asker"]) as (host_address, spaces):
        try:
            site, *place_spaces, asker = spaces
            old_address = str(list(subnet.hosts())[len(spaces) + 1])
            _run("ip", "-n", site.name, "addr", "add", f"{old_address}/{subnet.prefixlen}", "dev",
                 f"bgw{tag}0n")  # fmt: skip
            redis = RedisServer(directory / "redis")
            redis.directory.mkdir()
            redis.start()
            client = redis.client()
            client.config_set("bind", f"127.0.0.1 {host_address}")
            client.config_set("protected-mode", "no")
            client.close()
            sites_path = directory / "sites.toml"
            _sites(sites_path, subnet, site.address)
            lab = PlacesLab(
                directory=directory,
                subnet=subnet,
                host_address=host_address,
                iptables=_working_iptables(site.name),
                site=site,
                old_address=old_address,
                places={ns.label: ns for ns in place_spaces},
                asker=asker,
                redis=redis,
                sites_path=sites_path,
            )
            www = directory / "www"
            www.mkdir()
            (www / "index.html").write_text("the shop\n")
            http = [sys.executable, "-m", "http.server", str(SITE_PORT), "--bind", site.address]
            lab.processes["site"] = ManagedProcess(
                lab.in_ns(site.name, *http, "--directory", str(www)), directory / "site.log"
            )
            lab.dns["central"] = ZoneAt(
                site.name, site.address, directory / "dns-central", site.address
            )
            # Each place resolves through a DNS server of its own, and so does the asker's
            # machine (the terminal's `here`, through BADGATEWAY_VANTAGE_RESOLVERS).
            for ns in [*place_spaces, asker]:
                lab.dns[ns.label] = ZoneAt(
                    ns.name, ns.address, directory / f"dns-{ns.label}", site.address
                )
            # eu-west's machine resolves through its own resolver: /etc/netns/NS/resolv.conf
            # is what `ip netns exec` shows there as /etc/resolv.conf.
            eu = lab.places["eu-west"]
            etc = Path("/etc/netns") / eu.name
            if not etc.parent.exists():
                netns_etc.append(etc.parent)  # made here, removed with the lab
            etc.mkdir(parents=True)
            netns_etc.insert(0, etc)
            (etc / "resolv.conf").write_text(f"nameserver {eu.address}\n")
            _wait_site(lab)
            lab.start_default_worker()
            for place in PLACES:
                lab.start_vantage(place)
            yield lab
        finally:
            if lab is not None:
                lab.stop()
                lab.redis.stop()
            for etc in netns_etc:  # the namespace's entry first, then /etc/netns if made here
                with contextlib.suppress(OSError):
                    (etc / "resolv.conf").unlink(missing_ok=True)
                    etc.rmdir()


def _wait_site(lab: PlacesLab) -> None:
    """Until the site's server listens (reached from here, over the bridge)."""
    deadline = time.monotonic() + 10
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((lab.site.address, SITE_PORT), 0.2),
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the site did not answer:\n{lab.processes['site'].output()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def places_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlacesLab]:
    """The places lab, once per module (see the module's docstring)."""
    with places_lab_context(tmp_path_factory.mktemp("places")) as lab:
        yield lab
