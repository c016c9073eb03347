"""The log parsers, on lines real nginx, HAProxy, Apache and php-fpm wrote at test time
while proxying to misbehaving upstreams — plus a few hand-written lines for messages the
lab cannot provoke (DNS, TLS, crashes, other syslog layouts)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from badgateway.checks import logparse
from badgateway.checks.logparse import (
    LogLine,
    caddy,
    classifier,
    detect_format,
    nginx,
    record_splitter,
)
from badgateway.checks.model import Cause
from tests.lab.fixtures_proxies import NGINX_UPSTREAM_ADDR_FORMAT, PhpFpm, Proxy


def get(url: str, timeout: float = 6.0) -> int | None:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None  # a broken response is what some upstreams are for


def causes_in(proxy: Proxy) -> dict[Cause, int]:
    classify = classifier(proxy.log_format)
    found: dict[Cause, int] = {}
    for line in proxy.read_log().splitlines():
        parsed = classify(line)
        if parsed is not None and parsed.cause is not None and not parsed.secondary:
            found[parsed.cause] = found.get(parsed.cause, 0) + 1
    return found


def parsed_records(path: Path, fmt: str) -> list[LogLine]:
    """Every record of the log at ``path`` as the parser reads it (records, not lines)."""
    classify = classifier(fmt)
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [p for record in record_splitter(fmt)(lines) if (p := classify(record))]


def wait_for_text(path: Path, pattern: str, timeout: float = 5.0) -> str:
    """Wait until ``pattern`` appears in the file at ``path``; return its text."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        assert time.monotonic() < deadline, f"{pattern!r} not in {path}:\n{text[-3000:]}"
        time.sleep(0.05)


def claimed(path: Path, fmt: str) -> dict[Cause, int]:
    """Like ``causes_in``, over records: the first-hand causes the log shows."""
    found: dict[Cause, int] = {}
    for parsed in parsed_records(path, fmt):
        if parsed.cause is not None and not parsed.secondary:
            found[parsed.cause] = found.get(parsed.cause, 0) + 1
    return found


def assert_recent(proxy: Proxy) -> None:
    """Every line the parser understood has a time stamp from just now."""
    classify = classifier(proxy.log_format)
    now = datetime.now().astimezone()
    stamps = [p.when for line in proxy.read_log().splitlines() if (p := classify(line))]
    assert stamps and all(w is not None for w in stamps)
    assert all(now - timedelta(minutes=2) < w <= now + timedelta(seconds=2) for w in stamps)  # type: ignore[operator]


NGINX_CASES: list[tuple[str, dict[str, Any], Cause, str]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED, r"Connection refused"),
    ("slow", {"delay_s": 3}, Cause.UPSTREAM_TIMEOUT, r"upstream timed out"),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED, r"prematurely closed"),
    ("flaky", {"fail_first": 5}, Cause.UPSTREAM_CLOSED, r"prematurely closed"),
    ("garbage", {}, Cause.UPSTREAM_INVALID, r"no valid HTTP/1.0 header"),
    ("bad_header", {}, Cause.UPSTREAM_INVALID, r"upstream sent invalid header"),
    ("huge_headers", {}, Cause.UPSTREAM_HEADER_TOO_BIG, r"too big header"),
    ("blackhole", {}, Cause.UPSTREAM_TIMEOUT, r"\(110: .*\) while connecting to upstream"),
]


@pytest.mark.parametrize(("kind", "opts", "cause", "pattern"), NGINX_CASES)
def test_nginx_error_log(
    upstream: Callable[..., Any],
    nginx_proxy: Callable[..., Proxy],
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **opts)
    proxy = nginx_proxy(app)
    get(proxy.url)
    proxy.wait_for_log(pattern)
    assert causes_in(proxy) == {cause: 1}
    assert detect_format(proxy.read_log().splitlines()) == "nginx"
    parsed = [p for line in proxy.read_log().splitlines() if (p := classifier("nginx")(line))]
    assert any(p.upstream == app.address for p in parsed)
    assert_recent(proxy)


