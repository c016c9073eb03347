"""Every chat.update, and every Tier 3 read the client makes, keeps one workspace budget.

Two clients, each with a Redis connection of its own, are two processes of one install (the
web process's waiting lines beside a worker's root updates and the alerting side's rewrites).
They call at once against the Slack stand-in enforcing Slack's limits, scaled up four times
(``BADGATEWAY_SLACK_RATE_SCALE`` and the stand-in alike) so that each test takes a few seconds.
Sharing the budget through Redis, Slack refuses nothing; each process on its own (no Redis),
the same calls draw 429s — which shows the tests can tell the two apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import metrics
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.config import BotConfig
from badgateway.bot.slack.root_updates import RootUpdates
from badgateway.bot.slack_client import (
    PostPace,
    find_posted,
    make_web_client,
    read_budget,
    update,
    update_budget,
)
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.slack_limits import SlackLimits

pytestmark = pytest.mark.slack_limits  # Slack's pace as the bot keeps it (not lifted)

CHANNEL = "C0OPS0001"
SCALE = 4.0  # Slack's limits, and the bot's pace, four times the documented ones

Clients = Callable[[bool], list[AsyncWebClient]]


@pytest_asyncio.fixture
async def clients(slack_api: SlackStandIn, redis_server: RedisServer) -> AsyncIterator[Clients]:
    """``clients(shared)``: two processes' clients, sharing their budgets through Redis or
    not."""
    connections = [Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]

    def make(shared: bool) -> list[AsyncWebClient]:
        config = BotConfig(
            slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url, slack_rate_scale=SCALE
        )
        return [make_web_client(config, redis if shared else None) for redis in connections]

    try:
        yield make
    finally:
        for redis in connections:
            await redis.aclose()


async def test_one_update_budget_per_client_at_the_rate_scale(slack_api: SlackStandIn) -> None:
    config = BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url)
    client = make_web_client(dataclasses.replace(config, slack_rate_scale=SCALE))
    assert RootUpdates(client).budget is update_budget(client)  # root updates are not apart
    assert update_budget(client).rate == pytest.approx(PostPace.UPDATES_PER_MINUTE * SCALE / 60)
    replies = read_budget(client, "conversations.replies")
    assert replies is not read_budget(client, "conversations.history")  # Slack's are per method
    assert replies.rate == pytest.approx(PostPace.READS_PER_MINUTE * SCALE / 60)
    assert update_budget(make_web_client(config)) is not update_budget(client)


def refused(slack_api: SlackStandIn, method: str) -> int:
    return sum(1 for call in slack_api.calls_of(method) if call.status == 429)


async def _roots(client: AsyncWebClient, count: int) -> list[str]:
    posted = [await client.chat_postMessage(channel=CHANNEL, text="running") for _ in range(count)]
    return [str(p["ts"]) for p in posted]


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "each on its own"])
async def test_root_updates_alert_rewrites_and_one_off_updates_share_one_budget(
    slack_api: SlackStandIn, clients: Clients, shared: bool
) -> None:
    # One process keeps six `/502` roots up to date (RootUpdates); the other, at the same
    # time, rewrites three alert roots, a storm's table and two of its cause groups' replies
    # (SlackNotifier) and three roots' "waiting for a worker" lines (update(), as
    # bot.slack.waiting and a redelivered step make them): 15 chat.update calls at once.
    one, two = clients(shared)
    asked, alerts, storm, waiting = await _roots(one, 6), *[await _roots(two, n) for n in (3, 3, 3)]
    slack_api.limits = limits = SlackLimits(scale=SCALE)  # the messages are there: updates count
    roots = RootUpdates(one)
    notifier = SlackNotifier(two)

    async def render() -> dict[str, Any]:
        return {"text": "verdict"}

    try:
        for ts in asked:
            roots.want(CHANNEL, ts, render)
        await asyncio.gather(
            roots.settle(timeout_s=30),
            *(notifier.update(CHANNEL, ts, "alert: resolved") for ts in alerts),
            notifier.update_message(CHANNEL, storm[0], {"text": "storm: 200 sites"}),
            *(notifier.update(CHANNEL, ts, "group: refused") for ts in storm[1:]),
            *(update(two, channel=CHANNEL, ts=ts, message={"text": "waiting"}) for ts in waiting),
        )
    finally:
        await roots.close()
    shown = [slack_api.message(ts).text for ts in [*asked, *alerts, *storm, *waiting]]
    assert (
        shown
        == ["verdict"] * 6
        + ["alert: resolved"] * 3
        + ["storm: 200 sites"]
        + ["group: refused"] * 2
        + ["waiting"] * 3
    )
    assert limits.unhonoured == 0
    if shared:
        assert refused(slack_api, "chat.update") == 0
    else:
        assert refused(slack_api, "chat.update") >= 2  # two budgets, each with a burst of 5


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "each on its own"])
async def test_looking_for_earlier_posts_keeps_the_replies_budget(
    slack_api: SlackStandIn, clients: Clients, shared: bool
) -> None:
    # After ambiguous failures both processes look for their posts in twelve threads at once
    # (conversations.replies, Tier 3): within its burst and pace.
    one, two = clients(shared)
    threads = await _roots(one, 12)
    tagged = [
        await one.chat_postMessage(
            channel=CHANNEL,
            thread_ts=ts,
            text="dns",
            metadata={"event_type": "badgateway_post", "event_payload": {"key": f"d{i}:dns"}},
        )
        for i, ts in enumerate(threads)
    ]
    slack_api.limits = limits = SlackLimits(scale=SCALE)
    looks = [
        find_posted(one if i % 2 else two, CHANNEL, ts, f"d{i}:dns") for i, ts in enumerate(threads)
    ]
    assert await asyncio.gather(*looks) == [t["ts"] for t in tagged]
    assert limits.unhonoured == 0
    if shared:
        assert refused(slack_api, "conversations.replies") == 0
    else:
        assert refused(slack_api, "conversations.replies") >= 2


def _fallbacks(limit: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "badgateway_slack_pace_fallbacks_total", {"limit": limit}
    )
    return value or 0.0


async def test_with_redis_out_of_reach_an_update_paces_alone_counted_and_goes_out_once(
    slack_api: SlackStandIn, clients: Clients, redis_server: RedisServer
) -> None:
    one, _ = clients(True)
    (ts,) = await _roots(one, 1)
    slack_api.limits = limits = SlackLimits(scale=SCALE)
    before = _fallbacks("updates")
    await asyncio.to_thread(redis_server.stop)
    await SlackNotifier(one).update(CHANNEL, ts, "alert: resolved")
    assert _fallbacks("updates") == before + 1
    assert [c.params["ts"] for c in slack_api.calls_of("chat.update")] == [ts]
    assert slack_api.message(ts).text == "alert: resolved"
    assert limits.refused == 0
    # What a worker pushes for the web process's /metrics (bot.queue.worker_metrics) has it.
    assert 'badgateway_slack_pace_fallbacks_total{limit="updates"}' in metrics.exposition().decode()
