"""Caddy as the proxy: the log parser on lines a real Caddy 2.6 wrote while proxying to
upstreams that really misbehave, the logs step and a whole diagnosis on its log, and the
pages Caddy itself answers a failure with (what the fingerprint step sees).

The upstreams are the lab's (tests/lab/fixtures_upstreams.py) plus sockets made here for
failures no lab kind makes: a TCP listener whose accept queue is full (the kernel drops the
SYN: Caddy's dial times out), one that resets the connection (RST) after reading the
request, and an app's unix socket that is missing, root's only (Caddy runs as Debian's
"caddy" user for that case, as its service does) or full. TLS and DNS failures use the
lab's certificates and BIND servers. The few hand-written lines are shapes taken from
Caddy's and Go's source for what cannot happen on loopback.

The end-to-end diagnoses are quiet (no request before the bot's own) and need the logs
step to read the log after the diagnosis's requests reached Caddy.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pwd
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from badgateway.checks.fingerprint import identify
from badgateway.checks.logparse import FORMATS, LogLine, classifier, detect_format
from badgateway.checks.logparse import caddy as caddy_log
from badgateway.checks.model import Cause, Status, Weight
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import LogSource
from badgateway.checks.verdict import decide
from tests.lab.certs import LabCerts, PlainHttpServer, TlsServer
from tests.lab.diagnosis import explain, lab_settings, run_logs
from tests.lab.fixtures_dns import DnsLab
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_upstreams import Upstream

PATH = "/shop/cart?item=7&_bgw=t3st.1"  # a query string, and a badgateway mark in it
MARK = "t3st.1"


def get(proxy: Proxy, path: str = PATH, timeout: float = 6.0) -> httpx.Response:
    return httpx.get(proxy.url.rstrip("/") + path, timeout=timeout)


def parsed(proxy: Proxy, log: str = "error") -> list[tuple[str, LogLine]]:
    """(line, what the parser makes of it) for every Caddy line of the proxy's log."""
    path = proxy.error_log if log == "error" else proxy.access_log
    assert path is not None
    classify = classifier("caddy")
    text = path.read_text(errors="replace") if path.exists() else ""
    return [(line, p) for line in text.splitlines() if (p := classify(line)) is not None]


def causes_in(proxy: Proxy) -> dict[Cause, int]:
    found: dict[Cause, int] = {}
    for _, p in parsed(proxy):
        if p.cause is not None and not p.secondary:
            found[p.cause] = found.get(p.cause, 0) + 1
    return found


def failure(proxy: Proxy) -> LogLine:
    """The one line of the log that names a first-hand cause."""
    [line] = [p for _, p in parsed(proxy) if p.cause is not None and not p.secondary]
    return line


def assert_request_named(line: LogLine, proxy: Proxy) -> None:
    """The error line names the request it failed: Host, client ip:port, _bgw mark, time."""
    assert line.is_error
    assert line.host == f"127.0.0.1:{proxy.port}"
    assert line.client is not None and line.client.startswith("127.0.0.1:")
    assert int(line.client.rsplit(":", 1)[1]) > 0
    assert line.mark == MARK
    now = datetime.now().astimezone()
    assert line.when is not None and now - timedelta(minutes=1) < line.when <= now


