"""Scheduled probes through a real SAQ worker, and a real diagnosis landing in the alert's
thread through the Slack app's sink — real nginx, real redis-server, the Slack stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.asyncio import Redis
from saq import Queue, Worker

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.monitor import MONITOR_FUNCTIONS, monitor_cron_jobs
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.sink import IncidentVerdicts
from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.pipeline import InProcessCarrier
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, open_store
from badgateway.checks.settings import Site
from tests.lab.alerts import (
    CHANNEL,
    FAST,
    App,
    RecordingCarrier,
    bot_config,
    lab_settings,
    make_incidents,
    probe,
    until,
)
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_slack import SlackStandIn


async def test_workers_probe_each_site_on_its_schedule(
    redis: Redis,
    redis_url: str,
    slack_api: SlackStandIn,
    app: App,
    nginx_proxy: Callable[..., Proxy],
) -> None:
    proxy = nginx_proxy(f"127.0.0.1:{app.port}")
    site = Site("shop", proxy.url + "shop", channel=CHANNEL, interval_s=0.5)
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    queue = Queue.from_url(redis_url, name="alerts-test")

    async def startup(ctx: dict[str, object]) -> None:
        ctx["alerts"] = incidents

    worker = Worker(
        queue,
        functions=list(MONITOR_FUNCTIONS),
        cron_jobs=monitor_cron_jobs("* * * * * *"),  # every second, for the test
        startup=startup,
        concurrency=10,
    )
    running = asyncio.create_task(worker.start())
    try:
        await asyncio.sleep(2.5)  # healthy probes: nothing posted
        assert slack_api.calls_of("chat.postMessage") == []
        app.stop()
        await until(lambda: len(slack_api.roots()) == 1, within_s=15, what="alert")
        root = slack_api.roots()[0]
        assert "*shop* is failing" in root.text
        app.start()
        await until(
            lambda: any("recovered after" in m.text for m in slack_api.thread(root.ts)),
            within_s=15,
            what="recovery",
        )
        assert len(slack_api.roots()) == 1
        done = await queue.count("incomplete")
        assert done <= 3  # one tick and at most one probe per site queued or running
    finally:
        await worker.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await queue.disconnect()


async def test_diagnosis_lands_in_the_alert_thread_and_the_verdict_on_its_root(
    redis: Redis,
    redis_url: str,
    slack_api: SlackStandIn,
    app: App,
    nginx_proxy: Callable[..., Proxy],
) -> None:
    proxy = nginx_proxy(f"127.0.0.1:{app.port}")
    site = Site("shop", proxy.url + "shop", upstreams=(f"127.0.0.1:{app.port}",), channel=CHANNEL)
    settings = lab_settings(site, budget_s=5.0)
    config = bot_config(slack_api, redis_url=redis_url)
    incidents = Incidents(
        IncidentStore(redis), SlackNotifier(make_web_client(config)), settings, FAST
    )
    worker_sink = SlackSink(make_web_client(config), BotState(open_store(config.redis_url)))
    carrier = InProcessCarrier(settings, IncidentVerdicts(worker_sink, incidents))
    incidents.posts.carrier = carrier  # the verdicts go back to these incidents
    app.stop()
    await probe(incidents, site, 2)
    await incidents.settle()
    await carrier.drain()

    [root] = slack_api.roots()
    thread = slack_api.thread(root.ts)
    assert len(thread) >= 2  # the steps' replies and the verdict, in the alert's thread
    incident = await incidents.store.current("shop")
    assert incident is not None and incident.diagnosis == "diagnosed" and incident.cause
    text = slack_api.message(root.ts).text
    assert text.startswith(":red_circle: *shop* is failing")  # still the alert's root
    assert f"*Diagnosed:* `{incident.cause}`" in text
    await carrier.close()
