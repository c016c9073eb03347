"""A webhook alert has no probe streak, so when it started is read off the site's history
(real redis-server, a real app the test stops, the generic `/alerts` webhook on a real port):
the root says "*Started:* last good check → first failure" when the history knows, and
nothing when it does not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.monitor import monitor_site
from badgateway.bot.alerts.webhooks import add_alert_routes
from badgateway.bot.history_store import RedisHistory
from badgateway.checks.settings import Site
from tests.lab.alerts import (
    ALERTS_TOKEN,
    CHANNEL,
    App,
    Bot,
    RecordingCarrier,
    bot_config,
    lab_settings,
    make_incidents,
    until,
)
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.process import serve_app


@pytest_asyncio.fixture
async def served(redis: Redis, slack_api: SlackStandIn, app: App) -> AsyncIterator[Bot]:
    """The webhooks of a bot whose incidents read (and keep) the site's history."""
    site = Site("shop", f"http://127.0.0.1:{app.port}/shop", channel=CHANNEL)
    settings = lab_settings(site)
    carrier = RecordingCarrier()
    incidents = make_incidents(redis, slack_api, settings, carrier, history=RedisHistory(redis))
    routes = web.Application()
    add_alert_routes(routes, bot_config(slack_api, alerts_token=ALERTS_TOKEN), settings, incidents)
    runner, port = await serve_app(routes)
    try:
        yield Bot(incidents, f"http://127.0.0.1:{port}", carrier)
    finally:
        await runner.cleanup()


async def _alert_root(bot: Bot, slack_api: SlackStandIn) -> str:
    status, _ = await bot.post("/alerts", {"site": "shop", "status": "firing", "summary": "5xx"})
    assert status == 202
    await bot.incidents.settle()
    await until(lambda: len(slack_api.roots()) == 1, within_s=10, what="the alert's root")
    return slack_api.roots()[0].text


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


async def test_a_webhook_alert_says_when_it_started_from_the_history(
    served: Bot, slack_api: SlackStandIn, app: App, redis: Redis
) -> None:
    incidents: Incidents = served.incidents
    ctx = {"alerts": incidents, "history": RedisHistory(redis)}
    assert (await monitor_site(ctx, site="shop"))["ok"] is True
    app.stop()
    assert (await monitor_site(ctx, site="shop"))["ok"] is False  # one: no incident yet
    good, failed = (await RedisHistory(redis).load("shop")).probes
    assert await incidents.store.current("shop") is None

    root = await _alert_root(served, slack_api)
    incident = await incidents.store.current("shop")
    assert incident is not None and incident.source == "webhook"
    assert incident.last_good_at is not None
    assert abs(incident.last_good_at - datetime.fromisoformat(good.at).timestamp()) < 0.01
    assert abs(incident.since - datetime.fromisoformat(failed.at).timestamp()) < 0.01
    assert f"*Started:* last good check <!date^{_epoch(good.at)}^" in root
    assert f"→ first failure <!date^{_epoch(failed.at)}^" in root


async def test_a_webhook_alert_without_history_says_nothing_of_its_start(
    served: Bot, slack_api: SlackStandIn
) -> None:
    root = await _alert_root(served, slack_api)
    assert "*Started:*" not in root
    incident = await served.incidents.store.current("shop")
    assert incident is not None and incident.last_good_at is None


async def test_an_alertmanager_alert_starts_at_its_starts_at(
    served: Bot, slack_api: SlackStandIn, app: App, redis: Redis
) -> None:
    """The history before the alert's startsAt, not its arrival: a failing probe after
    startsAt is not its first failure, startsAt is."""
    incidents: Incidents = served.incidents
    ctx = {"alerts": incidents, "history": RedisHistory(redis)}
    await monitor_site(ctx, site="shop")
    app.stop()
    await monitor_site(ctx, site="shop")
    good, failed = (await RedisHistory(redis).load("shop")).probes
    good_s, failed_s = (datetime.fromisoformat(p.at).timestamp() for p in (good, failed))
    assert failed_s - good_s >= 0.002  # room for a start between them
    starts_s = (good_s + failed_s) / 2
    starts_at = datetime.fromtimestamp(starts_s, UTC).isoformat().replace("+00:00", "123Z")
    alert = {
        "status": "firing",
        "labels": {"alertname": "ShopDown", "site": "shop"},
        "annotations": {"summary": "shop is down"},
        "startsAt": starts_at,  # nanoseconds, as Alertmanager writes it
        "fingerprint": "a1b2c3",
    }
    body = {"version": "4", "status": "firing", "alerts": [alert], "commonLabels": {}}
    status, _ = await served.post("/alerts/alertmanager", body)
    assert status == 202
    await incidents.settle()
    await until(lambda: len(slack_api.roots()) == 1, within_s=10, what="the alert's root")
    incident = await incidents.store.current("shop")
    assert incident is not None and incident.source == "alertmanager"
    assert incident.last_good_at is not None and abs(incident.last_good_at - good_s) < 0.01
    assert abs(incident.since - starts_s) < 0.01  # not the failing probe after it
    assert f"*Started:* last good check <!date^{int(good_s)}^" in slack_api.roots()[0].text
