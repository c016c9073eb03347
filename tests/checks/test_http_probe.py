"""The pinned HTTP probe against real servers: Host and SNI, certificate checks, body and
time caps, errors named by kind, redirects followed within limits.

The site is tests.lab.site_nginx: a real nginx with a plain and a TLS listener.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.http_probe import MAX_BODY_BYTES, MAX_REDIRECTS, cache_busted, fetch
from badgateway.checks.settings import Settings
from badgateway.checks.target import parse_target
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import free_port
from tests.lab.site_nginx import SiteNginx, running_site_nginx

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteNginx]:
    with running_site_nginx(tmp_path_factory.mktemp("site-nginx")) as server:
        yield server


def pinned(url: str, settings: Settings, address: str = "127.0.0.1") -> ProbeContext:
    """A context as prepare() leaves it, pinned to ``address`` — the name itself resolves
    nowhere, so a probe that re-resolved it would fail."""
    return ProbeContext(parse_target(url, settings), settings, addresses=(address,))


def _settings(**kw: object) -> Settings:
    options: dict[str, object] = {"allow_networks": LOOPBACK, "timeout_s": 3.0, **kw}
    return Settings(**options)  # type: ignore[arg-type]


async def test_pinned_address_with_the_sites_host_header(site: SiteNginx) -> None:
    ctx = pinned(f"http://site.test:{site.http_port}/", _settings())
    attempt = await fetch(ctx)
    assert attempt.error is None
    assert attempt.status == 200
    assert attempt.address == "127.0.0.1"
    assert attempt.body_text == "host=site.test sni=\n"
    assert attempt.headers["server"].startswith("nginx")
    assert len(attempt.headers["x-request-id"]) == 32
    phases = attempt.phases
    assert phases["dns"] == 0.0
    assert 0 < phases["connect"] <= phases["ttfb"] <= phases["total"]
    assert "tls" not in phases


async def test_tls_sends_sni_and_verifies_against_the_host_name(site: SiteNginx) -> None:
    ctx = pinned(f"https://site.test:{site.https_port}/", _settings(ca_file=str(site.certs.ca)))
    attempt = await fetch(ctx)
    assert attempt.error is None, attempt.error
    assert attempt.status == 200
    # nginx picked the site.test server block: the SNI name reached it.
    assert attempt.body_text == "host=site.test sni=site.test\n"
    phases = attempt.phases
    assert phases["connect"] <= phases["tls"] <= phases["ttfb"] <= phases["total"]


async def test_untrusted_certificate_is_recorded_as_a_tls_failure(site: SiteNginx) -> None:
    ctx = pinned(f"https://site.test:{site.https_port}/", _settings())
    attempt = await fetch(ctx)
    assert attempt.status is None
    assert attempt.error is not None
    assert (attempt.error["kind"], attempt.error["phase"]) == ("tls", "tls")
    assert "certificate verify failed" in attempt.error["message"]


async def test_certificate_for_another_name_fails(site: SiteNginx) -> None:
    # "www.site.test" gets nginx's default server, whose certificate is for other.test.
    settings = _settings(ca_file=str(site.certs.ca))
    attempt = await fetch(pinned(f"https://www.site.test:{site.https_port}/", settings))
    assert attempt.error is not None and attempt.error["kind"] == "tls"
    assert "www.site.test" in attempt.error["message"] or "mismatch" in attempt.error["message"]


async def test_ssl_cert_file_is_honoured(site: SiteNginx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(site.certs.ca))
    attempt = await fetch(pinned(f"https://site.test:{site.https_port}/", _settings()))
    assert attempt.status == 200, attempt.error


async def test_refused_connection() -> None:
    port = free_port()
    attempt = await fetch(pinned(f"http://127.0.0.1:{port}/", _settings()))
    assert attempt.status is None
    assert attempt.error is not None
    assert (attempt.error["kind"], attempt.error["phase"]) == ("refused", "connect")
    assert "connect" not in attempt.phases


async def test_close_without_answer_is_closed() -> None:
    with Upstream("flaky", fail_first=100) as app:
        attempt = await fetch(pinned(app.url, _settings()))
    assert attempt.error is not None
    assert (attempt.error["kind"], attempt.error["phase"]) == ("closed", "response")


async def test_read_timeout_is_bounded() -> None:
    with Upstream("slow", delay_s=3) as app:
        started = time.monotonic()
        attempt = await fetch(pinned(app.url, _settings(timeout_s=0.5)))
        elapsed = time.monotonic() - started
    assert attempt.error is not None
    assert (attempt.error["kind"], attempt.error["phase"]) == ("timeout", "response")
    assert elapsed < 1.5
    assert "connect" in attempt.phases and "ttfb" not in attempt.phases


async def test_body_read_is_capped() -> None:
    with Upstream("ok", body=b"x" * (MAX_BODY_BYTES * 3)) as app:
        attempt = await fetch(pinned(app.url, _settings()))
    assert attempt.status == 200
    assert len(attempt.body) == MAX_BODY_BYTES and attempt.body_truncated
    data = attempt.to_dict()
    assert len(data["body_excerpt"]) < 5000
    json.dumps(data)


async def test_same_host_redirect_is_followed_on_the_pinned_address(site: SiteNginx) -> None:
    attempt = await fetch(pinned(f"http://site.test:{site.http_port}/to-final", _settings()))
    assert attempt.status == 200 and attempt.body_text == "final\n"
    assert [h["status"] for h in attempt.redirects] == [302]
    assert attempt.url.endswith("/final")


async def test_redirect_to_another_host_is_resolved_and_vetted(site: SiteNginx) -> None:
    # localhost resolves (getaddrinfo, /etc/hosts) to 127.0.0.1, which the settings allow.
    attempt = await fetch(pinned(f"http://site.test:{site.http_port}/to-localhost", _settings()))
    assert attempt.status == 200 and attempt.body_text == "final\n"
    assert attempt.url == f"http://localhost:{site.http_port}/final"


async def test_redirect_loop_stops(site: SiteNginx) -> None:
    attempt = await fetch(pinned(f"http://site.test:{site.http_port}/loop", _settings()))
    assert attempt.status == 302
    assert len(attempt.redirects) == MAX_REDIRECTS


async def test_no_follow_and_roundtrip(site: SiteNginx) -> None:
    ctx = pinned(f"http://site.test:{site.http_port}/fail", _settings())
    attempt = await fetch(ctx, user_agent="probe-test", headers={"X-Extra": "1"})
    assert attempt.status == 503 and attempt.user_agent == "probe-test"
    again = type(attempt).from_dict(json.loads(json.dumps(attempt.to_dict())))
    assert again.status == 503 and again.headers == attempt.headers
    assert again.body_text == "down\n"
    hop = await fetch(
        pinned(f"http://site.test:{site.http_port}/to-final", _settings()),
        follow_redirects=False,
    )
    assert hop.status == 302 and hop.redirects == []


async def test_no_address_is_an_error_not_a_crash() -> None:
    settings = _settings()
    ctx = ProbeContext(
        parse_target("http://gone.test/", settings), settings, resolve_error="NXDOMAIN"
    )
    attempt = await fetch(ctx)
    assert attempt.error == {"kind": "no_address", "phase": "connect", "message": "NXDOMAIN"}


def test_cache_busted_keeps_the_query() -> None:
    first = cache_busted("https://a.test/p?x=1")
    assert first.startswith("https://a.test/p?x=1&_bgw=")
    assert cache_busted("https://a.test") != cache_busted("https://a.test")
