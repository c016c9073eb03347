"""End to end: a whole diagnosis (``checks.runner.diagnose``) of a real nginx, HAProxy or
Apache — or php-fpm behind nginx — in front of a misbehaving upstream, with the site's logs
configured, names the cause behind the proxy: after users' failed requests, and on a quiet
site, where the diagnosis's own requests are the only traffic the proxy ever sees."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from badgateway.checks.model import Cause
from tests.lab.diagnosis import explain, get, own_log_evidence, run_diagnosis
from tests.lab.fixtures_proxies import PhpFpm, Proxy

CASES: list[tuple[str, str, dict[str, Any], Cause, str]] = [
    ("nginx", "refused", {}, Cause.UPSTREAM_REFUSED, r"Connection refused"),
    ("haproxy", "refused", {}, Cause.UPSTREAM_REFUSED, r" SC-- "),
    ("apache", "refused", {}, Cause.UPSTREAM_REFUSED, r"AH00957"),
    ("nginx", "slow", {"delay_s": 4}, Cause.UPSTREAM_TIMEOUT, r"upstream timed out"),
    ("haproxy", "slow", {"delay_s": 4}, Cause.UPSTREAM_TIMEOUT, r" sH-- "),
    ("apache", "slow", {"delay_s": 4}, Cause.UPSTREAM_TIMEOUT, r"AH01102"),
    ("nginx", "close_mid_response", {}, Cause.UPSTREAM_CLOSED, r"prematurely closed"),
    ("haproxy", "close_mid_response", {}, Cause.UPSTREAM_CLOSED, r" SH-- "),
    ("apache", "close_mid_response", {}, Cause.UPSTREAM_CLOSED, r"AH10404"),
    ("nginx", "bad_header", {}, Cause.UPSTREAM_INVALID, r"invalid header"),
    ("haproxy", "garbage", {}, Cause.UPSTREAM_INVALID, r" PH-- "),
    ("apache", "garbage", {}, Cause.UPSTREAM_INVALID, r"AH01102"),
    ("nginx", "huge_headers", {}, Cause.UPSTREAM_HEADER_TOO_BIG, r"too big header"),
    (
        "apache",
        "huge_headers",
        {"cookie_bytes": 10000},
        Cause.UPSTREAM_HEADER_TOO_BIG,
        r"AH10124",
    ),
]


@pytest.mark.parametrize("users_first", [True, False], ids=["after-users", "quiet-site"])
@pytest.mark.parametrize(("proxy_kind", "kind", "opts", "cause", "pattern"), CASES)
async def test_cause_behind_proxy(
    request: pytest.FixtureRequest,
    upstream: Callable[..., Any],
    proxy_kind: str,
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
    users_first: bool,
) -> None:
    app = upstream(kind, **opts)
    start: Callable[..., Proxy] = request.getfixturevalue(f"{proxy_kind}_proxy")
    proxy = start(app)
    if users_first:
        get(proxy.url)  # the failure users saw, before anyone asked the bot
        proxy.wait_for_log(pattern)
    else:
        assert not re.search(pattern, proxy.read_log())  # nobody has failed there yet
    diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], (app.address,))
    assert diagnosis.verdict.cause is cause, explain(diagnosis)
    assert any(f.code == f"log_{cause.value}" for f in diagnosis.verdict.evidence)
    # The diagnosis's own requests are in the log, and in the evidence.
    assert own_log_evidence(diagnosis) >= 1, explain(diagnosis)


async def test_php_fpm_terminate_timeout_on_a_quiet_site(
    php_fpm: Callable[..., PhpFpm], nginx_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    proxy = nginx_proxy(php=fpm, read_timeout_s=4)
    url = proxy.url + "sleep.php?s=3"
    diagnosis = await run_diagnosis(url, [proxy.error_log, fpm.error_log], (fpm.address,))
    assert diagnosis.verdict.cause is Cause.APP_TIMEOUT, explain(diagnosis)
    assert "execution timed out" in fpm.read_log()


async def test_php_fpm_terminate_timeout_is_app_timeout(
    php_fpm: Callable[..., PhpFpm], nginx_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    proxy = nginx_proxy(php=fpm, read_timeout_s=4)
    url = proxy.url + "sleep.php?s=3"
    assert get(url) == 502
    fpm.wait_for_log(r"execution timed out")
    diagnosis = await run_diagnosis(url, [proxy.error_log, fpm.error_log], (fpm.address,))
    assert diagnosis.verdict.cause is Cause.APP_TIMEOUT, explain(diagnosis)


async def test_php_fpm_pool_full_is_overload(
    php_fpm: Callable[..., PhpFpm], nginx_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(max_children=1)
    proxy = nginx_proxy(php=fpm, read_timeout_s=1)
    # One slow request holds the only worker; nginx gives up on it after 1 s, php does not.
    hold = threading.Thread(target=get, args=(proxy.url + "sleep.php?s=10",))
    hold.start()
    try:
        fpm.wait_for_log(r"max_children")
        assert get(proxy.url + "ok.php") == 504
        diagnosis = await run_diagnosis(
            proxy.url + "ok.php", [proxy.error_log, fpm.error_log], (fpm.address,)
        )
    finally:
        hold.join()
    assert diagnosis.verdict.cause is Cause.OVERLOAD, explain(diagnosis)


async def test_nginx_no_live_upstreams_at_max_conns_is_overload(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("slow", delay_s=10)
    proxy = nginx_proxy(app, max_conns=1, read_timeout_s=15)
    hold = threading.Thread(target=get, args=(proxy.url,))
    hold.start()
    try:
        for _ in range(200):  # until the slow request holds the only allowed connection
            if app.connections:
                break
            threading.Event().wait(0.02)
        assert get(proxy.url) == 502
        proxy.wait_for_log(r"no live upstreams")
        diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], (app.address,))
    finally:
        app.stop()  # lets the held request end now
        hold.join()
    assert diagnosis.verdict.cause is Cause.OVERLOAD, explain(diagnosis)