def test_nginx_access_log_names_where_each_request_went(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    """Every request, failed or not, with the servers nginx tried in order (the pool's first
    refused, the next answered); such a log is detected as nginx's."""
    refused, app = upstream("refused"), upstream("ok")
    proxy = nginx_proxy([refused, app], access_format=NGINX_UPSTREAM_ADDR_FORMAT)
    assert proxy.access_log is not None
    assert get(proxy.url + "?_bgw=d1.1") == 200
    lines = wait_for_text(proxy.access_log, r"_bgw=d1\.1").splitlines()
    assert detect_format(lines) == "nginx"
    [line] = parsed_records(proxy.access_log, "nginx")
    assert (line.status, line.is_error, line.cause, line.mark) == (200, False, None, "d1.1")
    assert line.upstream == f"{refused.address}, {app.address}"
    assert line.when is not None and abs(line.when - datetime.now().astimezone()) < timedelta(
        minutes=1
    )


@pytest.mark.parametrize(
    ("field", "upstream"),
    [
        (
            'ua="10.0.0.5:80, unix:/run/a.sock : 10.0.0.6:80"',
            "10.0.0.5:80, unix:/run/a.sock, 10.0.0.6:80",
        ),
        ("upstream=[::1]:8080", "[::1]:8080"),
        ("upstream_addr=app", None),  # the pool's name: no server was live
        ("upstream_addr=-", None),  # nginx answered itself
    ],
)
def test_nginx_access_line_upstream_fields(field: str, upstream: str | None) -> None:
    line = (
        '127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET /?_bgw=d1.1 HTTP/1.1" 502 157 "-" '
        f'"curl/8.0" {field}'
    )
    parsed = classifier("nginx")(line)
    assert parsed is not None and parsed.upstream == upstream
    assert parsed.is_error and parsed.cause is None and parsed.mark == "d1.1"


COMBINED_502 = (
    '127.0.0.1 - - [02/Dec/2026:01:02:03 +0000] "GET /?_bgw=d1.1 HTTP/1.1" 502 157 "-" '
    '"curl/8.0" upstream_addr="10.0.0.5:80, app : 10.0.0.6:80"'
)


@pytest.mark.parametrize(
    "line",
    [
        # log_format escape=json with the variables' own names ...
        '{"time_local":"02/Dec/2026:01:02:03 +0000","remote_addr":"127.0.0.1",'
        '"request":"GET /?_bgw=d1.1 HTTP/1.1","status":"502","body_bytes_sent":"157",'
        '"upstream_addr":"10.0.0.5:80, app : 10.0.0.6:80"}',
        # ... ISO time, the URI alone, numbers unquoted in the format ...
        '{"time_iso8601":"2026-12-02T02:02:03+01:00","request_method":"GET",'
        '"request_uri":"/?_bgw=d1.1","status":502,"upstream":"10.0.0.5:80, app : 10.0.0.6:80"}',
        # ... $msec under "time", $uri with $args, the upstream as Amplify names it.
        '{"time":"1796173323.000","uri":"/?_bgw=d1.1","status":"502","http_referer":"-",'
        '"ua":"10.0.0.5:80, app : 10.0.0.6:80"}',
    ],
)
def test_nginx_json_access_line_reads_as_the_combined_one(line: str) -> None:
    assert detect_format([line]) == "nginx"
    parsed = classifier("nginx")(line)
    assert parsed == classifier("nginx")(COMBINED_502)
    assert parsed is not None and parsed.when == datetime.fromisoformat("2026-12-02T01:02:03Z")
    assert (parsed.status, parsed.is_error, parsed.cause, parsed.mark) == (502, True, None, "d1.1")
    assert parsed.upstream == "10.0.0.5:80, 10.0.0.6:80"


def test_nginx_json_access_line_names_host_and_client() -> None:
    line = (
        '{"msec":"1796173323.250","remote_addr":"::1","remote_port":"41022","host":"shop.test","http_host":"Shop.Test:8443",'
        '"server_name":"shop","request":"GET / HTTP/1.1","status":"200","upstream_addr":"-"}'
    )
    parsed = classifier("nginx")(line)
    assert parsed is not None and not parsed.is_error and parsed.upstream is None
    # $http_host, with the port; $host has none: a site on port 8443 would not own it.
    assert (parsed.host, parsed.server, parsed.client) == ("shop.test:8443", "shop", "[::1]:41022")
    # One record per JSON line, also right after an error line.
    error = "2026/12/02 01:02:03 [error] 7#7: *1 connect() failed (111: Connection refused)"
    assert list(record_splitter("nginx")([error, line, line])) == [error, line, line]


@pytest.mark.parametrize(
    "line",
    [
        "{",
        "[1, 2]",
        '"GET / HTTP/1.1"',
        '{"status":"502","upstream_addr":"-"}',  # no request, no time
        '{"time_local":"yesterday","request":"GET /","status":"502","upstream_addr":"-"}',
        '{"msec":"1e400","request":"GET /","status":"502","upstream_addr":"-"}',
        '{"msec":"1796173323","request":"GET /","status":true,"upstream_addr":"-"}',
        '{"msec":"1796173323","request":"GET /","status":"999","upstream_addr":"-"}',
        '{"msec":"1796173323","request":{"uri":"/"},"status":"502","upstream_addr":"-"}',
        '{"msec":"1796173323","request":"GET /","status":"502","pad":"' + "x" * 17000 + '"}',
        '{"msec":"1796173323","request":"GET /","status":"502","a":' + "[" * 5000 + "}",
        '{"time":"' + "1" * 5000 + '","request":"GET /","status":"502","upstream_addr":"-"}',
    ],
)
def test_nginx_json_bad_lines_are_not_read(line: str) -> None:
    assert classifier("nginx")(line) is None
    assert not nginx.detect(line)


def test_nginx_json_without_upstream_is_read_not_detected() -> None:
    """Like a plain combined log: read where the source says nginx, never guessed."""
    line = '{"time_local":"02/Dec/2026:01:02:03 +0000","request":"GET / HTTP/1.1","status":"504"}'
    assert not nginx.detect(line)
    parsed = classifier("nginx")(line)
    assert parsed is not None and parsed.status == 504 and parsed.is_error


HAPROXY_CASES: list[tuple[str, dict[str, Any], Cause, str]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED, r" SC-- "),
    ("slow", {"delay_s": 3}, Cause.UPSTREAM_TIMEOUT, r" sH-- "),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED, r" SH-- "),
    ("garbage", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
    ("bad_header", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
    # HAProxy logs an oversized response as PH too: its log cannot tell the two apart.
    ("huge_headers", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
    ("blackhole", {}, Cause.UPSTREAM_TIMEOUT, r" sC-- "),
]


@pytest.mark.parametrize(("kind", "opts", "cause", "pattern"), HAPROXY_CASES)
def test_haproxy_log(
    upstream: Callable[..., Any],
    haproxy_proxy: Callable[..., Proxy],
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **opts)
    proxy = haproxy_proxy(app)
    get(proxy.url)
    proxy.wait_for_log(pattern)
    assert causes_in(proxy) == {cause: 1}
    assert detect_format(proxy.read_log().splitlines()) == "haproxy"
    parsed = [p for line in proxy.read_log().splitlines() if (p := classifier("haproxy")(line))]
    assert any(p.upstream == "app/app1" and p.is_error for p in parsed)
    assert_recent(proxy)


def test_haproxy_app_500_is_not_claimed(
    upstream: Callable[..., Any], haproxy_proxy: Callable[..., Proxy]
) -> None:
    proxy = haproxy_proxy(upstream("error500"))
    assert get(proxy.url) == 500
    proxy.wait_for_log(r" 500 .* ---- ")
    assert causes_in(proxy) == {}


APACHE_CASES: list[tuple[str, dict[str, Any], Cause, str]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED, r"AH00957"),
    ("slow", {"delay_s": 3}, Cause.UPSTREAM_TIMEOUT, r"AH01102"),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED, r"AH10404"),
    ("garbage", {}, Cause.UPSTREAM_INVALID, r"AH01102"),
    ("bad_header", {}, Cause.UPSTREAM_INVALID, r"AH10404"),
    # Apache limits each header line (ResponseFieldSize, 8 KiB), not their sum.
    ("huge_headers", {"cookie_bytes": 10000}, Cause.UPSTREAM_HEADER_TOO_BIG, r"AH10124"),
    # Connect timed out: AH00957 with (70007), then AH01114 as its consequence.
    ("blackhole", {}, Cause.UPSTREAM_TIMEOUT, r"\(70007\).*AH00957(?s:.*)AH01114"),
]


