"""End to end: a site diagnosed healthy, then changed on a real server (its DNS record on a
BIND, its certificate, the app behind nginx, nginx's upstream moved, its ``Server`` header),
then diagnosed again failing: the verdict names the change with the last time it was seen
as before and the first time as now. And the Slack path: the sink wrapper compares and
keeps through Redis."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from badgateway.bot.history_store import HistoryKeeper, MemoryHistory, RedisHistory
from badgateway.bot.pipeline import DiagnosisRequest, HistorySink, InProcessCarrier
from badgateway.bot.storage import key
from badgateway.checks.baseline import snapshot_of
from badgateway.checks.model import Cause, Change, Diagnosis, StepResult
from badgateway.checks.runner import diagnose, prepare
from badgateway.checks.settings import LogSource, Settings, Site
from tests.lab.certs import make_test_certs
from tests.lab.diagnosis import explain
from tests.lab.fixtures_dns import ZoneServer
from tests.lab.fixtures_proxies import NGINX_JSON_FORMAT, NGINX_UPSTREAM_ADDR_FORMAT, Proxy
from tests.lab.fixtures_redis import QueueLab, RedisServer
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import serve_app


class ChangingSite:
    """A site whose answer the test changes between diagnoses: status and Server header."""

    def __init__(self) -> None:
        self.status = 200
        self.server = "nginx/1.22.1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        page = "<html><body>shop</body></html>" if self.status < 400 else "<h1>Bad Gateway</h1>"
        return web.Response(
            status=self.status, text=page, content_type="text/html", headers={"Server": self.server}
        )


def settings_for(
    url: str,
    *,
    resolvers: tuple[str, ...] = (),
    upstreams: tuple[str, ...] = (),
    logs: tuple[Path | LogSource, ...] = (),
    ca_file: str | None = None,
) -> Settings:
    sources = tuple(p if isinstance(p, LogSource) else LogSource(str(p)) for p in logs)
    site = Site(name="shop", url=url, upstreams=upstreams, logs=sources)
    return Settings(
        resolvers=resolvers,
        allow_networks=(ip_network("127.0.0.0/8"),),
        sites=(site,),
        reload_attempts=2,
        reload_spacing_s=0.1,
        timeout_s=2,
        ca_file=ca_file,
    )


async def check(keeper: HistoryKeeper, settings: Settings) -> Diagnosis:
    return await keeper.compare_and_keep(await diagnose("shop", settings))


def clock(diagnosis: Diagnosis) -> str:
    return datetime.fromisoformat(diagnosis.started_at).strftime("%H:%M:%S UTC")


def the_change(diagnosis: Diagnosis, fact: str) -> Change:
    found = [c for c in diagnosis.verdict.changes if c.fact == fact]
    assert len(found) == 1, (fact, diagnosis.verdict.changes, explain(diagnosis))
    return found[0]


def assert_dated(change: Change, before: Diagnosis, after: Diagnosis) -> None:
    """Both times, in the change and in its line: last seen as before, first seen as now."""
    assert change.seen_before_at == before.started_at
    assert change.seen_now_at == after.started_at
    assert clock(before) in change.message and clock(after) in change.message


async def test_a_dns_record_changed_on_the_dns_server(
    zone_server: Callable[[str, str], ZoneServer],
) -> None:
    site = ChangingSite()
    runner, port = await serve_app(site.app())
    try:
        zone = zone_server("shop.test", "www 3600 IN A 127.0.0.1\n")
        settings = settings_for(f"http://www.shop.test:{port}/", resolvers=(zone.address,))
        keeper = HistoryKeeper(MemoryHistory())
        healthy = await check(keeper, settings)
        assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)

        zone.serve("www 3600 IN A 127.0.0.2\n")  # where nothing listens on the site's port
        failing = await check(keeper, settings)
    finally:
        await runner.cleanup()
    assert failing.verdict.cause is Cause.UNREACHABLE, explain(failing)
    change = the_change(failing, f"dns.addresses@{zone.address}")
    assert (change.before, change.now, change.at_failing_layer) == ("127.0.0.1", "127.0.0.2", True)
    assert change.message.startswith("A record 127.0.0.1 → 127.0.0.2")
    assert "TTL 3600 s (1 h)" in change.message
    assert_dated(change, healthy, failing)
    assert change.message in failing.verdict.summary  # strong evidence: in the summary
    assert failing.verdict.next_steps[0].startswith("Roll back the DNS change")
    assert "wait up to 1 h (its TTL)" in failing.verdict.next_steps[0]


async def test_b_certificate_replaced(tmp_path: Path) -> None:
    certs = make_test_certs(tmp_path / "certs")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs.valid.cert, certs.valid.key)
    runner, port = await serve_app(ChangingSite().app(), tls)
    try:
        settings = settings_for(f"https://127.0.0.1:{port}/", ca_file=str(certs.ca))
        keeper = HistoryKeeper(MemoryHistory())
        healthy = await check(keeper, settings)
        assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)

        # The server's certificate replaced in place: new handshakes get the self-signed one.
        tls.load_cert_chain(certs.self_signed.cert, certs.self_signed.key)
        failing = await check(keeper, settings)
    finally:
        await runner.cleanup()
    assert failing.verdict.cause is Cause.TLS_ERROR, explain(failing)
    change = the_change(failing, "tls.certificate")
    assert change.at_failing_layer
    assert change.message.startswith("certificate replaced (new issuer CN=localhost;")
    assert_dated(change, healthy, failing)
    assert any(f.code == "changed" for f in failing.verdict.evidence)


async def test_c_upstream_behind_nginx_stops_answering(
    upstream: Callable[..., Upstream], nginx_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("ok")
    proxy = nginx_proxy(app)
    settings = settings_for(proxy.url, upstreams=(app.address,), logs=(proxy.error_log,))
    keeper = HistoryKeeper(MemoryHistory())
    healthy = await check(keeper, settings)
    assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)

    app.stop()  # nginx's upstream port is dead now
    failing = await check(keeper, settings)
    assert failing.verdict.cause is Cause.UPSTREAM_REFUSED, explain(failing)
    change = the_change(failing, f"upstream@{app.address}")
    assert (change.before, change.now, change.at_failing_layer) == ("open", "refused", True)
    assert change.message == (
        f"upstream {app.address} answered at {clock(healthy)}, refuses connections now "
        f"(since {clock(failing)})"
    )
    assert_dated(change, healthy, failing)
    assert any(
        app.address in s and "start the app there again" in s for s in failing.verdict.next_steps
    )


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def move_upstream(proxy: Proxy, old: Upstream, new: Upstream) -> None:
    """Point nginx's upstream at ``new`` instead of ``old`` and reload it, as a deploy would;
    back once the workers that sent to ``old`` have gone (until then they still accept)."""
    conf = proxy.directory / "nginx.conf"
    conf.write_text(conf.read_text().replace(f"server {old.address} ", f"server {new.address} "))
    master = proxy.process.proc.pid
    workers = _children(master)
    command = ["nginx", "-p", str(proxy.directory), "-c", str(conf), "-s", "reload"]
    subprocess.run(command, check=True, capture_output=True, timeout=10)
    deadline = time.monotonic() + 10
    while _children(master) & workers or not _children(master):
        assert time.monotonic() < deadline, "nginx's old workers did not go"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "access_format", [NGINX_UPSTREAM_ADDR_FORMAT, NGINX_JSON_FORMAT], ids=["combined", "json"]
)
async def test_e_nginx_upstream_moved_as_its_access_log_says(
    upstream: Callable[..., Upstream], nginx_proxy: Callable[..., Proxy], access_format: str
) -> None:
    """The sites file lists no upstream: what nginx's access log says it sent to is all,
    whether it logs combined lines or JSON objects (detected: no format given)."""
    old, new = upstream("ok"), upstream("refused")
    proxy = nginx_proxy(old, access_format=access_format)
    assert proxy.access_log is not None
    settings = settings_for(proxy.url, logs=(proxy.error_log, proxy.access_log))
    keeper = HistoryKeeper(MemoryHistory())
    healthy = await check(keeper, settings)
    assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)
    assert snapshot_of(healthy).facts["proxy.upstream@nginx"] == old.address
    logs = next(s for s in healthy.steps if s.name == "logs").details
    [access] = [d for d in logs["logs"] if d["path"] == str(proxy.access_log)]
    assert (access["format"], access["format_detected"]) == ("nginx", True)
    sent = logs["own_requests"]["sent"]
    assert sent > 0 and access["own_requests_seen"] == sent  # "N of our N requests"
    assert set(access["own_upstreams"]) == {old.address}

    move_upstream(proxy, old, new)  # proxy_pass to a port where nothing listens
    failing = await check(keeper, settings)
    assert failing.verdict.cause is Cause.UPSTREAM_REFUSED, explain(failing)
    change = the_change(failing, "proxy.upstream@nginx")
    assert (change.before, change.now, change.at_failing_layer) == (old.address, new.address, True)
    assert change.message == (
        f"nginx upstream {old.address} → {new.address} "
        f"(changed between {clock(healthy)} and {clock(failing)})"
    )
    assert_dated(change, healthy, failing)
    assert change.message in failing.verdict.summary  # strong evidence: in the summary
    assert failing.verdict.next_steps[0] == (
        f"nginx now sends to {new.address}; it sent to {old.address} when it last worked "
        f"(at {clock(healthy)}): check the deploy or config change (proxy_pass, the upstream "
        f"block), or point it back at {old.address}."
    )


async def test_f_nginx_upstream_moved_as_its_error_log_says(
    upstream: Callable[..., Upstream], nginx_proxy: Callable[..., Proxy]
) -> None:
    """nginx's default access log names no upstream: the failing run's error line is the
    evidence, set against the upstream the sites file lists, which answered then."""
    old, new = upstream("ok"), upstream("refused")
    proxy = nginx_proxy(old)
    assert proxy.access_log is not None
    access = LogSource(str(proxy.access_log), format="nginx")  # "combined" is not detected
    settings = settings_for(proxy.url, upstreams=(old.address,), logs=(proxy.error_log, access))
    keeper = HistoryKeeper(MemoryHistory())
    healthy = await check(keeper, settings)
    assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)
    assert "proxy.upstream@nginx" not in snapshot_of(healthy).facts

    move_upstream(proxy, old, new)
    failing = await check(keeper, settings)
    assert failing.verdict.cause is Cause.UPSTREAM_REFUSED, explain(failing)
    change = the_change(failing, "proxy.upstream@nginx")
    assert (change.before, change.now, change.at_failing_layer) == (old.address, new.address, True)
    assert change.message.startswith(
        f"nginx upstream {old.address} → {new.address} "
        f"(changed between {clock(healthy)} and {clock(failing)}; before: the upstream the "
        "sites file lists"
    )
    assert_dated(change, healthy, failing)
    assert any(
        s.startswith(f"nginx now sends to {new.address}; the sites file lists {old.address}")
        for s in failing.verdict.next_steps
    )


async def test_g_no_log_names_the_upstream_nothing_is_said(
    upstream: Callable[..., Upstream], nginx_proxy: Callable[..., Proxy]
) -> None:
    """Only a combined access log: it shows our requests, not where they went. No guess."""
    old, new = upstream("ok"), upstream("refused")
    proxy = nginx_proxy(old)
    assert proxy.access_log is not None
    access = LogSource(str(proxy.access_log), format="nginx")
    settings = settings_for(proxy.url, upstreams=(old.address,), logs=(access,))
    keeper = HistoryKeeper(MemoryHistory())
    healthy = await check(keeper, settings)
    assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)

    move_upstream(proxy, old, new)
    failing = await check(keeper, settings)
    logs = next(s for s in failing.steps if s.name == "logs")
    assert logs.details["logs"][0]["own_requests_seen"] > 0  # our lines were read
    assert failing.verdict.changes is not None
    assert not [c for c in failing.verdict.changes if c.fact.startswith("proxy.upstream")]
    assert "proxy.upstream@nginx" not in snapshot_of(failing).facts


async def test_other_proxies_say_where_they_sent_our_requests(
    upstream: Callable[..., Upstream],
    haproxy_proxy: Callable[..., Proxy],
    apache_proxy: Callable[..., Proxy],
    caddy_proxy: Callable[..., Proxy],
) -> None:
    """HAProxy logs every request with its backend/server; Apache and Caddy name the address
    only in the line of a request that failed (their access logs do not name it)."""
    app, gone = upstream("ok"), upstream("refused")
    served = haproxy_proxy(app)
    healthy = await diagnose("shop", settings_for(served.url, logs=(served.error_log,)))
    assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)
    assert snapshot_of(healthy).facts["proxy.upstream@haproxy"] == "app/app1"
    for software, proxy in (("apache", apache_proxy(gone)), ("caddy", caddy_proxy(gone))):
        failing = await diagnose("shop", settings_for(proxy.url, logs=(proxy.error_log,)))
        assert failing.verdict.cause is Cause.UPSTREAM_REFUSED, explain(failing)
        assert snapshot_of(failing).facts[f"proxy.upstream@{software}"] == gone.address


async def test_d_server_header_changed_with_a_failure() -> None:
    site = ChangingSite()
    runner, port = await serve_app(site.app())
    try:
        settings = settings_for(f"http://127.0.0.1:{port}/")
        keeper = HistoryKeeper(MemoryHistory())
        healthy = await check(keeper, settings)
        assert healthy.verdict.cause is Cause.HEALTHY, explain(healthy)

        site.server, site.status = "nginx/1.24.0", 502  # upgraded, and failing since
        failing = await check(keeper, settings)
    finally:
        await runner.cleanup()
    assert failing.verdict.cause is not Cause.HEALTHY, explain(failing)
    change = the_change(failing, "header.server")
    assert change.message.startswith("Server nginx/1.22.1 → nginx/1.24.0 (changed between")
    assert_dated(change, healthy, failing)
    assert failing.verdict.baseline.startswith(
        f"Compared with the last healthy check, at {clock(healthy)}"
    )


async def test_a_site_never_seen_healthy_says_so() -> None:
    site = ChangingSite()
    site.status = 502
    runner, port = await serve_app(site.app())
    try:
        failing = await check(
            HistoryKeeper(MemoryHistory()), settings_for(f"http://127.0.0.1:{port}/")
        )
    finally:
        await runner.cleanup()
    assert failing.verdict.changes == []
    assert (
        failing.verdict.baseline
        == "shop has not been seen healthy before: nothing to compare with."
    )


class RecordingSink:
    """The Slack sink's place: records the verdicts it is given."""

    def __init__(self) -> None:
        self.verdicts: list[Diagnosis] = []

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        pass

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        self.verdicts.append(diagnosis)


