"""The stand-in enforces Slack's documented rate limits, and the bot's client honours them."""

from __future__ import annotations

import asyncio

import pytest

from badgateway.bot.config import BotConfig
from badgateway.bot.slack_client import make_web_client, post_once, rate_scale
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.slack_limits import Limit, Scope, SlackLimits


def test_a_channel_takes_a_short_burst_then_one_post_a_second() -> None:
    limits = SlackLimits()
    answers = [limits.admit("chat.postMessage", "C1", now=100.0) for _ in range(4)]
    assert answers == [None, None, None, 1]  # burst of 3, then "Retry-After: 1"
    assert limits.admit("chat.postMessage", "C2", now=100.0) is None  # another channel
    assert limits.admit("chat.postMessage", "C1", now=101.0) is None  # one token back
    assert limits.refused == 1 and limits.unhonoured == 0


def test_calls_before_retry_after_are_counted_as_unhonoured() -> None:
    limits = SlackLimits()
    for _ in range(5):
        limits.admit("chat.update", "C1", now=0.0)
    retry_after = limits.admit("chat.update", "C2", now=0.0, call="update C2 ts1")
    assert retry_after == 2  # Tier 3, 50 a minute: 1.2 s to the next token, in whole seconds
    assert limits.admit("chat.update", "C3", now=1.0, call="update C3 ts2") == 1  # not a retry
    assert limits.admit("chat.update", "C2", now=1.5, call="update C2 ts1") is None  # too early
    assert limits.unhonoured == 1
    assert limits.admit("chat.update", "C3", now=2.0, call="update C3 ts2") == 1  # token spent
    assert limits.unhonoured == 1


def test_the_workspace_limit_holds_across_channels() -> None:
    limits = SlackLimits(
        limits=(Limit("chat.postMessage", Scope.WORKSPACE, per_minute=60, burst=2),)
    )
    assert limits.admit("chat.postMessage", "C1", now=0.0) is None
    assert limits.admit("chat.postMessage", "C2", now=0.0) is None
    assert limits.admit("chat.postMessage", "C3", now=0.0) == 1


@pytest.mark.slack_limits
async def test_the_bots_client_waits_out_429s_and_posts_every_message(
    slack_api: SlackStandIn,
) -> None:
    slack_api.limits = SlackLimits()
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url))
    posts = [
        post_once(client, channel="C0OPS0001", key=f"k{n}", message={"text": f"post {n}"})
        for n in range(5)
    ]
    timestamps = await asyncio.gather(*posts)
    assert len(set(timestamps)) == 5 and len(slack_api.roots("C0OPS0001")) == 5
    # 5 posts at once against a burst of 3: the client paces them, so Slack refuses none.
    assert slack_api.limits.refused == 0
    assert slack_api.limits.unhonoured == 0
    sent = [c.at for c in slack_api.calls_of("chat.postMessage", ok_only=True)]
    assert max(sent) - min(sent) >= 1.0  # the last two waited for their tokens


@pytest.mark.slack_limits
async def test_a_scaled_workspace_is_paced_to_its_own_limits(slack_api: SlackStandIn) -> None:
    # Limits four times Slack's, and the bot told so: 11 posts to one channel (a burst of 3,
    # then 4 a second) go out in about two seconds instead of eight. (A refusal can come from
    # arrival jitter alone, the pace being exactly the limit; it must be honoured.)
    slack_api.limits = SlackLimits(scale=4.0)
    config = BotConfig(
        slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url, slack_rate_scale=4.0
    )
    client = make_web_client(config)
    assert rate_scale(client) == 4.0
    posts = [
        post_once(client, channel="C0OPS0001", key=f"k{n}", message={"text": f"post {n}"})
        for n in range(11)
    ]
    await asyncio.gather(*posts)
    assert len(slack_api.roots("C0OPS0001")) == 11 and slack_api.limits.unhonoured == 0
    sent = [c.at for c in slack_api.calls_of("chat.postMessage", ok_only=True)]
    assert 1.8 <= max(sent) - min(sent) < 5.0  # paced, at the scaled rate (not Slack's 8 s)


def test_a_scaled_stand_in_refills_its_buckets_that_much_faster() -> None:
    limits = SlackLimits(scale=4.0)
    answers = [limits.admit("chat.postMessage", "C1", now=100.0) for _ in range(4)]
    assert answers == [None, None, None, 1]  # the burst is Slack's
    assert limits.admit("chat.postMessage", "C1", now=100.25) is None  # 4 a second
