"""Shared fixtures. Each lab module registers its own fixtures as a pytest plugin.

The network guard below enforces the workplace rule in every in-process test: traffic goes
only to loopback, unix sockets, or the TEST-NET-2/3 ranges used inside network namespaces the
tests create. Anything else (a system resolver on 10.x, a public host) is refused and fails
the test that tried it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from badgateway.bot.slack import root_updates
from badgateway.bot.slack_client import PostPace

pytest_plugins = [
    "tests.hypothesis_profiles",  # before any test module: --hypothesis-profile=long
    "tests.lab.fixtures_upstreams",
    "tests.lab.fixtures_proxies",
    "tests.lab.proxy_caddy",
    "tests.lab.proxy_varnish",
    "tests.lab.fixtures_dns",
    "tests.lab.fixtures_netns",
    "tests.lab.fixtures_redis",
    "tests.lab.fixtures_places",
    "tests.lab.fixtures_slack",
    "tests.lab.alerts",
    "tests.lab.alertmanager",
    "tests.lab.queue_web",
]

_ALLOWED = [
    ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "198.51.100.0/24", "203.0.113.0/24")
]
_violations: list[str] = []


def _allowed(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX path or abstract socket
    host = str(address[0]).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # connect() to a name would resolve outside our control
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in _ALLOWED)


def _guarded(name: str) -> Any:
    original = getattr(socket.socket, name)

    def method(self: socket.socket, address: Any, *args: Any) -> Any:
        target = args[-1] if name == "sendto" and args else address
        if not _allowed(target):
            _violations.append(f"{name} to {target!r}")
            raise OSError(errno.ENETUNREACH, f"test network guard: {target!r} is off-limits")
        return original(self, address, *args)

    return method


def _hosts_file_names() -> set[str]:
    names: set[str] = set()
    try:
        with open("/etc/hosts", encoding="utf-8") as fh:
            for line in fh:
                names.update(line.split("#", 1)[0].split())
    except OSError:
        pass
    return names


_HOSTS = _hosts_file_names()


def _local_lookup(host: Any) -> bool:
    """A lookup the C library answers without asking a DNS server."""
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        return True
    except ValueError:
        return text in _HOSTS


_real_getaddrinfo = socket.getaddrinfo
_real_getnameinfo = socket.getnameinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _local_lookup(host):
        _violations.append(f"getaddrinfo({host!r}) (would ask the system's DNS server)")
        raise socket.gaierror(socket.EAI_NONAME, "test network guard: no system DNS in tests")
    return _real_getaddrinfo(host, *args, **kwargs)


def _getnameinfo(sockaddr: Any, flags: int) -> Any:
    if str(sockaddr[0]) not in _HOSTS:
        _violations.append(f"getnameinfo({sockaddr[0]!r}) (would ask the system's DNS server)")
        raise socket.gaierror(socket.EAI_NONAME, "test network guard: no system DNS in tests")
    return _real_getnameinfo(sockaddr, flags)


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, _guarded(name))
    monkeypatch.setattr(socket, "getaddrinfo", _getaddrinfo)
    monkeypatch.setattr(socket, "getnameinfo", _getnameinfo)
    _violations.clear()
    yield
    if _violations:
        found = ", ".join(sorted(set(_violations)))
        _violations.clear()
        pytest.fail(f"the test sent traffic outside loopback/test namespaces: {found}")


@pytest.fixture(autouse=True)
def _posts_unpaced_unless_slack_limits(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot paces its posts and root updates to Slack's limits (bot.slack_client.PostPace,
    bot.slack.root_updates). A test whose stand-in does not enforce those limits lifts the
    pace, so that a thread's seven posts do not cost it four seconds and a root's verdict does
    not wait two; a test marked ``slack_limits`` keeps Slack's pace and turns on the
    stand-in's limits itself. Worker and web subprocesses get the same from their environment
    (``BADGATEWAY_SLACK_RATE_SCALE``, tests.lab.slack_limits.UNLIMITED_ENV)."""
    if request.node.get_closest_marker("slack_limits") is None:
        monkeypatch.setattr(PostPace, "CHANNEL_PER_MINUTE", 60_000.0)
        monkeypatch.setattr(PostPace, "CHANNEL_BURST", 1_000)
        monkeypatch.setattr(PostPace, "WORKSPACE_PER_MINUTE", 60_000.0)
        monkeypatch.setattr(PostPace, "WORKSPACE_BURST", 1_000)
        monkeypatch.setattr(root_updates, "PER_ROOT_S", 0.0)
        monkeypatch.setattr(PostPace, "UPDATES_PER_MINUTE", 60_000.0)
        monkeypatch.setattr(PostPace, "READS_PER_MINUTE", 60_000.0)


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`badgateway diagnose` keeps its runs in $XDG_STATE_HOME: each test its own (in
    subprocesses too), never the home directory's, and no test compares with another's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
