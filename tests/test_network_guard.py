"""The test-suite's own network guard refuses anything but loopback and test namespaces."""

import socket

import pytest

from tests import conftest


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (("127.0.0.1", 53), True),
        (("::1", 80, 0, 0), True),
        (("::ffff:127.0.0.1", 80, 0, 0), True),
        (("198.51.100.10", 80), True),
        (("192.0.2.1", 80), False),  # this machine's own LAN here: never a test host
        (("10.255.255.53", 53), False),
        (("8.8.8.8", 53), False),
        (("example.com", 80), False),
        ("/run/php/php-fpm.sock", True),
    ],
)
def test_allowed_destinations(address: object, allowed: bool) -> None:
    assert conftest._allowed(address) is allowed


def test_a_forbidden_connect_is_refused_before_any_packet() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError):
        s.sendto(b"x", ("10.255.255.53", 53))
    assert conftest._violations  # recorded, so the guard fails the test...
    conftest._violations.clear()  # ...which this test expects, so it clears the record


def test_system_dns_lookups_are_refused_but_hosts_file_names_pass() -> None:
    assert socket.getaddrinfo("localhost", 80)  # answered from /etc/hosts
    assert socket.getaddrinfo("127.0.0.5", 80)  # a literal needs no lookup
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("www.example.com", 80)
    with pytest.raises(socket.gaierror):
        socket.getnameinfo(("127.0.0.77", 0), socket.NI_NAMEREQD)
    assert len(conftest._violations) == 2
    conftest._violations.clear()