# --- sockets for failures the lab's upstream kinds do not make --------------------------------


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A listener that never accepts, its queue filled: the kernel drops further SYNs, so a
    connect to it times out (what an overloaded or firewalled app looks like to the proxy)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield address
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextlib.contextmanager
def resetting_upstream() -> Iterator[str]:
    """Reads the request, then aborts the connection (SO_LINGER 0: an RST, no FIN)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@contextlib.contextmanager
def unix_socket(state: str) -> Iterator[Path]:
    """An app's unix socket: "missing" (no file), "private" (root's, mode 0600: a proxy
    running as another user may not connect) or "full" (its accept queue is full)."""
    directory = Path(tempfile.mkdtemp(prefix="bg-sock-"))
    directory.chmod(0o755)
    path = directory / "app.sock"
    sockets: list[socket.socket] = []
    try:
        if state != "missing":
            listener = socket.socket(socket.AF_UNIX)
            sockets.append(listener)
            listener.bind(str(path))
            listener.listen(0)
            path.chmod(0o600 if state == "private" else 0o666)
        if state == "full":
            for _ in range(3):
                filler = socket.socket(socket.AF_UNIX)
                filler.setblocking(False)
                filler.connect_ex(str(path))
                sockets.append(filler)
        yield path
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- (a) the parser on what real Caddy wrote -----------------------------------------------

CASES: list[tuple[str, dict[str, Any], dict[str, Any], int, Cause, str]] = [
    ("refused", {}, {}, 502, Cause.UPSTREAM_REFUSED, r"connect: connection refused"),
    (
        "slow",
        {"delay_s": 3},
        {},
        504,
        Cause.UPSTREAM_TIMEOUT,
        r"net/http: timeout awaiting response headers",
    ),
    (
        "close_mid_response",
        {},
        {},
        502,
        Cause.UPSTREAM_CLOSED,
        r"HTTP/1.x transport connection broken: unexpected EOF",
    ),
    # Closed without a word: Go's transport says just "EOF".
    ("flaky", {"fail_first": 5}, {}, 502, Cause.UPSTREAM_CLOSED, r'"msg":"EOF"'),
    (
        "garbage",
        {},
        {},
        502,
        Cause.UPSTREAM_INVALID,
        r"transport connection broken: malformed HTTP status code",
    ),
    # An SSH server on the app's port: its banner has no space, no status line at all.
    (
        "garbage",
        {"payload": b"SSH-2.0-OpenSSH_9.2p1\r\n"},
        {},
        502,
        Cause.UPSTREAM_INVALID,
        r'transport connection broken: malformed HTTP response \\"SSH-2\.0',
    ),
    # Go's own limit is 10 MB of response headers; max_response_header lowers it.
    (
        "huge_headers",
        {},
        {"max_response_header": "16KiB"},
        502,
        Cause.UPSTREAM_HEADER_TOO_BIG,
        r"server response headers exceeded 16384 bytes; aborted",
    ),
]


@pytest.mark.parametrize(
    ("kind", "app_opts", "opts", "status", "cause", "pattern"),
    CASES,
    ids=["refused", "slow", "close_mid_response", "flaky", "garbage", "ssh", "huge_headers"],
)
def test_caddy_error_log(
    upstream: Callable[..., Upstream],
    caddy_proxy: Callable[..., Proxy],
    kind: str,
    app_opts: dict[str, Any],
    opts: dict[str, Any],
    status: int,
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **app_opts)
    proxy = caddy_proxy(app, **opts)
    assert get(proxy).status_code == status
    text = proxy.wait_for_log(pattern)
    assert causes_in(proxy) == {cause: 1}
    assert detect_format(text.splitlines()) == "caddy"
    line = failure(proxy)
    assert_request_named(line, proxy)
    if kind == "refused":
        assert line.upstream == app.address  # "dial tcp ADDRESS: connect: ..."


def test_caddy_forwards_a_header_with_a_nul_byte(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    """Unlike nginx, Caddy 2.6 (Go 1.19's net/http) passes ``bad_header``'s NUL-carrying
    header line on: 200, and its log claims nothing."""
    proxy = caddy_proxy(upstream("bad_header"))
    response = get(proxy)
    assert response.status_code == 200 and response.text == "ok\n"
    assert proxy.access_log is not None
    assert '"status":200' in proxy.access_log.read_text()
    assert causes_in(proxy) == {}


def test_caddy_dial_timeout(caddy_proxy: Callable[..., Proxy]) -> None:
    with full_backlog() as address:
        proxy = caddy_proxy(address, dial_timeout_s=1)
        started = time.monotonic()
        # A dial timeout is a 502 in Caddy 2.6, not a 504: the dial error reaches
        # reverseproxy.statusError wrapped, so it is not seen as a net.Error timeout.
        assert get(proxy).status_code == 502
        assert time.monotonic() - started >= 0.9
        proxy.wait_for_log(r"dial tcp 127\.0\.0\.1:\d+: i/o timeout")
    assert causes_in(proxy) == {Cause.UPSTREAM_TIMEOUT: 1}
    line = failure(proxy)
    assert line.upstream == address and line.what == "connect to upstream timed out"
    assert_request_named(line, proxy)


def test_caddy_connection_reset(caddy_proxy: Callable[..., Proxy]) -> None:
    with resetting_upstream() as address:
        proxy = caddy_proxy(address)
        assert get(proxy).status_code == 502
        proxy.wait_for_log(r"read tcp \S+->\S+: read: connection reset by peer")
    assert causes_in(proxy) == {Cause.UPSTREAM_CLOSED: 1}
    assert failure(proxy).upstream == address  # the far end of "read tcp A->B"


def test_no_upstreams_available_is_a_consequence(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    """Passive health checks hold a failed upstream down: the next request finds none."""
    app = upstream("refused")
    proxy = caddy_proxy(app, max_fails=1, fail_duration_s=30)
    assert get(proxy).status_code == 502
    assert get(proxy).status_code == 503
    proxy.wait_for_log(r'"msg":"no upstreams available"')
    assert causes_in(proxy) == {Cause.UPSTREAM_REFUSED: 1}
    [consequence] = [p for _, p in parsed(proxy) if p.secondary]
    assert consequence.cause is Cause.OVERLOAD and consequence.what == "no upstreams available"
    assert consequence.is_error and consequence.mark == MARK


HEALTH_CASES: list[tuple[str, Cause, str]] = [
    ("refused", Cause.UPSTREAM_REFUSED, r"dial tcp \S+: connect: connection refused"),
    ("slow", Cause.UPSTREAM_TIMEOUT, r"Client\.Timeout exceeded|context deadline exceeded"),
    ("garbage", Cause.UPSTREAM_INVALID, r"malformed HTTP status code"),
]


@pytest.mark.parametrize(
    ("kind", "cause", "pattern"), HEALTH_CASES, ids=[c[0] for c in HEALTH_CASES]
)
def test_active_health_checks_name_the_cause(
    upstream: Callable[..., Upstream],
    caddy_proxy: Callable[..., Proxy],
    kind: str,
    cause: Cause,
    pattern: str,
) -> None:
    """With active health checks, the upstream is down before any request: the request
    gets a 503 "no upstreams available" (a consequence); the health checker's lines (INFO,
    "HTTP request failed") say why, first-hand, naming the upstream."""
    app = upstream(kind)
    proxy = caddy_proxy(app, health_interval_s=0.2)
    proxy.wait_for_log(r'"msg":"HTTP request failed".*' + pattern, timeout=5)
    assert get(proxy).status_code == 503
    proxy.wait_for_log(r'"msg":"no upstreams available"')
    assert set(causes_in(proxy)) == {cause}
    checks = [p for line, p in parsed(proxy) if '"HTTP request failed"' in line]
    assert checks and all(p.upstream == app.address and p.cause is cause for p in checks)
    [consequence] = [p for _, p in parsed(proxy) if p.secondary]
    assert consequence.cause is Cause.OVERLOAD and consequence.mark == MARK


def test_upstream_tls_to_a_plain_http_port(caddy_proxy: Callable[..., Proxy]) -> None:
    plain = PlainHttpServer()
    proxy = caddy_proxy(plain.address, https=True)
    assert get(proxy).status_code == 502
    proxy.wait_for_log(r"tls: first record does not look like a TLS handshake")
    assert causes_in(proxy) == {Cause.UPSTREAM_TLS: 1}


TLS_CASES = [
    ("expired", r"x509: certificate has expired or is not yet valid"),
    ("wrong_host", r"x509: certificate is valid for other\.test, not localhost"),
    ("self_signed", r"x509: certificate signed by unknown authority"),
]


@pytest.mark.parametrize(("pair", "pattern"), TLS_CASES, ids=[c[0] for c in TLS_CASES])
def test_upstream_certificate_errors(
    tls_certs: LabCerts, caddy_proxy: Callable[..., Proxy], pair: str, pattern: str
) -> None:
    with TlsServer(getattr(tls_certs, pair)) as app:
        address = f"127.0.0.1:{app.port}"
        proxy = caddy_proxy(
            address, https=True, tls_trusted_ca=tls_certs.ca, tls_server_name="localhost"
        )
        assert get(proxy).status_code == 502
        proxy.wait_for_log(pattern)
    assert causes_in(proxy) == {Cause.UPSTREAM_TLS: 1}
    assert_request_named(failure(proxy), proxy)


DNS_CASES = [
    ("missing", "primary", r"lookup missing\.test on \S+: no such host"),
    ("servfail", "primary", r"lookup www\.broken\.test on \S+: server misbehaving"),
    # Caddy asks its resolvers over TCP; the dead server has no TCP port. The message ends
    # in "connect: connection refused" — the resolver's, which must not read as the app's.
    ("missing", "dead", r"lookup missing\.test on \S+: dial tcp \S+: connect: connection refused"),
]


@pytest.mark.parametrize(
    ("name", "server", "pattern"), DNS_CASES, ids=[f"{n}@{s}" for n, s, _ in DNS_CASES]
)
def test_unresolvable_upstream_name(
    dns_lab: DnsLab,
    upstream: Callable[..., Upstream],
    caddy_proxy: Callable[..., Proxy],
    name: str,
    server: str,
    pattern: str,
) -> None:
    app = upstream("ok")  # a working app on the port the name would have led to
    host = getattr(dns_lab, name)
    proxy = caddy_proxy(f"{host}:{app.port}", resolvers=[getattr(dns_lab, server)])
    assert get(proxy).status_code == 502
    proxy.wait_for_log(pattern)
    assert app.connections == 0
    assert causes_in(proxy) == {Cause.UPSTREAM_DNS: 1}
    assert failure(proxy).upstream == host


UNIX_CASES: list[tuple[str, str | None, Cause, str]] = [
    ("missing", None, Cause.UPSTREAM_REFUSED, r"connect: no such file or directory"),
    # Debian runs Caddy as its "caddy" user: a socket only root may open is refused to it.
    ("private", "caddy", Cause.UPSTREAM_PERMISSION, r"connect: permission denied"),
    # A unix socket with a full accept queue fails the connect at once (EAGAIN).
    ("full", None, Cause.OVERLOAD, r"connect: resource temporarily unavailable"),
]


@pytest.mark.parametrize(
    ("state", "user", "cause", "pattern"), UNIX_CASES, ids=[c[0] for c in UNIX_CASES]
)
def test_unix_socket_upstream(
    caddy_proxy: Callable[..., Proxy], state: str, user: str | None, cause: Cause, pattern: str
) -> None:
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip(f"no user {user!r} (Debian's caddy package creates it)")
    with unix_socket(state) as path:
        proxy = caddy_proxy(f"unix/{path}", user=user)
        assert get(proxy).status_code == 502
        proxy.wait_for_log(r"dial unix \S+: " + pattern)
        assert causes_in(proxy) == {cause: 1}
        line = failure(proxy)
        assert line.upstream == f"unix:{path}"
        assert_request_named(line, proxy)


def test_debug_roundtrip_lines_are_not_counted_twice(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    """At DEBUG, reverse_proxy logs each attempt ("upstream roundtrip", with the dialled
    upstream) besides the request's error line: one failure is still one."""
    app = upstream("slow", delay_s=3)
    proxy = caddy_proxy(app, level="DEBUG")
    assert get(proxy).status_code == 504
    proxy.wait_for_log(r'"msg":"upstream roundtrip"')
    proxy.wait_for_log(r'"logger":"http\.log\.error')
    assert causes_in(proxy) == {Cause.UPSTREAM_TIMEOUT: 1}
    [roundtrip] = [p for line, p in parsed(proxy) if '"upstream roundtrip"' in line]
    assert roundtrip.upstream == app.address and not roundtrip.is_error
    assert roundtrip.mark == MARK


