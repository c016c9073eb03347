"""Error-page fingerprinting: real nginx, HAProxy and Apache pages first, then vendor pages.

The first group starts the real Debian servers in front of misbehaving lab upstreams and
fingerprints what they actually send. The second group (``test_vendor_*``) uses header and
body samples written after the vendors' public documentation and published support threads
(Cloudflare's 5xx error pages, AWS ELB/CloudFront error responses, Envoy's and Kong's
built-in messages): those services cannot run here, so these tests only check that the
matching rules read such samples as intended; no test claims an end-to-end cause from them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from badgateway.checks.attempt import Attempt
from badgateway.checks.fingerprint import Fingerprint, identify, identify_attempt, request_id
from badgateway.checks.http_probe import fetch
from badgateway.checks.model import Cause
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_upstreams import Upstream

LOOPBACK = Settings(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_s=4)


async def _get(url: str) -> Attempt:
    ctx = await prepare(url, LOOPBACK)
    return await fetch(ctx)


async def _fingerprint(url: str) -> tuple[Attempt, Fingerprint]:
    attempt = await _get(url)
    return attempt, identify_attempt(attempt)


# --- real servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apps(module_upstream: Callable[..., Upstream]) -> dict[str, Upstream]:
    return {
        kind: module_upstream(kind, delay_s=3)
        for kind in ("ok", "refused", "slow", "close_mid_response", "error500")
    }


async def test_nginx_502_page_is_nginx_without_a_cause(
    apps: dict[str, Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(apps["refused"])
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 502
    assert fp.producer == "nginx"
    assert fp.generated and fp.confidence >= 0.9
    # nginx's 502 covers refused, closed, invalid…: only its error log can tell.
    assert fp.cause_hint is None


async def test_nginx_504_page_names_upstream_timeout(
    apps: dict[str, Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(apps["slow"], read_timeout_s=0.5)
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 504
    assert (fp.producer, fp.cause_hint) == ("nginx", Cause.UPSTREAM_TIMEOUT)


async def test_nginx_passing_the_apps_500_through_is_not_its_own_page(
    apps: dict[str, Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(apps["error500"])
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 500
    assert fp.producer == "nginx"  # its Server header
    assert not fp.generated  # but the body is the application's
    assert "Internal Server Error (app)" in attempt.body_text


async def test_haproxy_503_no_server_is_identified_but_not_blamed(
    apps: dict[str, Upstream], module_haproxy_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_haproxy_proxy(apps["refused"])
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 503
    assert "No server is available to handle this request" in attempt.body_text
    assert fp.producer == "HAProxy" and fp.generated
    # Measured here: HAProxy says "no server is available" for a *refused* connection too,
    # so the page alone must not claim overload.
    assert fp.cause_hint is None
    assert "no server is available" in fp.reason


async def test_haproxy_502_for_a_closed_response(
    apps: dict[str, Upstream], module_haproxy_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_haproxy_proxy(apps["close_mid_response"])
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 502
    assert "invalid or incomplete response" in attempt.body_text
    assert fp.producer == "HAProxy"
    assert fp.cause_hint is None  # invalid *or* incomplete: the page does not say which


async def test_haproxy_504_names_upstream_timeout(
    apps: dict[str, Upstream], module_haproxy_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_haproxy_proxy(apps["slow"], server_timeout_s=0.5)
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 504
    assert (fp.producer, fp.cause_hint) == ("HAProxy", Cause.UPSTREAM_TIMEOUT)


async def test_apache_proxy_pages(
    apps: dict[str, Upstream], module_apache_proxy: Callable[..., Proxy]
) -> None:
    refused = module_apache_proxy(apps["refused"])
    attempt, fp = await _fingerprint(refused.url)
    assert attempt.status == 503
    assert fp.producer == "Apache" and fp.generated
    assert fp.cause_hint is None
    closed = module_apache_proxy(apps["close_mid_response"])
    attempt, fp = await _fingerprint(closed.url)
    assert attempt.status == 502
    assert fp.producer == "Apache"
    assert "invalid or no response from the backend" in fp.reason


async def test_a_healthy_answer_carries_no_cause(
    apps: dict[str, Upstream], module_nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = module_nginx_proxy(apps["ok"])
    attempt, fp = await _fingerprint(proxy.url)
    assert attempt.status == 200
    assert fp.producer == "nginx"
    assert fp.cause_hint is None and not fp.generated


async def test_page_alone_identifies_nginx_with_server_header_stripped() -> None:
    body = (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    fp = identify(502, {"content-type": "text/html"}, body)
    assert fp.producer == "nginx" and fp.confidence == 0.6


# --- vendor samples (recorded from public documentation; see module docstring) ------------

_CF = {"server": "cloudflare", "cf-ray": "8a1b2c3d4e5f6789-FRA", "content-type": "text/html"}


@pytest.mark.parametrize(
    ("status", "body", "cause"),
    [
        (520, "Error code 520 Web server is returning an unknown error", Cause.UPSTREAM_INVALID),
        (521, "Error code 521 Web server is down", Cause.UPSTREAM_REFUSED),
        (522, "Error code 522 Connection timed out", Cause.UPSTREAM_TIMEOUT),
        (523, "Error code 523 Origin is unreachable", Cause.UPSTREAM_REFUSED),
        (524, "Error code 524 A timeout occurred", Cause.APP_TIMEOUT),
        (525, "Error code 525 SSL handshake failed", Cause.UPSTREAM_TLS),
        (526, "Error code 526 Invalid SSL certificate", Cause.UPSTREAM_TLS),
        (530, "Error 1016 Ray ID: 8a1b2c3d4e5f6789 Origin DNS error", Cause.UPSTREAM_DNS),
        (403, "Sorry, you have been blocked. Cloudflare Ray ID", Cause.BLOCKED),
        (502, "Bad gateway Error code 502 cloudflare", None),
    ],
)
def test_vendor_cloudflare_codes(status: int, body: str, cause: Cause | None) -> None:
    fp = identify(status, _CF, body)
    assert fp.producer == "Cloudflare"
    assert fp.cause_hint == cause
    assert fp.request_id == "cf-ray: 8a1b2c3d4e5f6789-FRA"


def test_vendor_elb_and_cloudfront() -> None:
    elb_page = (
        "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
        "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    fp = identify(504, {"server": "awselb/2.0"}, elb_page)
    assert (fp.producer, fp.cause_hint) == ("AWS ELB", Cause.UPSTREAM_TIMEOUT)
    fp = identify(502, {"server": "awselb/2.0"}, elb_page.replace("504 Gateway Time-out", "502"))
    assert (fp.producer, fp.cause_hint) == ("AWS ELB", None)
    waf = "<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden"
    assert identify(403, {"server": "awselb/2.0"}, waf).cause_hint is Cause.BLOCKED
    cloudfront = {
        "server": "CloudFront",
        "x-amz-cf-id": "H_HGBG3sTOqEomHzHubi8ruLbGXe2MRyVhGBn4apM0y_LjQa_9W2Jg==",
        "x-cache": "Error from cloudfront",
    }
    page = "<H2>The request could not be satisfied.</H2>\nGenerated by cloudfront (CloudFront)"
    fp = identify(502, cloudfront, page)
    assert fp.producer == "CloudFront" and fp.generated and fp.cause_hint is None
    assert fp.request_id is not None and fp.request_id.startswith("x-amz-cf-id: H_HG")
    assert identify(504, cloudfront, page).cause_hint is Cause.UPSTREAM_TIMEOUT


@pytest.mark.parametrize(
    ("headers", "status", "body", "producer", "cause"),
    [
        (
            {"server": "envoy"},
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "connection failure, transport failure reason: delayed connect error: 111",
            "Envoy",
            Cause.UPSTREAM_REFUSED,
        ),
        ({"server": "envoy"}, 504, "upstream request timeout", "Envoy", Cause.UPSTREAM_TIMEOUT),
        (
            {"server": "istio-envoy"},
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "connection termination",
            "Istio",
            Cause.UPSTREAM_CLOSED,
        ),
        ({"server": "envoy"}, 503, "no healthy upstream", "Envoy", None),
        (
            {"server": "kong/3.6.1", "x-kong-request-id": "abc"},
            503,
            '{"message":"name resolution failed"}',
            "Kong",
            Cause.UPSTREAM_DNS,
        ),
        (
            {"via": "1.1 varnish", "x-served-by": "cache-fra-1", "x-fastly-request-id": "f1"},
            503,
            "Error 503 first byte timeout Guru Meditation",
            "Fastly",
            Cause.UPSTREAM_TIMEOUT,
        ),
        (
            {"via": "1.1 varnish (Varnish/7.1)"},
            503,
            "Error 503 Backend fetch failed Guru Meditation: XID: 3 Varnish cache server",
            "Varnish",
            None,
        ),
        ({"server": "heroku-router"}, 503, "<title>Application Error</title>", "Heroku", None),
        ({"server": "GFE/2.0"}, 502, "<b>502.</b> That’s an error.", "Google", None),
        ({"server": "AkamaiGHost"}, 403, "Access Denied Reference #18.1", "Akamai", Cause.BLOCKED),
        ({"server": "Caddy"}, 502, "", "Caddy", None),
        (
            {"server": "Microsoft-IIS/10.0", "x-powered-by": "ARR/3.0"},
            502,
            "502.3 - Bad Gateway: The operation timed out",
            "IIS/ARR",
            Cause.UPSTREAM_TIMEOUT,
        ),
        (
            {"server": "Apache/2.4.62"},
            403,
            "This error was generated by Mod_Security.",
            "Apache",
            Cause.BLOCKED,
        ),
    ],
)
def test_vendor_pages(
    headers: dict[str, str], status: int, body: str, producer: str, cause: Cause | None
) -> None:
    fp = identify(status, headers, body)
    assert fp.producer == producer
    assert fp.cause_hint == cause


def test_plain_apache_403_is_not_a_block() -> None:
    body = "<h1>Forbidden</h1><p>You don't have permission to access this resource.</p>"
    fp = identify(403, {"server": "Apache/2.4.71 (Debian)"}, body)
    assert fp.producer == "Apache" and fp.cause_hint is None


def test_success_pages_never_carry_a_cause() -> None:
    fp = identify(200, _CF, "our blog post: Error code 522 Connection timed out explained")
    assert fp.producer == "Cloudflare" and fp.cause_hint is None


def test_unknown_producer_and_request_ids() -> None:
    fp = identify(502, {"x-request-id": "r-1"}, "Bad Gateway")
    assert fp.producer is None and fp.cause_hint is None and fp.request_id == "x-request-id: r-1"
    assert request_id({}, "Reference #18.d2a3c17.1712345678.abc") == (
        "akamai reference: 18.d2a3c17.1712345678.abc"
    )
    data = fp.to_dict()
    assert data["producer"] is None and data["request_id"] == "x-request-id: r-1"
