"""End to end: the two causes the logs step reads from nginx's error log that no other lab
provoked — TLS to the upstream and the upstream's name — each made by a real nginx in
front of an upstream that really fails: a real request gets the 502, the logs step claims
the cause from the line nginx wrote (Weight.OBSERVED), and the whole diagnosis names it.

- TLS: ``proxy_pass https://`` to a real nginx that speaks plain HTTP (the handshake
  fails), and, with ``proxy_ssl_verify on``, to a TLS server whose certificate is expired,
  for another name, or self-signed (tests/lab/certs.py).
- DNS: ``resolver`` pointing at the real BIND lab and ``proxy_pass http://$up:PORT``; the
  name is NXDOMAIN there, its zone fails (SERVFAIL), or the resolver never answers.

Each has a control that is the same setup with the fault removed and answers 200.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from badgateway.checks.model import Cause, Status, StepResult, Weight
from badgateway.checks.settings import LogSource
from badgateway.checks.verdict import decide
from tests.lab.certs import LabCerts, TlsServer
from tests.lab.diagnosis import explain, get, run_diagnosis, run_logs
from tests.lab.fixtures_dns import DnsLab
from tests.lab.fixtures_proxies import Proxy


async def claimed_from_log(proxy: Proxy, cause: Cause, upstream: str) -> StepResult:
    """The logs step on the proxy's error log claims ``cause`` alone, as observed, naming
    ``upstream``; and a verdict over that step alone names it too."""
    result = await run_logs(LogSource(str(proxy.error_log)))  # format detected
    assert result.status is Status.FAIL, result.summary
    claimed = [f for f in result.findings if f.cause]
    assert [f.cause for f in claimed] == [cause], result.to_dict()
    [finding] = claimed
    assert finding.code == f"log_{cause.value}" and finding.weight is Weight.OBSERVED
    assert finding.data["upstream"] == upstream and finding.data["count"] >= 1
    assert upstream in finding.data["next_step"]
    assert result.details["logs"][0]["format"] == "nginx"
    assert decide([result]).cause is cause
    return result


async def named_by_diagnosis(proxy: Proxy, cause: Cause, upstreams: tuple[str, ...]) -> None:
    diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], upstreams)
    assert diagnosis.verdict.cause is cause, explain(diagnosis)
    assert any(f.code == f"log_{cause.value}" for f in diagnosis.verdict.evidence)


# --- TLS between nginx and its upstream -----------------------------------------------------


async def test_https_to_a_plain_http_upstream_is_upstream_tls(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    # The upstream is itself a real nginx on a plain-HTTP port (in front of a working app).
    plain = nginx_proxy(upstream("ok"))
    assert get(plain.url) == 200
    address = f"127.0.0.1:{plain.port}"
    proxy = nginx_proxy(address, https=True)
    assert get(proxy.url) == 502
    proxy.wait_for_log(r"SSL_do_handshake\(\) failed .* while SSL handshaking to upstream")
    await claimed_from_log(proxy, Cause.UPSTREAM_TLS, address)
    # A bare address: the upstream probe only connects (it answers), so the logs decide.
    await named_by_diagnosis(proxy, Cause.UPSTREAM_TLS, (address,))


TLS_CASES = [
    ("expired", r"upstream SSL certificate verify error: \(10:certificate has expired\)"),
    ("wrong_host", r'upstream SSL certificate does not match "localhost"'),
    ("self_signed", r"upstream SSL certificate verify error: \(18:self-signed certificate\)"),
]


@pytest.mark.parametrize(("pair", "pattern"), TLS_CASES)
async def test_bad_upstream_certificate_with_verify_on_is_upstream_tls(
    tls_certs: LabCerts, nginx_proxy: Callable[..., Proxy], pair: str, pattern: str
) -> None:
    with TlsServer(getattr(tls_certs, pair)) as app:
        address = f"127.0.0.1:{app.port}"
        proxy = nginx_proxy(address, https=True, ssl_verify_ca=tls_certs.ca, ssl_name="localhost")
        assert get(proxy.url) == 502
        proxy.wait_for_log(pattern + r" while SSL handshaking to upstream")
        await claimed_from_log(proxy, Cause.UPSTREAM_TLS, address)
        await named_by_diagnosis(proxy, Cause.UPSTREAM_TLS, (address,))


async def test_valid_upstream_certificate_control(
    tls_certs: LabCerts, nginx_proxy: Callable[..., Proxy]
) -> None:
    """The same verifying nginx, a certificate for the right name from the trusted CA: 200,
    and the log claims nothing."""
    with TlsServer(tls_certs.valid) as app:
        proxy = nginx_proxy(
            f"127.0.0.1:{app.port}", https=True, ssl_verify_ca=tls_certs.ca, ssl_name="localhost"
        )
        assert get(proxy.url) == 200
        assert app.server_names == ["localhost"]  # proxy_ssl_name went out as SNI
    result = await run_logs(LogSource(str(proxy.error_log)))
    assert [f.cause for f in result.findings if f.cause] == []


# --- nginx resolving its upstream's name ----------------------------------------------------

DNS_CASES = [
    ("missing", "primary", r"missing\.test could not be resolved \(3: Host not found\)"),
    ("servfail", "primary", r"www\.broken\.test could not be resolved \(2: Server failure\)"),
    ("missing", "dead", r"missing\.test could not be resolved \(110: Operation timed out\)"),
]


@pytest.mark.parametrize(("name", "server", "pattern"), DNS_CASES)
async def test_unresolvable_upstream_name_is_upstream_dns(
    dns_lab: DnsLab,
    upstream: Callable[..., Any],
    nginx_proxy: Callable[..., Proxy],
    name: str,
    server: str,
    pattern: str,
) -> None:
    app = upstream("ok")  # a working app on the port the name would have led to
    host = getattr(dns_lab, name)
    proxy = nginx_proxy(f"{host}:{app.port}", resolver=getattr(dns_lab, server))
    assert get(proxy.url) == 502  # nginx answers a failed resolution with 502 (not 503/504)
    proxy.wait_for_log(pattern)
    assert app.connections == 0
    await claimed_from_log(proxy, Cause.UPSTREAM_DNS, host)
    # No upstreams listed: the bot would look the name up with its own resolver instead.
    await named_by_diagnosis(proxy, Cause.UPSTREAM_DNS, ())


async def test_resolvable_upstream_name_control(
    dns_lab: DnsLab, upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    """The same resolver setup with a name the lab answers (127.0.0.1): nginx reaches the
    app, answers 200, and the log claims nothing."""
    app = upstream("ok")
    proxy = nginx_proxy(f"{dns_lab.loop}:{app.port}", resolver=dns_lab.primary)
    assert get(proxy.url) == 200
    assert app.connections == 1
    result = await run_logs(LogSource(str(proxy.error_log)))
    assert [f.cause for f in result.findings if f.cause] == []


# --- the same, on a quiet site: the diagnosis's own requests are the only ones ---------------


async def test_upstream_tls_on_a_quiet_site(
    tls_certs: LabCerts, nginx_proxy: Callable[..., Proxy]
) -> None:
    with TlsServer(tls_certs.expired) as app:
        address = f"127.0.0.1:{app.port}"
        proxy = nginx_proxy(address, https=True, ssl_verify_ca=tls_certs.ca, ssl_name="localhost")
        assert "SSL" not in proxy.read_log()
        diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], (address,))
    assert diagnosis.verdict.cause is Cause.UPSTREAM_TLS, explain(diagnosis)
    [finding] = [f for f in diagnosis.verdict.evidence if f.code == "log_upstream_tls"]
    assert finding.data["own"] >= 1 and finding.data["users"] == 0


async def test_upstream_dns_on_a_quiet_site(
    dns_lab: DnsLab, upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("ok")
    proxy = nginx_proxy(f"{dns_lab.missing}:{app.port}", resolver=dns_lab.primary)
    diagnosis = await run_diagnosis(proxy.url, [proxy.error_log], ())
    assert diagnosis.verdict.cause is Cause.UPSTREAM_DNS, explain(diagnosis)
    [finding] = [f for f in diagnosis.verdict.evidence if f.code == "log_upstream_dns"]
    assert finding.data["own"] >= 1 and finding.data["users"] == 0
