"""End to end: a whole diagnosis (``checks.runner.diagnose``) of a real nginx, HAProxy or
Apache — or php-fpm behind nginx — in front of a misbehaving upstream, with the site's logs
configured, names the cause behind the proxy: after users' failed requests, and on a quiet
site, where the diagnosis's own requests are the only traffic the proxy ever sees."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest

from checks.model import Cause, Diagnosis
from checks.runner import diagnose
from checks.settings import LogSource, Settings, Site
from tests.lab.fixtures_proxies import PhpFpm, Proxy


def get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=6).status_code
    except httpx.HTTPError:
        return None


def lab_settings(url: str, logs: list[Path], upstreams: tuple[str, ...] = ()) -> Settings:
    site = Site(
        name="lab",
        url=url,
        upstreams=upstreams,
        logs=tuple(LogSource(str(path)) for path in logs),
    )
    return Settings(
        allow_networks=(ip_network("127.0.0.0/8"),),
        sites=(site,),
        reload_attempts=2,
        reload_spacing_s=0.1,
        timeout_s=3,
        log_window_s=300,
    )


async def run_diagnosis(url: str, logs: list[Path], upstreams: tuple[str, ...] = ()) -> Diagnosis:
    diagnosis = await diagnose(url, lab_settings(url, logs, upstreams))
    logs_step = next(s for s in diagnosis.steps if s.name == "logs")
    assert logs_step.status.value in ("fail", "warn"), logs_step.summary
    return diagnosis


def own_log_evidence(diagnosis: Diagnosis, cause: Cause) -> int:
    """How many of the diagnosis's own requests the verdict's log evidence names."""
    return sum(
        int(f.data.get("own", 0)) for f in diagnosis.verdict.evidence if f.code.startswith("log_")
    )


def explain(diagnosis: Diagnosis) -> str:
    lines = [f"verdict {diagnosis.verdict.cause}: {diagnosis.verdict.summary}"]
    for step in diagnosis.steps:
        lines.append(f"  {step.name} {step.status}: {step.summary}")
        lines += [f"    {f.code} {f.severity} {f.cause} w{int(f.weight)}" for f in step.findings]
    return "\n".join(lines)


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


@pytest.mark.parametrize(("proxy_kind", "kind", "opts", "cause", "pattern"), CASES)
async def test_cause_behind_proxy(
    request: pytest.FixtureRequest,
    upstream: Callable[..., Any],
    proxy_kind: str,
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **opts)
    start: Callable[..., Proxy] = request.getfixturevalue(f"{proxy_kind}_proxy")
    proxy = start(app)
    get(proxy.url)  # the failure users saw, before anyone asked the bot
    proxy.wait_for_log(pattern)
    diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], (app.address,))
    assert diagnosis.verdict.cause is cause, explain(diagnosis)
    assert any(f.code == f"log_{cause.value}" for f in diagnosis.verdict.evidence)


@pytest.mark.parametrize(("proxy_kind", "kind", "opts", "cause", "pattern"), CASES)
async def test_cause_behind_proxy_on_a_quiet_site(
    request: pytest.FixtureRequest,
    upstream: Callable[..., Any],
    proxy_kind: str,
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **opts)
    start: Callable[..., Proxy] = request.getfixturevalue(f"{proxy_kind}_proxy")
    proxy = start(app)
    assert not re.search(pattern, proxy.read_log())  # nobody has failed there yet
    diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], (app.address,))
    assert diagnosis.verdict.cause is cause, explain(diagnosis)
    assert own_log_evidence(diagnosis, cause) >= 1, explain(diagnosis)
    assert re.search(pattern, proxy.read_log())  # the proxy logged our own requests


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
