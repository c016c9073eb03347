"""Start and stop real server processes for tests, on ports picked at run time; and serve an
aiohttp app in the test's own event loop on a loopback port the kernel picks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web


async def serve_app(
    app: web.Application, tls: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 at a port the kernel picks (over TLS with ``tls``); the
    runner (to clean up) and port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different free TCP ports. Each is held until all are picked: the kernel
    hands out a port it just gave and saw closed again, so picking them one at a time gives
    repeats (2 or 3 among 200, most runs), and two servers on one port serve one site's
    traffic to the other."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        for _ in range(count):
            s = held.enter_context(socket.socket(family, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (DNS servers take both)."""
    for _ in range(50):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port found")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def wait_for_path(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear after {timeout} s")


def require_binary(name: str, *candidates: str) -> str:
    """Path of a server binary; skip the test with the install hint if it is missing."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.path.exists(candidate) else None)
        if found:
            return found
    pytest.skip(f"{name} is not installed (run scripts/install-test-servers)")


class ManagedProcess:
    """A server process that is always stopped, and whose output is kept for failures."""

    def __init__(self, argv: Sequence[str], log_path: Path, **popen: object) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,  # type: ignore[call-overload]
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    async def until_ok(self, url: str, within_s: float = 20.0) -> None:
        """Wait until ``url`` answers 200 (a server's health endpoint); fail with the output if
        the process ends or ``within_s`` passes first."""
        deadline = time.monotonic() + within_s
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{url} never answered 200:\n{self.output()[-3000:]}")
                await asyncio.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()


@contextlib.contextmanager
def running(argv: Sequence[str], log_path: Path, **popen: object) -> Iterator[ManagedProcess]:
    proc = ManagedProcess(argv, log_path, **popen)
    try:
        yield proc
    finally:
        proc.stop()