ENCODINGS: list[dict[str, Any]] = [
    {"encoder": "console"},  # tab-separated, level in ANSI colours, fields as JSON
    {"time_format": "iso8601"},
    {"time_format": "rfc3339"},
    {"time_format": "wall_milli"},
    {"time_format": "unix_milli_float"},
    {"time_format": "unix_nano"},
]


@pytest.mark.parametrize("opts", ENCODINGS, ids=lambda o: "-".join(o.values()))
def test_other_encoders_and_time_formats(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy], opts: dict[str, Any]
) -> None:
    app = upstream("refused")
    proxy = caddy_proxy(app, **opts)
    assert get(proxy).status_code == 502
    text = proxy.wait_for_log(r"connect: connection refused")
    assert detect_format(text.splitlines()) == "caddy"
    assert causes_in(proxy) == {Cause.UPSTREAM_REFUSED: 1}
    line = failure(proxy)
    assert_request_named(line, proxy)
    assert line.upstream == app.address


def test_access_log_lines(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    """The site's access log names the request and its status, not why: a 5xx is an error
    without a cause, a 200 is no error."""
    ok = caddy_proxy(upstream("ok"))
    failing = caddy_proxy(upstream("refused"))
    assert get(ok).status_code == 200
    assert get(failing).status_code == 502
    for proxy, is_error in ((ok, False), (failing, True)):
        assert proxy.access_log is not None
        text = proxy.access_log.read_text()
        assert detect_format(text.splitlines()) == "caddy"
        [(_, line)] = parsed(proxy, "access")
        assert line.is_error is is_error and line.cause is None
        assert line.mark == MARK and line.host == f"127.0.0.1:{proxy.port}"
    [(_, failed)] = parsed(failing, "access")
    assert failed.what == "502 response"


def test_lines_without_a_cause(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    """Caddy's start-up and shutdown lines (admin, tls, http) are Caddy's, and no error."""
    proxy = caddy_proxy(upstream("ok"))
    assert get(proxy).status_code == 200
    proxy.stop()
    lines = parsed(proxy)
    assert len(lines) >= 3
    assert all(not p.is_error and p.cause is None for _, p in lines)
    assert any('"msg":"server running"' in line for line, _ in lines)
    assert detect_format(proxy.read_log().splitlines()) == "caddy"


# --- lines the lab cannot make, in the shape Caddy writes them ---------------------------------


def test_caddy_lines_behind_a_syslog_prefix(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    """Debian's caddy.service logs to journald; rsyslog stores each JSON line behind
    "TIME HOST caddy[PID]: ". The line itself is one real Caddy wrote."""
    proxy = caddy_proxy(upstream("refused"))
    assert get(proxy).status_code == 502
    text = proxy.wait_for_log(r"connect: connection refused")
    [real] = [line for line in text.splitlines() if "connection refused" in line]
    prefixed = [
        f"2026-05-01T12:00:00.123456+00:00 web1 caddy[812]: {real}",
        f"May  1 12:00:00 web1 caddy[812]: {real}",
    ]
    assert detect_format(prefixed) == "caddy"
    for line in prefixed:
        found = classifier("caddy")(line)
        assert found is not None and found.cause is Cause.UPSTREAM_REFUSED
        assert found.mark == MARK


# Shapes from Caddy's source (modules/caddyhttp/reverseproxy, server.go, certmagic) and
# Go's messages (net, net/http) that the lab cannot provoke on loopback.
HAND_WRITTEN: list[tuple[dict[str, Any], Cause | None, str | None]] = [
    (
        {
            "level": "error",
            "logger": "http.log.error",
            "msg": "dial tcp 10.0.0.5:8080: connect: no route to host",
            "status": 502,
        },
        Cause.UPSTREAM_REFUSED,
        "10.0.0.5:8080",
    ),
    (  # the body broke off after the headers went to the client
        {
            "level": "error",
            "logger": "http.handlers.reverse_proxy",
            "msg": "aborting with incomplete response",
            "error": "unexpected EOF",
        },
        Cause.UPSTREAM_CLOSED,
        None,
    ),
    (  # ... or the client went away: not the upstream's doing
        {
            "level": "error",
            "logger": "http.handlers.reverse_proxy",
            "msg": "aborting with incomplete response",
            "error": "write tcp 10.0.0.1:443->203.0.113.9:50000: write: broken pipe",
        },
        None,
        None,
    ),
    (  # a handle_errors route that fails too: the first error is under "first_error"
        {
            "level": "error",
            "logger": "http.log.error",
            "msg": "error handling handler error",
            "error": "open /srv/errors/502.html: no such file or directory",
            "first_error": {"msg": "net/http: timeout awaiting response headers"},
        },
        Cause.UPSTREAM_TIMEOUT,
        None,
    ),
    (  # the ACME client failing to resolve its CA says nothing about the app
        {
            "level": "error",
            "logger": "tls.obtain",
            "msg": "could not get certificate from issuer",
            "error": "dial tcp: lookup acme-v02.api.letsencrypt.org on 10.0.0.2:53: no such host",
        },
        None,
        None,
    ),
    (  # a client that gave up (Caddy's 499): no gateway failure
        {
            "level": "debug",
            "logger": "http.log.error",
            "msg": "context canceled",
            "status": 499,
        },
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "cause", "upstream_named"),
    HAND_WRITTEN,
    ids=["no-route", "body-cut", "client-gone", "first-error", "acme-lookup", "client-499"],
)
def test_hand_written_lines(
    fields: dict[str, Any], cause: Cause | None, upstream_named: str | None
) -> None:
    line = json.dumps({"ts": time.time(), **fields})
    assert caddy_log.detect(line)
    found = classifier("caddy")(line)
    assert found is not None
    assert found.cause is cause and found.upstream == upstream_named
    assert found.when is not None


NOT_CADDY = [
    # Another zap-based program: the same four keys, a logger that is none of Caddy's.
    '{"level":"error","ts":1714564800.5,"logger":"controller-runtime","msg":"dial tcp '
    '10.0.0.5:8080: connect: connection refused"}',
    '{"level":"info","ts":1714564800.5,"msg":"started"}',  # no logger at all
    '{"time":"2024-05-01T12:00:00Z","level":"ERROR","msg":"upstream failed"}',  # slog
    '{"level":"error","ts":"x","logger":"http.log.error"',  # cut short
    '{"level": 3, "ts": 1.0, "logger": "http.log.error", "msg": "EOF"}',
    "[1, 2, 3]",
    '"just a string"',
    "{not json at all}",
    "",
    "2024/05/01 12:00:00 [error] 12#12: *3 connect() failed (111: Connection refused)",
    "\x00\xff{garbage",
]


@pytest.mark.parametrize("line", NOT_CADDY)
def test_other_lines_are_not_caddy(line: str) -> None:
    assert not caddy_log.detect(line)
    found = classifier("caddy")(line)
    assert found is None or found.cause is None


def test_other_formats_do_not_claim_caddy_lines(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    proxy = caddy_proxy(upstream("refused"))
    assert get(proxy).status_code == 502
    lines = proxy.wait_for_log(r"connection refused").splitlines()
    # Lines of Caddy's root logger ("serving initial configuration") carry no logger name
    # and are not counted as Caddy's; every other line is.
    named = [line for line in lines if '"logger":' in line]
    assert len(named) >= 3 and all(caddy_log.detect(line) for line in named)
    for name in FORMATS:
        if name != "caddy":
            module = importlib.import_module(f"badgateway.checks.logparse.{name.replace('-', '')}")
            assert not any(module.detect(line) for line in lines), name


# --- the logs step and a whole diagnosis on Caddy's log --------------------------------------


async def test_logs_step_claims_from_caddy_log(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("refused")
    proxy = caddy_proxy(app)
    assert get(proxy).status_code == 502
    proxy.wait_for_log(r"connection refused")
    result = await run_logs(LogSource(str(proxy.error_log)), url=proxy.url)  # format detected
    assert result.status is Status.FAIL, result.summary
    [finding] = [f for f in result.findings if f.cause]
    assert finding.cause is Cause.UPSTREAM_REFUSED and finding.weight is Weight.OBSERVED
    assert finding.data["upstream"] == app.address and finding.data["format"] == "caddy"
    assert app.address in finding.data["next_step"]
    assert result.details["logs"][0]["format"] == "caddy"
    assert decide([result]).cause is Cause.UPSTREAM_REFUSED


E2E_CASES: list[tuple[str, dict[str, Any], Cause]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED),
    ("slow", {"delay_s": 4}, Cause.UPSTREAM_TIMEOUT),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED),
    ("garbage", {}, Cause.UPSTREAM_INVALID),
]


@pytest.mark.parametrize(("kind", "app_opts", "cause"), E2E_CASES, ids=[c[0] for c in E2E_CASES])
async def test_diagnosis_behind_caddy_quiet_site(
    upstream: Callable[..., Upstream],
    caddy_proxy: Callable[..., Proxy],
    kind: str,
    app_opts: dict[str, Any],
    cause: Cause,
) -> None:
    """Nobody sent a request before the bot was asked: the diagnosis's own requests are
    the only traffic, and what Caddy logged for them names the cause."""
    app = upstream(kind, **app_opts)
    proxy = caddy_proxy(app)
    settings = lab_settings(proxy.url, [proxy.error_log], (app.address,))
    diagnosis = await diagnose(proxy.url, settings)
    assert diagnosis.verdict.cause is cause, explain(diagnosis)
    assert any(f.code == f"log_{cause.value}" for f in diagnosis.verdict.evidence)


# --- (c) what Caddy itself answers (for the fingerprint step) ----------------------------------

PAGES: list[tuple[str, dict[str, Any], dict[str, Any], int]] = [
    ("refused", {}, {}, 502),
    ("slow", {"delay_s": 3}, {}, 504),
    ("garbage", {}, {}, 502),
    ("refused", {}, {"max_fails": 1, "fail_duration_s": 30}, 503),  # 2nd: no upstreams
]


@pytest.mark.parametrize(
    ("kind", "app_opts", "opts", "status"),
    PAGES,
    ids=["refused", "slow", "garbage", "no-upstreams"],
)
def test_caddy_error_page_is_empty(
    upstream: Callable[..., Upstream],
    caddy_proxy: Callable[..., Proxy],
    kind: str,
    app_opts: dict[str, Any],
    opts: dict[str, Any],
    status: int,
) -> None:
    """Caddy answers a proxy failure with the bare status: ``Server: Caddy``, an empty
    body (Content-Length: 0), no Content-Type, no page of its own."""
    proxy = caddy_proxy(upstream(kind, **app_opts), **opts)
    response = get(proxy)
    if status == 503:
        response = get(proxy)
    assert response.status_code == status
    assert response.headers["server"] == "Caddy"
    assert response.headers["content-length"] == "0" and response.content == b""
    assert "content-type" not in response.headers
    assert sorted(response.headers) == ["content-length", "date", "server"]
    # The fingerprint reads it as Caddy's own answer; only a 504 names a cause.
    found = identify(response.status_code, dict(response.headers), response.content)
    assert found.producer == "Caddy" and found.generated
    assert found.cause_hint is (Cause.UPSTREAM_TIMEOUT if status == 504 else None)


def test_an_app_page_passed_through_caddy_is_not_caddys(
    upstream: Callable[..., Upstream], caddy_proxy: Callable[..., Proxy]
) -> None:
    proxy = caddy_proxy(upstream("error500"))
    response = get(proxy)
    assert response.status_code == 500 and response.content
    found = identify(response.status_code, dict(response.headers), response.content)
    assert not found.generated and found.cause_hint is None
