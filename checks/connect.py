"""TCP and unix-socket connects, closed at once: the facts the firewall step judges, for the
site's edge and for its upstreams alike.

A connect either opens, is refused (RST: nothing listens), times out (no answer at all: the
packets are dropped), is unreachable (ICMP, no route) or, for a unix socket, finds no file
or no permission. Nothing here says what that means for the site.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict

from badgateway.checks.clock import ms_since


class ConnectState(StrEnum):
    OPEN = "open"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    MISSING = "missing"  # a unix socket path with no file
    DENIED = "denied"  # a unix socket this process may not open
    ERROR = "error"


class ConnectDict(TypedDict):
    """A ``ConnectResult`` as JSON."""

    state: str
    ms: int
    error: str | None


@dataclass(frozen=True)
class ConnectResult:
    state: ConnectState
    ms: int
    error: str | None = None

    def to_dict(self) -> ConnectDict:
        return {"state": self.state.value, "ms": self.ms, "error": self.error}


def classify(exc: BaseException) -> tuple[ConnectState, str]:
    """What a failed connect came to, and its words for it."""
    if isinstance(exc, TimeoutError):
        return ConnectState.TIMEOUT, "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return ConnectState.REFUSED, "connection refused"
    if isinstance(exc, FileNotFoundError):
        return ConnectState.MISSING, "no such socket file"
    if isinstance(exc, PermissionError):
        return ConnectState.DENIED, "permission denied"
    if isinstance(exc, OSError):
        # asyncio words every failed connect "Connect call failed"; the errno says why.
        text = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
            return ConnectState.UNREACHABLE, text
        return ConnectState.ERROR, text
    return ConnectState.ERROR, f"{type(exc).__name__}: {exc}"


def failed_connect(exc: BaseException, started: float) -> ConnectResult:
    state, text = classify(exc)
    return ConnectResult(state, ms_since(started), text)


async def connect_tcp(address: str, port: int, timeout_s: float) -> ConnectResult:
    """One TCP connect to an IP address, closed at once: open, refused (RST), timeout (no
    answer at all: dropped) or unreachable (ICMP / no route)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        # Started here and judged by the kernel's word, not by which of the answer and the
        # timeout the event loop runs first: a loop busy for longer than the timeout (a
        # storm's 200 diagnoses in one process) ran the timeout first and turned an accept or
        # a refusal already in into "no answer: a firewall drops the packets".
        started_error = sock.connect_ex((address, port))
        if started_error not in (0, errno.EINPROGRESS):
            return failed_connect(OSError(started_error, os.strerror(started_error)), started)
        if started_error == errno.EINPROGRESS:
            answered: asyncio.Future[None] = loop.create_future()

            def on_answer() -> None:
                if not answered.done():
                    answered.set_result(None)

            loop.add_writer(sock, on_answer)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout_s):
                        await answered
            finally:
                loop.remove_writer(sock)
        if error := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return failed_connect(OSError(error, os.strerror(error)), started)
        try:
            sock.getpeername()
        except OSError:  # not connected, no error: no answer within the timeout
            return failed_connect(TimeoutError(), started)
    return ConnectResult(ConnectState.OPEN, ms_since(started))


async def connect_unix(path: str, timeout_s: float) -> ConnectResult:
    """One connect to a unix socket, closed at once."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_unix_connection(path)
    except (OSError, TimeoutError) as exc:
        return failed_connect(exc, started)
    writer.close()
    return ConnectResult(ConnectState.OPEN, ms_since(started))