@pytest.mark.parametrize(("kind", "opts", "cause", "pattern"), APACHE_CASES)
def test_apache_error_log(
    upstream: Callable[..., Any],
    apache_proxy: Callable[..., Proxy],
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **opts)
    proxy = apache_proxy(app)
    get(proxy.url)
    proxy.wait_for_log(pattern)
    assert causes_in(proxy) == {cause: 1}
    assert detect_format(proxy.read_log().splitlines()) == "apache"
    assert_recent(proxy)


def test_php_fpm_terminate_timeout(
    php_fpm: Callable[..., Any],
    nginx_proxy: Callable[..., Proxy],
    apache_proxy: Callable[..., Proxy],
) -> None:
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    ngx = nginx_proxy(php=fpm, read_timeout_s=4)
    apa = apache_proxy(php=fpm, timeout_s=4)
    assert get(ngx.url + "sleep.php?s=3&_bgw=kill.1") == 502
    fpm.wait_for_log(r"execution timed out")
    ngx.wait_for_log(r"Connection reset by peer|prematurely closed")
    assert get(apa.url + "sleep.php?s=3") in (502, 503)
    apa.wait_for_log(r"AH01067(?s:.*)AH01075")
    # php-fpm quotes the request it killed, so the diagnosis's own request is recognised.
    killed = [p for p in parsed_records(fpm.error_log, "php-fpm") if p.cause]
    assert [p.mark for p in killed] == ["kill.1", None]
    # Apache: AH01067 says what happened; "(104)...: AH01075: Error dispatching request"
    # after it is its consequence.
    dispatch = [p for p in parsed_records(apa.error_log, "apache") if p.secondary]
    assert [(p.cause, p.what) for p in dispatch] == [
        (Cause.UPSTREAM_CLOSED, "FastCGI backend reset the connection")
    ]
    assert causes_in(fpm) == {Cause.APP_TIMEOUT: 2}
    assert causes_in(ngx) == {Cause.UPSTREAM_CLOSED: 1}
    assert causes_in(apa) == {Cause.UPSTREAM_CLOSED: 1}
    assert detect_format(fpm.read_log().splitlines()) == "php-fpm"
    parsed = [p for line in ngx.read_log().splitlines() if (p := classifier("nginx")(line))]
    assert any(p.upstream == fpm.address for p in parsed)
    assert_recent(fpm)