async def test_the_slack_path_compares_with_and_keeps_in_redis(redis_server: RedisServer) -> None:
    site = ChangingSite()
    runner, port = await serve_app(site.app())
    redis: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    settings = settings_for(f"http://127.0.0.1:{port}/")
    shown = RecordingSink()
    # Two carriers, as a worker that restarted: what the first kept, the second reads.
    carriers = [
        InProcessCarrier(settings, HistorySink(shown, HistoryKeeper(RedisHistory(redis))))
        for _ in range(2)
    ]
    try:
        for carrier, status, server in zip(
            carriers, (200, 502), ("nginx/1.22.1", "nginx/1.24.0"), strict=True
        ):
            site.status, site.server = status, server
            await carrier.submit(DiagnosisRequest.new(await prepare("shop", settings)))
            await carrier.drain()
        kept: Any = await redis.lrange(key("history", "shop"), 0, -1)  # type: ignore[misc]
        baseline = await redis.get(key("baseline", "shop"))
    finally:
        for carrier in carriers:
            await carrier.close()
        await redis.aclose()
        await runner.cleanup()
    healthy, failing = shown.verdicts
    assert healthy.verdict.cause is Cause.HEALTHY
    change = the_change(failing, "header.server")
    assert_dated(change, healthy, failing)
    assert len(kept) == 2 and baseline is not None and '"healthy": true' in baseline


async def test_workers_compare_and_keep_through_redis(queue_lab: QueueLab) -> None:
    """The worker's assembly puts the history between the queue and the sink."""
    queue_lab.start_worker("a")
    requests = []
    for _ in range(2):  # one after the other: the second reads what the first kept
        requests.append(await queue_lab.submit("shop", ["lab_fetch"]))
        await queue_lab.wait_concluded([requests[-1].id], within_s=20)
    verdicts = [c for c in queue_lab.calls() if c["kind"] == "verdict"]
    assert [v["id"] for v in verdicts] == [r.id for r in requests]
    assert verdicts[0]["cause"] != "healthy"
    assert all(v["baseline"].startswith("shop has not been seen healthy") for v in verdicts)
    client = queue_lab.redis_server.client()
    try:
        assert client.llen(key("history", "shop")) == 2
    finally:
        client.close()
