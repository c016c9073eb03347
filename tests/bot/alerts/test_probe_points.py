"""Scheduled probes keep a thin point each in the site's history (real nginx in front of an
app the test stops, real redis-server): ok or not, what it saw, how long it took; the
timeline draws them and their outage. A store that is down costs the point, not the probe.
And the alert a failing probe opens says when it started: last good check → first failure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from redis.asyncio import Redis

from badgateway.bot.alerts.monitor import monitor_site
from badgateway.bot.history_store import PROBES_KEPT, RedisHistory, timeline_of
from badgateway.bot.storage import key
from badgateway.checks.settings import Site
from badgateway.checks.timeline import ProbePoint
from tests.lab.alerts import (
    CHANNEL,
    App,
    RecordingCarrier,
    lab_settings,
    make_incidents,
    probe,
    until,
)
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_slack import SlackStandIn


async def test_each_probe_is_a_point_in_the_history_and_the_timeline(
    redis: Redis,
    slack_api: SlackStandIn,
    app: App,
    nginx_proxy: Callable[..., Proxy],
) -> None:
    proxy = nginx_proxy(f"127.0.0.1:{app.port}")
    site = Site("shop", proxy.url + "shop", channel=CHANNEL)
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    store = RedisHistory(redis)
    ctx = {"alerts": incidents, "history": store}
    assert (await monitor_site(ctx, site="shop"))["ok"] is True
    app.stop()
    for _ in range(2):
        assert (await monitor_site(ctx, site="shop"))["ok"] is False
    history = await store.load("shop")
    assert [p.ok for p in history.probes] == [True, False, False]
    assert history.probes[1].what.startswith("HTTP 502")
    assert all(p.total_ms is not None and p.total_ms > 0 for p in history.probes)
    assert history.recent == [] and history.last_good is None  # never a baseline
    shown = await timeline_of(store, "shop", 1)
    assert shown.checks == 3 and shown.first_failure_at == history.probes[1].at
    [outage] = shown.outages
    assert outage.cause.startswith("probe: HTTP 502") and outage.ended_at is None
    assert 0 < await redis.ttl(key("probes", "shop")) <= 7 * 86400


async def test_probe_points_are_bounded(redis: Redis) -> None:
    store = RedisHistory(redis)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for n in range(PROBES_KEPT + 20):
        await store.probed(ProbePoint("shop", now, n % 2 == 0, f"probe {n}", 10.0))
    kept = (await store.load("shop")).probes
    assert len(kept) == PROBES_KEPT and kept[-1].what == f"probe {PROBES_KEPT + 19}"


async def test_a_probe_goes_on_when_its_point_cannot_be_kept(
    redis: Redis, slack_api: SlackStandIn, app: App
) -> None:
    site = Site("shop", f"http://127.0.0.1:{app.port}/shop", channel=CHANNEL)
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    gone = RedisHistory(Redis.from_url("redis://127.0.0.1:9/0", decode_responses=True))
    try:
        done = await monitor_site({"alerts": incidents, "history": gone}, site="shop")
    finally:
        await gone.aclose()
    assert done["ok"] is True


async def test_an_alert_says_its_last_good_check_and_first_failure(
    redis: Redis, slack_api: SlackStandIn, app: App
) -> None:
    site = Site("shop", f"http://127.0.0.1:{app.port}/shop", channel=CHANNEL)
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    await probe(incidents, site)
    app.stop()
    await probe(incidents, site, 2)  # FAST: two failures open the incident
    await incidents.settle()
    await until(lambda: len(slack_api.roots()) == 1, within_s=10, what="alert")
    incident = await incidents.store.current("shop")
    assert incident is not None and incident.last_good_at is not None
    assert incident.last_good_at < incident.since
    [root] = slack_api.roots()
    assert "*Started:* last good check <!date^" in root.text and "→ first failure <!date^" in (
        root.text
    )
