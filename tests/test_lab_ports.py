"""The lab's port picking: servers started together get a port each, never one between two."""

import socket

from tests.lab.process import free_ports


def test_ports_picked_together_are_all_different_and_free() -> None:
    # One at a time, the kernel gave 2 or 3 repeats among 200 in most runs: two of the storm's
    # nginx sites on one port, one of them answering with the other's upstream.
    ports = free_ports(400)
    assert len(set(ports)) == len(ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # and each is free once picked
