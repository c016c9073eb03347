"""A URL and nothing else (no logs, no upstreams): the verdict may only name a cause a real
proxy's answer shows, and says ``unknown`` otherwise, naming the layer that answered and what
would tell — never a confident wrong cause."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

import pytest

from badgateway.checks.model import Cause
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import Settings
from tests.lab.fixtures_proxies import Proxy

URL_ONLY = Settings(
    allow_networks=(ip_network("127.0.0.0/8"),),
    reload_attempts=2,
    reload_spacing_s=0.1,
    timeout_s=3,
)

# What really fails behind the proxy, per upstream kind.
TRUTH = {
    "refused": Cause.UPSTREAM_REFUSED,
    "slow": Cause.UPSTREAM_TIMEOUT,
    "close_mid_response": Cause.UPSTREAM_CLOSED,
    "garbage": Cause.UPSTREAM_INVALID,
    "bad_header": Cause.UPSTREAM_INVALID,
    "huge_headers": Cause.UPSTREAM_HEADER_TOO_BIG,
}
PRODUCERS = {"nginx": "nginx", "haproxy": "HAProxy", "apache": "Apache"}


@pytest.mark.parametrize("kind", list(TRUTH))
@pytest.mark.parametrize("proxy_kind", list(PRODUCERS))
async def test_no_confident_wrong_cause(
    request: pytest.FixtureRequest,
    module_upstream: Callable[..., Any],
    proxy_kind: str,
    kind: str,
) -> None:
    start: Callable[..., Proxy] = request.getfixturevalue(f"module_{proxy_kind}_proxy")
    # Apache limits one header line (8 KiB), not the head: 1000-byte cookies pass; 10 kB do not.
    opts = {"cookie_bytes": 10000} if (proxy_kind, kind) == ("apache", "huge_headers") else {}
    proxy = start(module_upstream(kind, delay_s=4, **opts))
    diagnosis = await diagnose(proxy.url, URL_ONLY)
    verdict = diagnosis.verdict
    assert diagnosis.site is None
    assert verdict.cause in (Cause.UNKNOWN, TRUTH[kind]), verdict.summary
    if verdict.cause is Cause.UNKNOWN:
        # The layer that answered, and what would tell.
        assert PRODUCERS[proxy_kind] in verdict.summary, verdict.summary
        assert "no valid answer from what is behind it" in verdict.summary
        assert any("error log" in step for step in verdict.next_steps), verdict.next_steps


async def test_an_answer_without_a_status_line_is_an_invalid_upstream_answer(
    module_upstream: Callable[..., Any], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    # nginx relays an app's non-HTTP bytes as an HTTP/0.9 answer: no status line at all.
    proxy = module_nginx_proxy(module_upstream("garbage"))
    diagnosis = await diagnose(proxy.url, URL_ONLY)
    assert diagnosis.verdict.cause is Cause.UPSTREAM_INVALID, diagnosis.verdict.summary
    assert "no HTTP status line" in diagnosis.verdict.summary


@pytest.mark.parametrize(
    ("kind", "cause"), [("ok", Cause.HEALTHY), ("error500", Cause.SERVER_ERROR)]
)
async def test_what_the_answer_does_show(
    module_upstream: Callable[..., Any],
    module_nginx_proxy: Callable[..., Proxy],
    kind: str,
    cause: Cause,
) -> None:
    proxy = module_nginx_proxy(module_upstream(kind))
    diagnosis = await diagnose(proxy.url, URL_ONLY)
    assert diagnosis.verdict.cause is cause, diagnosis.verdict.summary