def test_php_fpm_pool_full(php_fpm: Callable[..., Any], nginx_proxy: Callable[..., Proxy]) -> None:
    fpm = php_fpm(max_children=1)
    ngx = nginx_proxy(php=fpm, read_timeout_s=1)
    hold = threading.Thread(target=get, args=(ngx.url + "sleep.php?s=5",))
    hold.start()
    try:
        fpm.wait_for_log(r"max_children")
        assert get(ngx.url + "ok.php") == 504
    finally:
        hold.join()
    assert causes_in(fpm) == {Cause.OVERLOAD: 1}
    assert Cause.UPSTREAM_TIMEOUT in causes_in(ngx)


def test_nginx_no_live_upstreams_is_a_consequence(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = nginx_proxy([upstream("refused"), upstream("refused")])
    assert get(proxy.url) == 502  # both servers tried, both refuse, both marked down
    assert get(proxy.url) == 502  # nothing left to try
    text = proxy.wait_for_log(r"no live upstreams")
    parsed = [p for line in text.splitlines() if (p := classifier("nginx")(line))]
    no_live = [p for p in parsed if p.what == "no live upstreams"]
    assert len(no_live) == 1 and no_live[0].secondary and no_live[0].cause is Cause.OVERLOAD
    assert causes_in(proxy) == {Cause.UPSTREAM_REFUSED: 2}


# --- php-fpm behind nginx and Apache: the socket, the pool, PHP's own errors --------------


def test_socket_the_proxy_may_not_open(
    php_fpm: Callable[..., PhpFpm],
    nginx_proxy: Callable[..., Proxy],
    apache_proxy: Callable[..., Proxy],
) -> None:
    # root:root 0660: nginx's workers (nobody) and Apache's (www-data) are shut out.
    fpm = php_fpm(listen_owner="root", listen_group="root", listen_mode="0660")
    ngx = nginx_proxy(php=fpm)
    apa = apache_proxy(php=fpm)
    assert get(ngx.url + "ok.php?_bgw=perm.1") == 502
    assert get(apa.url + "ok.php") == 503
    ngx.wait_for_log(r"connect\(\) to unix:\S+ failed \(13: Permission denied\)")
    apa.wait_for_log(r"\(13\)Permission denied: AH02454: (?s:.*)AH01079")
    [ngx_line] = parsed_records(ngx.error_log, "nginx")
    assert ngx_line.cause is Cause.UPSTREAM_PERMISSION and ngx_line.is_error
    assert ngx_line.upstream == fpm.address and ngx_line.mark == "perm.1"
    assert ngx_line.server == "lab" and ngx_line.host == f"127.0.0.1:{ngx.port}"
    assert claimed(apa.error_log, "apache") == {Cause.UPSTREAM_PERMISSION: 1}
    [denied] = [p for p in parsed_records(apa.error_log, "apache") if p.cause and not p.secondary]
    assert denied.upstream == fpm.address


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_apache_php_fpm_stopped(
    php_fpm: Callable[..., PhpFpm], apache_proxy: Callable[..., Proxy], tcp: bool
) -> None:
    fpm = php_fpm(tcp=tcp)
    apa = apache_proxy(php=fpm)
    fpm.stop()
    assert get(apa.url + "ok.php") == 503
    # unix: "(2)No such file or directory: AH02454: FCGI: attempt to connect to Unix domain
    # socket ... failed"; tcp: "(111)Connection refused: AH00957: FCGI: attempt to connect".
    apa.wait_for_log(r"AH02454|AH00957")
    apa.wait_for_log(r"AH01079")
    assert claimed(apa.error_log, "apache") == {Cause.UPSTREAM_REFUSED: 1}
    # The connect failure names no client; the AH01079 its thread writes next does: one
    # record, tied to the request by the client's port.
    [parsed] = [p for p in parsed_records(apa.error_log, "apache") if p.cause]
    assert not parsed.secondary and parsed.upstream == fpm.address
    assert parsed.client is not None and parsed.client.startswith("127.0.0.1:")


def test_apache_php_slower_than_apache_timeout(
    php_fpm: Callable[..., PhpFpm], apache_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(max_children=4)
    apa = apache_proxy(php=fpm, timeout_s=1)
    assert get(apa.url + "sleep.php?s=3") == 504
    # "(70007)The timeout specified has expired: [client ...] AH01075: Error dispatching
    # request to :PORT: (polling)": the only line.
    apa.wait_for_log(r"\(70007\).*AH01075")
    assert claimed(apa.error_log, "apache") == {Cause.UPSTREAM_TIMEOUT: 1}
    assert claimed(fpm.error_log, "php-fpm") == {}


def test_apache_php_fpm_pool_full(
    php_fpm: Callable[..., PhpFpm], apache_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(max_children=1)
    apa = apache_proxy(php=fpm, timeout_s=1)
    hold = threading.Thread(target=get, args=(apa.url + "sleep.php?s=4",))
    hold.start()
    try:
        fpm.wait_for_log(r"max_children")
        assert get(apa.url + "ok.php") == 504
    finally:
        hold.join()
    apa.wait_for_log(r"(?s)(AH01075.*){2}")  # the held request and the queued one
    assert claimed(fpm.error_log, "php-fpm") == {Cause.OVERLOAD: 1}
    assert set(claimed(apa.error_log, "apache")) == {Cause.UPSTREAM_TIMEOUT}


PHP_FATAL_FILES = {
    "plugin": ("wp-content/plugins/broken-plugin/broken-plugin.php:3", "plugin broken-plugin"),
    "theme": ("wp-content/themes/broken-theme/functions.php:3", "theme broken-theme"),
}


@pytest.mark.parametrize("broken", ["plugin", "theme"])
@pytest.mark.parametrize("logged_by", ["proxy", "php-fpm", "php"])
def test_php_fatal_error_in_wordpress(
    php_fpm: Callable[..., PhpFpm],
    nginx_proxy: Callable[..., Proxy],
    apache_proxy: Callable[..., Proxy],
    broken: str,
    logged_by: str,
) -> None:
    """PHP's fatal error lands where the pool sends it: the proxy's log (fastcgi.logging, the
    default) and php-fpm's (catch_workers_output), php-fpm's alone (fastcgi.logging off), or
    PHP's own error_log. Wherever it lands, it names the file; the client gets PHP's 500."""
    fpm = php_fpm(
        wordpress_broken=broken,
        fastcgi_logging=logged_by == "proxy",
        php_error_log=logged_by == "php",
    )
    ngx = nginx_proxy(php=fpm)
    apa = apache_proxy(php=fpm)
    assert get(ngx.url + "?_bgw=fatal.1") == 500
    assert get(apa.url + "?_bgw=fatal.2") == 500
    assert get(ngx.url + "ok.php") == 200  # the pool itself is fine
    file, part = PHP_FATAL_FILES[broken]
    source = f"{fpm.docroot.resolve()}/{file}"
    what = f"PHP fatal error in {part}"
    if logged_by == "proxy":
        ngx.wait_for_log(r'FastCGI sent in stderr: "PHP message: PHP Fatal error: ')
        apa.wait_for_log(r"AH01071: Got error 'PHP message: PHP Fatal error: ")
        [ngx_line] = parsed_records(ngx.error_log, "nginx")
        # The record spans the stack trace; the request (and its mark) closes it.
        assert ngx_line.mark == "fatal.1" and ngx_line.upstream == fpm.address
        [apa_line] = [p for p in parsed_records(apa.error_log, "apache") if p.cause]
        assert apa_line.mark is None  # Apache's error log does not quote the URL
        assert apa_line.client is not None
        for line in (ngx_line, apa_line):
            assert (line.cause, line.what, line.source) == (Cause.SERVER_ERROR, what, source)
            assert line.is_error and not line.secondary
    else:
        assert claimed(ngx.error_log, "nginx") == {}
        assert claimed(apa.error_log, "apache") == {}
    app_log = fpm.php_error_log if logged_by == "php" else fpm.error_log
    assert app_log is not None
    app_text = wait_for_text(app_log, r"(?s)(PHP Fatal error.*){2}")
    assert detect_format(app_text.splitlines()) == "php-fpm"
    fatal = [p for p in parsed_records(app_log, "php-fpm") if p.cause]
    assert {(p.cause, p.what, p.source) for p in fatal} == {(Cause.SERVER_ERROR, what, source)}
    assert len(fatal) == 2  # one per request: nginx's and Apache's
    assert all(p.when is not None and p.is_error for p in fatal)


def test_php_warning_is_not_an_error(
    php_fpm: Callable[..., PhpFpm],
    nginx_proxy: Callable[..., Proxy],
    apache_proxy: Callable[..., Proxy],
) -> None:
    fpm = php_fpm()
    ngx = nginx_proxy(php=fpm)
    apa = apache_proxy(php=fpm)
    assert get(ngx.url + "warn.php") == 200
    assert get(apa.url + "warn.php") == 200
    # nginx and Apache both rate it [error]; it is PHP talking, the page worked.
    ngx.wait_for_log(r"\[error\] .*FastCGI sent in stderr: \"PHP message: PHP Warning:  lab")
    apa.wait_for_log(r"\[proxy_fcgi:error\] .*AH01071: Got error 'PHP message: PHP Warning")
    for proxy in (ngx, apa):
        parsed = parsed_records(proxy.error_log, proxy.log_format)
        warned = [p for p in parsed if p.upstream == fpm.address or p.client]
        assert warned and not any(p.is_error or p.cause for p in warned)


# --- hand-written lines: other shapes of a message, and messages the lab does not provoke ----
# (real nginx upstream TLS and resolver failures are provoked in test_causes_upstream_tls_dns.py;
# these keep the shapes other versions and setups write)

HAND_WRITTEN: list[tuple[str, str, Cause | None, str | None]] = [
    (
        "nginx",
        "2024/05/01 12:00:00 [error] 7#7: *9 api.internal could not be resolved (3: Host not "
        'found), client: 1.2.3.4, server: x, request: "GET / HTTP/1.1", host: "x"',
        Cause.UPSTREAM_DNS,
        "api.internal",  # no upstream: "..." part; the name that failed leads the message
    ),
    (
        "nginx",
        "2024/05/01 12:00:00 [error] 7#7: *9 SSL_do_handshake() failed (SSL: error:0A000086:"
        "SSL routines::certificate verify failed) while SSL handshaking to upstream, client: "
        '1.2.3.4, server: x, request: "GET / HTTP/1.1", upstream: "https://10.0.0.5:8443/"',
        Cause.UPSTREAM_TLS,
        "10.0.0.5:8443",
    ),
    (
        "nginx",
        "2024/05/01 12:00:00 [error] 7#7: *9 connect() to unix:/run/php/php8.2-fpm.sock failed "
        "(11: Resource temporarily unavailable) while connecting to upstream, client: 1.2.3.4, "
        'upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:"',
        Cause.OVERLOAD,
        "unix:/run/php/php8.2-fpm.sock",
    ),
    (
        "nginx",
        "2024/05/01 12:00:00 [info] 7#7: *9 SSL_do_handshake() failed (SSL: error) while SSL "
        "handshaking, client: 1.2.3.4, server: 0.0.0.0:443",
        None,  # the client's handshake, not the upstream's
        None,
    ),
    (
        "apache",
        "[Wed May 01 12:00:00.123456 2024] [proxy:error] [pid 1:tid 2] [client 1.2.3.4:5] "
        "AH00898: DNS lookup failure for: api.internal returned by /",
        Cause.UPSTREAM_DNS,
        None,
    ),
    (
        "apache",
        "[Wed May 01 12:00:00.123456 2024] [proxy:error] [pid 1:tid 2] (110)Connection timed "
        "out: AH00957: http: attempt to connect to 10.0.0.5:80 (10.0.0.5:80) failed",
        Cause.UPSTREAM_TIMEOUT,
        "10.0.0.5:80",
    ),
    (
        "haproxy",
        "2024-05-01T12:00:00.123456+00:00 lb haproxy[12]: 10.1.1.1:5555 [01/May/2024:12:00:00.1"
        '23] web~ app/web1 0/1000/-1/-1/1001 503 217 - - sQ-- 9/9/8/8/0 0/9 "GET / HTTP/1.1"',
        Cause.OVERLOAD,
        "app/web1",
    ),
    (
        "haproxy",
        "May  1 12:00:00 lb haproxy[12]: 10.1.1.1:5555 [01/May/2024:12:00:00.123] tcp-in "
        "db/db1 1/-1/1002 0 sC 1/1/1/0/0 0/0",
        Cause.UPSTREAM_TIMEOUT,
        "db/db1",
    ),
    (
        "haproxy",
        "May  1 12:00:00 lb haproxy[12]: Server app/web1 is DOWN, reason: Layer4 connection "
        'problem, info: "Connection refused", check duration: 0ms. 0 active servers left.',
        Cause.UPSTREAM_REFUSED,
        "app/web1",
    ),
    (
        "php-fpm",
        "[01-May-2024 12:00:00] WARNING: [pool www] child 812 exited on signal 11 (SIGSEGV - "
        "core dumped) after 12.5 seconds from start",
        Cause.UPSTREAM_CLOSED,
        "php-fpm pool www",
    ),
    (
        "php-fpm",
        "[01-May-2024 12:00:00] WARNING: [pool www] server reached max_children setting (5), "
        "consider raising it",
        Cause.OVERLOAD,
        "php-fpm pool www",
    ),
    (
        # SELinux without httpd_can_network_connect: EACCES on a TCP connect.
        "apache",
        "[Wed May 01 12:00:00.123456 2024] [proxy:error] [pid 1:tid 2] (13)Permission denied: "
        "AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1:8080) failed",
        Cause.UPSTREAM_PERMISSION,
        "127.0.0.1:8080",
    ),
]


# PHP messages the lab's scripts do not make, in the three places PHP's errors land.
PHP_ERRORS: list[tuple[str, str, Cause, str, str]] = [
    (
        "php-fpm",
        "[01-May-2024 14:00:00 Europe/Berlin] PHP Parse error:  syntax error, unexpected token "
        '"}" in /var/www/wp-content/mu-plugins/loader.php on line 7',
        Cause.SERVER_ERROR,
        "PHP parse error in plugin loader",
        "/var/www/wp-content/mu-plugins/loader.php:7",
    ),
    (
        "nginx",
        '2024/05/01 12:00:00 [error] 7#7: *9 FastCGI sent in stderr: "PHP message: PHP Fatal '
        "error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 "
        'bytes) in /var/www/wp-includes/class-wpdb.php on line 2056" while reading response '
        'header from upstream, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1", '
        'upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "x"',
        Cause.SERVER_ERROR,
        "PHP memory_limit exhausted",
        "/var/www/wp-includes/class-wpdb.php:2056",
    ),
    (
        "apache",
        "[Wed May 01 12:00:00.123456 2024] [proxy_fcgi:error] [pid 1:tid 2] [client 1.2.3.4:5]"
        " AH01071: Got error 'PHP message: PHP Warning:  Undefined variable $x in /var/www/a.php"
        " on line 3; PHP message: PHP Fatal error:  Maximum execution time of 30 seconds "
        "exceeded in /var/www/wp-content/plugins/slow/slow.php on line 12'",
        Cause.APP_TIMEOUT,
        "PHP max_execution_time exceeded",
        "/var/www/wp-content/plugins/slow/slow.php:12",
    ),
]


@pytest.mark.parametrize(("fmt", "line", "cause", "what", "source"), PHP_ERRORS)
def test_php_errors_name_the_file(
    fmt: str, line: str, cause: Cause, what: str, source: str
) -> None:
    parsed = classifier(fmt)(line)
    assert parsed is not None and parsed.when is not None and parsed.is_error
    assert (parsed.cause, parsed.what, parsed.source) == (cause, what, source)


def test_php_error_log_time_zone() -> None:
    """PHP stamps its error_log in date.timezone and says which."""
    parse = classifier("php-fpm")
    berlin = parse("[01-May-2024 14:00:00 Europe/Berlin] PHP Warning:  x in /a.php on line 1")
    utc = parse("[01-May-2024 12:00:00 UTC] PHP Notice:  x in /a.php on line 1")
    assert berlin is not None and utc is not None and berlin.when == utc.when
    assert not berlin.is_error and berlin.cause is None


@pytest.mark.parametrize(("fmt", "line", "cause", "upstream"), HAND_WRITTEN)
def test_hand_written_lines(fmt: str, line: str, cause: Cause | None, upstream: str | None) -> None:
    parsed = classifier(fmt)(line)
    assert parsed is not None and parsed.when is not None
    assert parsed.cause is cause
    if upstream:
        assert parsed.upstream == upstream


def test_other_formats_are_not_claimed() -> None:
    access = '127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 502 157 "-" "curl"'
    for fmt in ("apache", "php-fpm"):
        assert classifier(fmt)(access) is None
    # A combined line could be Apache's as well as nginx's: read as nginx's access line only
    # where the source says format = "nginx", never detected.
    assert detect_format([access, "", "random text"]) is None
    line = classifier("nginx")(access)
    assert line is not None and line.status == 502 and line.is_error and line.cause is None


def test_apache_threads_writing_at_once_keep_their_clients() -> None:
    """Two requests failing at the same moment: each thread's connect failure is joined to
    the line that thread writes next for its client, however the lines interleave."""
    stamp = datetime.now().strftime("%a %b %d %H:%M:%S.123456 %Y")
    lines = [
        f"[{stamp}] [proxy:error] [pid 7:tid 11] (111)Connection refused: AH00957: http: "
        "attempt to connect to 127.0.0.1:9 (127.0.0.1:9) failed",
        f"[{stamp}] [proxy:error] [pid 7:tid 12] (111)Connection refused: AH00957: http: "
        "attempt to connect to 127.0.0.1:9 (127.0.0.1:9) failed",
        f"[{stamp}] [proxy_http:error] [pid 7:tid 12] [client 127.0.0.1:40002] AH01114: "
        "HTTP: failed to make connection to backend: 127.0.0.1",
        f"[{stamp}] [proxy_http:error] [pid 7:tid 11] [client 127.0.0.1:40001] AH01114: "
        "HTTP: failed to make connection to backend: 127.0.0.1",
    ]
    classify = classifier("apache")
    parsed = [classify(record) for record in record_splitter("apache")(lines)]
    assert [(p.cause, p.client, p.secondary) for p in parsed if p] == [
        (Cause.UPSTREAM_REFUSED, "127.0.0.1:40002", False),
        (Cause.UPSTREAM_REFUSED, "127.0.0.1:40001", False),
    ]


def test_caddy_json_nested_too_deep_or_too_long_is_not_read() -> None:
    """Auto-detection hands every format each line: JSON nested past Python's recursion limit,
    or a line longer than a log line, is no format's, never an exception."""
    assert detect_format(["[" * 20000]) is None
    assert detect_format(["{" + '"a":' * 20000 + "1" + "}" * 20000]) is None
    assert caddy.classify('{"level":"error","ts":1,"msg":"' + "x" * 70000 + '"}') is None


def test_records_are_classified_alike_and_only_short_ones_kept() -> None:
    """A shared log's lines are classified once per process (a storm's sites all read it);
    a long record (a stack trace) is classified each time, so what is kept stays bounded."""
    kept = logparse._classified_kept
    request = "GET /?q=" + "a" * 3000 + " HTTP/1.1"
    line = (
        "2026/12/02 01:02:03 [error] 12#12: *3 connect() failed (111: Connection refused) while"
        f' connecting to upstream, client: 127.0.0.1, server: shop, request: "{request}",'
        ' upstream: "http://127.0.0.1:9/", host: "shop"'
    )
    classify = classifier("nginx")
    before = kept.cache_info()
    first, again = classify(line), classify(line)
    assert first is not None and first == again and first.cause is Cause.UPSTREAM_REFUSED
    after = kept.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # too long to keep
    short = line.replace(request, "GET / HTTP/1.1")
    assert classify(short) is classify(short)  # kept: the second is the first's answer
    final = kept.cache_info()
    assert (final.hits, final.misses) == (after.hits + 1, after.misses + 1)
