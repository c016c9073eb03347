"""bot.slack.root_updates: the spacing and budget of root updates follow the workspace's limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from badgateway.bot.config import BotConfig
from badgateway.bot.slack.root_updates import PER_ROOT_S, RootUpdates
from badgateway.bot.slack_client import PostPace, make_web_client
from tests.lab.alerts import CHANNEL, bot_config, until
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn

pytestmark = pytest.mark.slack_limits  # Slack's pace as the bot keeps it (not lifted)


@pytest.mark.parametrize("scale", [1.0, 4.0, 0.5])
async def test_updates_keep_the_pace_of_the_clients_rate_scale(scale: float) -> None:
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_rate_scale=scale))
    roots = RootUpdates(client)
    assert roots.per_root_s == pytest.approx(PER_ROOT_S / scale)
    assert roots.budget.rate == pytest.approx(PostPace.UPDATES_PER_MINUTE * scale / 60.0)


async def test_a_given_spacing_wins_over_the_scale() -> None:
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_rate_scale=4.0))
    assert RootUpdates(client, per_root_s=0.0, per_minute=600.0).per_root_s == 0.0


async def test_a_root_rendered_while_redis_is_down_is_shown_once_it_is_back(
    slack_api: SlackStandIn, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A root's view is read from Redis when it is sent; Redis refusing then is a failed try,
    # not the end of the root's updates (nor an error raised when the process closes).
    client = make_web_client(bot_config(slack_api))
    root = await client.chat_postMessage(channel=CHANNEL, text="running")
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    await redis.set("state", "verdict: upstream_refused")
    roots = RootUpdates(client, per_root_s=0.0, per_minute=600.0)

    async def render() -> dict[str, Any]:
        return {"text": await redis.get("state")}

    try:
        await asyncio.to_thread(redis_server.stop)
        roots.want(CHANNEL, root["ts"], render)
        await until(lambda: "failed" in caplog.text, 10, "the try while Redis is down")
        await asyncio.to_thread(redis_server.start)
        await roots.settle(timeout_s=10)
        assert slack_api.message(root["ts"]).text == "verdict: upstream_refused"
    finally:
        await roots.close()
        await redis.aclose()
