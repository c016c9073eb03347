"""The log parsers, on lines real nginx, HAProxy, Apache and php-fpm wrote at test time
while proxying to misbehaving upstreams — plus a few hand-written lines for messages the
lab cannot provoke (DNS, TLS, crashes, other syslog layouts)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from checks.logparse import classifier, detect_format
from checks.model import Cause
from tests.lab.fixtures_proxies import Proxy


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


HAPROXY_CASES: list[tuple[str, dict[str, Any], Cause, str]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED, r" SC-- "),
    ("slow", {"delay_s": 3}, Cause.UPSTREAM_TIMEOUT, r" sH-- "),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED, r" SH-- "),
    ("garbage", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
    ("bad_header", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
    # HAProxy logs an oversized response as PH too: its log cannot tell the two apart.
    ("huge_headers", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
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
    assert get(ngx.url + "sleep.php?s=3") == 502
    fpm.wait_for_log(r"execution timed out")
    ngx.wait_for_log(r"Connection reset by peer|prematurely closed")
    assert get(apa.url + "sleep.php?s=3") in (502, 503)
    apa.wait_for_log(r"AH01067")
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
]


@pytest.mark.parametrize(("fmt", "line", "cause", "upstream"), HAND_WRITTEN)
def test_hand_written_lines(fmt: str, line: str, cause: Cause | None, upstream: str | None) -> None:
    parsed = classifier(fmt)(line)
    assert parsed is not None and parsed.when is not None
    assert parsed.cause is cause
    if upstream:
        assert parsed.upstream == upstream


def test_other_formats_are_not_claimed() -> None:
    access = '127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 502 157 "-" "curl"'
    for fmt in ("nginx", "apache", "php-fpm"):
        assert classifier(fmt)(access) is None
    assert detect_format([access, "", "random text"]) is None
