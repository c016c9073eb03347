"""Lab fixtures: real misbehaving upstream (app) servers on loopback, for proxies to talk to.

Each upstream is a real TCP server (a thread per connection, in this process) that a real
nginx/haproxy/apache in front of it connects to, so the proxy logs what it really logs.

Use the factory fixtures::

    def test_x(upstream):
        app = upstream("slow", delay_s=3)
        app.host, app.port      # 127.0.0.1, a port picked at run time
        app.address             # "127.0.0.1:PORT" (what a proxy config / Site.upstreams takes)
        app.url                 # "http://127.0.0.1:PORT/"
        app.connections         # how many connections it accepted so far

``upstream`` is function-scoped; ``module_upstream`` is the same factory, module-scoped,
for servers shared by a module's tests. Everything started is stopped at teardown.
Outside fixtures, ``Upstream(kind, **opts)`` is a context manager (``with Upstream("ok") as
app:``), and ``python -m tests.lab.fixtures_upstreams KIND --port N`` runs one in the
foreground (e.g. inside a network namespace with ``ip netns exec``).

Kinds and their options:

- ``ok``: 200 with a small body (``body=b"ok\\n"``).
- ``refused``: a port bound by no listener (connections are refused; no other server can
  take it while the upstream lives).
- ``close_mid_response``: status line and some headers, then the connection is closed.
- ``garbage``: non-HTTP bytes (``payload=...``), then close.
- ``bad_header``: a valid status line, then a header line carrying a NUL byte (nginx's
  "upstream sent invalid header").
- ``huge_headers``: 200 with ``header_bytes=65536`` bytes of Set-Cookie headers, each
  cookie ``cookie_bytes=1000`` long (Apache limits one header line, 8 KiB, not the sum).
- ``slow``: reads the request, waits ``delay_s=3.0`` seconds, then answers 200.
- ``flaky``: the first ``fail_first=2`` connections are closed without an answer, then 200.
- ``error500``: the app's own 500 (``body=...``).
- ``blackhole``: a port whose SYNs go unanswered, so a proxy's connect() times out (HAProxy
  ``sC--``, nginx "upstream timed out (110: Connection timed out) while connecting to
  upstream"). It is a listening socket with a backlog of 0 that never accepts, and whose accept
  queue the fixture fills itself with one connection of its own: Linux then drops every further
  SYN for as long as the queue stays full (``tcp_conn_request``: "listen queue overflow"), the
  same silence a firewall's DROP rule makes. It needs no root, no iptables rule to clean up
  and no other process, it touches only its own port, and it ends when the socket is closed.
  ``start()`` checks that a second connect really goes unanswered before returning.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

KINDS = (
    "ok",
    "refused",
    "close_mid_response",
    "garbage",
    "bad_header",
    "huge_headers",
    "slow",
    "flaky",
    "error500",
    "blackhole",
)

_MAX_REQUEST_HEAD = 65536
# How long a connect must go unanswered before the blackhole counts its queue as full: an
# accepted SYN on loopback is answered within microseconds, even on a loaded machine.
_SYN_DROPPED_AFTER_S = 0.3
_MAX_FILLERS = 8


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class _Server6(_Server):
    address_family = socket.AF_INET6


def _response(status: str, body: bytes, extra: list[tuple[str, str]] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: text/plain", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in extra or []]
    head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Upstream:
    """One misbehaving upstream. ``start()``/``stop()``, or use it as a context manager."""

    def __init__(
        self,
        kind: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        delay_s: float = 3.0,
        fail_first: int = 2,
        header_bytes: int = 65536,
        cookie_bytes: int = 1000,
        body: bytes | None = None,
        payload: bytes = b"\x00\x01\x02 SSH-2.0-this-is-not-http \xff\xfe\r\n\r\n",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown upstream kind {kind!r}; one of {', '.join(KINDS)}")
        self.kind = kind
        self.host = host
        self.port = port
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.header_bytes = header_bytes
        self.cookie_bytes = cookie_bytes
        self.body = body
        self.payload = payload
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # The blackhole's never-accepting socket; the refused port's bound, never-listening one.
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []  # the connections that fill its accept queue

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def __repr__(self) -> str:
        return f"Upstream({self.kind!r}, {self.address})"

    def start(self) -> Upstream:
        if self.kind == "refused":
            # Nothing listens, and nothing else may: the port stays bound, never listening, for
            # as long as this upstream lives (a connect is refused). A port only handed out and
            # taken back was once bound by another upstream started just after (a storm's
            # "refused" sites then diagnosed as the other one's cause).
            reserved = socket.socket(self._family(), socket.SOCK_STREAM)
            reserved.bind((self.host, self.port))
            self._listener = reserved
            self.port = int(reserved.getsockname()[1])
            return self
        if self.kind == "blackhole":
            self._start_blackhole()
            return self
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._handle(self.request)

        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"upstream-{self.kind}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def _family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def _start_blackhole(self) -> None:
        listener = socket.socket(self._family(), socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(0)  # room for one queued connection; it is never accepted
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        for _ in range(_MAX_FILLERS):
            filler = socket.socket(self._family(), socket.SOCK_STREAM)
            filler.settimeout(_SYN_DROPPED_AFTER_S)
            try:
                filler.connect((self.host, self.port))
            except TimeoutError:
                filler.close()
                return  # the queue is full: from now on every SYN is dropped
            self._fillers.append(filler)
        self.stop()
        raise RuntimeError(f"blackhole {self.address}: connects still answered after filling")

    def stop(self) -> None:
        self._stopping.set()
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_request_head(self, conn: socket.socket) -> bytes:
        conn.settimeout(5.0)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data and len(data) < _MAX_REQUEST_HEAD:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            seen = self.connections
        self._read_request_head(conn)
        with contextlib.suppress(OSError):
            conn.sendall(self._answer(seen))
            if self.kind == "close_mid_response":
                # A reset rather than a FIN would be a different symptom; shut down cleanly.
                conn.shutdown(socket.SHUT_RDWR)

    def _answer(self, seen: int) -> bytes:
        kind = self.kind
        if kind == "ok":
            return _response("200 OK", self.body if self.body is not None else b"ok\n")
        if kind == "close_mid_response":
            return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Partial: yes\r\n"
        if kind == "garbage":
            return self.payload
        if kind == "bad_header":
            return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Broken\x00: yes\r\n\r\nok\n"
        if kind == "huge_headers":
            cookies: list[tuple[str, str]] = []
            size, n = 0, 0
            while size < self.header_bytes:
                value = f"c{n}=" + "x" * self.cookie_bytes + "; Path=/"
                cookies.append(("Set-Cookie", value))
                size += len(value) + 14
                n += 1
            return _response("200 OK", b"ok\n", cookies)
        if kind == "slow":
            if self._stopping.wait(self.delay_s):
                return b""
            return _response("200 OK", self.body if self.body is not None else b"slow ok\n")
        if kind == "flaky":
            if seen <= self.fail_first:
                return b""  # close without a word
            return _response("200 OK", self.body if self.body is not None else b"ok\n")
        if kind == "error500":
            body = self.body if self.body is not None else b"Internal Server Error (app)\n"
            return _response("500 Internal Server Error", body)
        raise AssertionError(kind)


def _factory() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def make(kind: str, **opts: Any) -> Upstream:
        server = Upstream(kind, **opts).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    """``upstream(kind, **opts) -> Upstream``; stopped at the end of the test."""
    yield from _factory()


@pytest.fixture(scope="module")
def module_upstream() -> Iterator[Callable[..., Upstream]]:
    """Like ``upstream``, but the servers live for the whole test module."""
    yield from _factory()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one misbehaving upstream in the foreground.")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=3.0)
    parser.add_argument("--fail-first", type=int, default=2)
    parser.add_argument("--header-bytes", type=int, default=65536)
    args = parser.parse_args()
    server = Upstream(
        args.kind,
        args.host,
        args.port,
        delay_s=args.delay_s,
        fail_first=args.fail_first,
        header_bytes=args.header_bytes,
    ).start()
    print(f"listening {server.address}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
