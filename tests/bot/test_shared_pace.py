"""bot.shared_pace and the client's pace over it: processes sharing one Redis share one budget.

Two clients, each with a Redis connection of its own, are two processes of one install. They
post (and update roots) at once against the Slack stand-in enforcing Slack's limits, scaled
up (``BADGATEWAY_SLACK_RATE_SCALE`` and the stand-in alike) where the limit's burst leaves
room for the arrival jitter of a loaded machine, so that each test takes a few seconds.
Sharing, Slack refuses nothing; each pacing on its own (no Redis given, as before), the same
calls draw 429s — which shows the tests can tell the two apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import slack_client, storage
from badgateway.bot.config import BotConfig
from badgateway.bot.shared_pace import Limit, Rate, SharedLimits
from badgateway.bot.slack.root_updates import RootUpdates
from badgateway.bot.slack_client import make_web_client, post_once
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.slack_limits import SlackLimits

pytestmark = pytest.mark.slack_limits  # Slack's pace as the bot keeps it (not lifted)

CHANNEL = "C0OPS0001"

Clients = Callable[[bool, float], list[AsyncWebClient]]


@pytest_asyncio.fixture
async def connections(redis_server: RedisServer) -> AsyncIterator[list[Redis]]:
    """One Redis connection per "process" (two)."""
    made = [Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    try:
        yield made
    finally:
        for redis in made:
            await redis.aclose()


@pytest.fixture
def clients(slack_api: SlackStandIn, connections: list[Redis]) -> Clients:
    """``clients(shared, scale)``: two processes' clients, sharing the pace through Redis or
    not, for a workspace with ``scale`` times Slack's limits."""

    def make(shared: bool, scale: float) -> list[AsyncWebClient]:
        config = BotConfig(
            slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url, slack_rate_scale=scale
        )
        return [make_web_client(config, redis if shared else None) for redis in connections]

    return make


async def _post(client: AsyncWebClient, channel: str, key: str) -> str:
    return await post_once(client, channel=channel, key=key, message={"text": key})


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize(
    ("channels", "each", "scale", "refused_on_their_own"),
    [(1, 3, 1.0, 2), (25, 1, 4.0, 5)],
    ids=["a channel's burst", "the workspace's burst"],
)
async def test_two_processes_share_the_posting_pace(
    slack_api: SlackStandIn,
    clients: Clients,
    shared: bool,
    channels: int,
    each: int,
    scale: float,
    refused_on_their_own: int,
) -> None:
    # Both processes post ``each`` posts to each channel at once. One channel, three each:
    # shared, the channel's burst of 3 and then its pace, whichever process posts; on their
    # own, each takes the burst. 25 channels, one each (two per channel, within its burst):
    # only the workspace's limit is in play (a burst of 30 at Slack, 20 as the bot keeps it).
    slack_api.limits = limits = SlackLimits(scale=scale)
    posts = [
        _post(client, f"C0PACE{c:03d}", f"{n}-{i}")
        for n, client in enumerate(clients(shared, scale))
        for c in range(channels)
        for i in range(each)
    ]
    await asyncio.gather(*posts)
    assert len(slack_api.roots()) == len(posts) and limits.unhonoured == 0
    if shared:
        assert limits.refused == 0
    else:
        assert limits.refused >= refused_on_their_own


@pytest.mark.parametrize("shared", [True, False])
async def test_root_updates_of_two_processes_share_the_tier_3_budget(
    slack_api: SlackStandIn, clients: Clients, shared: bool
) -> None:
    one, two = clients(shared, 2.0)
    # Four roots each, all shown as soon as the budget allows.
    roots: dict[AsyncWebClient, list[str]] = {one: [], two: []}
    for client, made in roots.items():
        for _ in range(4):
            made.append(str((await client.chat_postMessage(channel=CHANNEL, text="running"))["ts"]))
    slack_api.limits = limits = SlackLimits(scale=2.0)  # the roots are there: updates count
    updaters = [RootUpdates(client) for client in (one, two)]

    async def render() -> dict[str, Any]:
        return {"text": "verdict"}

    try:
        for updater, client in zip(updaters, (one, two), strict=True):
            for ts in roots[client]:
                updater.want(CHANNEL, ts, render)
        await asyncio.gather(*(u.settle(timeout_s=20) for u in updaters))
    finally:
        for updater in updaters:
            await updater.close()
    assert all(m.text == "verdict" for m in slack_api.roots(CHANNEL))
    assert limits.unhonoured == 0
    if shared:
        assert limits.refused == 0
    else:
        assert limits.refused >= 2  # two budgets, each with Tier 3's burst of 5


async def test_a_429_holds_the_channel_for_every_process(
    slack_api: SlackStandIn, clients: Clients, connections: list[Redis]
) -> None:
    # Slack refuses one process's post with Retry-After: 2. The other process, posting to the
    # same channel meanwhile, waits for it too (its own pace knows nothing of the 429).
    one, two = clients(True, 1.0)
    slack_api.fail("chat.postMessage", status=429, retry_after=2)
    first = asyncio.create_task(_post(one, CHANNEL, "first"))
    await slack_api.wait_for(lambda: slack_api.calls_of("chat.postMessage"), 5, "the refusal")
    refused_at = slack_api.calls_of("chat.postMessage")[0].at
    held = storage.key("pace", "posts", CHANNEL)
    deadline = time.monotonic() + 5
    while await connections[1].pttl(held) < 1000:  # the hold lands in Redis in the background
        assert time.monotonic() < deadline, "the hold never reached Redis"
        await asyncio.sleep(0.02)
    await _post(two, CHANNEL, "second")
    await first
    second = next(c for c in slack_api.calls_of("chat.postMessage") if c.params["text"] == "second")
    assert second.at - refused_at >= 1.9  # Retry-After: 2, less the clocks' jitter
    assert len(slack_api.roots(CHANNEL)) == 2


async def test_with_redis_out_of_reach_a_process_paces_on_its_own_and_loses_nothing(
    slack_api: SlackStandIn,
    clients: Clients,
    redis_server: RedisServer,
    connections: list[Redis],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slack_client, "SHARED_RETRY_S", 0.2)  # back to Redis soon after
    caplog.set_level(logging.INFO, logger=slack_client.__name__)
    slack_api.limits = limits = SlackLimits()
    one, _ = clients(True, 1.0)
    await asyncio.to_thread(redis_server.stop)
    await asyncio.gather(*(_post(one, CHANNEL, f"down{i}") for i in range(5)))
    await asyncio.sleep(0.3)
    await _post(one, CHANNEL, "still down")  # tries Redis again: still out of reach
    out_of_reach = [r for r in caplog.records if "out of reach" in r.getMessage()]
    assert len(out_of_reach) == 1  # said once, not for every post
    assert limits.unhonoured == 0

    await asyncio.to_thread(redis_server.start)
    await asyncio.sleep(0.3)
    await _post(one, CHANNEL, "back")
    assert "shared through Redis again" in caplog.text
    assert await connections[0].exists(storage.key("pace", "posts", CHANNEL))
    texts = [m.text for m in slack_api.roots(CHANNEL)]
    assert sorted(texts) == sorted([*(f"down{i}" for i in range(5)), "still down", "back"])
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


# -- the scripts ---------------------------------------------------------------------------


async def test_turns_are_handed_out_in_order_at_the_limits_pace(
    connections: list[Redis],
) -> None:
    # 60 a minute, a burst of 2: two turns now, then one a second — also to a second process.
    limit = Limit(storage.key("pace", "test"), Rate(per_minute=60.0, burst=2))
    one, two = (SharedLimits(redis) for redis in connections)
    turns = [await shared.reserve(limit) for shared in (one, two, one, two)]
    assert all(t.reserved for t in turns)
    assert [round(t.wait_s, 1) for t in turns] == [0.0, 0.0, 1.0, 2.0]


async def test_a_turn_given_back_goes_to_the_next_asker(connections: list[Redis]) -> None:
    limit = Limit(storage.key("pace", "test"), Rate(per_minute=60.0, burst=1))
    shared = SharedLimits(connections[0])
    assert (await shared.reserve(limit)).wait_s == pytest.approx(0.0, abs=0.05)
    assert (await shared.reserve(limit)).wait_s == pytest.approx(1.0, abs=0.05)
    await shared.refund(limit)  # the second asker gave up waiting
    assert (await shared.reserve(limit)).wait_s == pytest.approx(1.0, abs=0.05)


async def test_a_busy_gate_gets_no_turn_and_costs_the_queue_nothing(
    connections: list[Redis],
) -> None:
    workspace = Limit(storage.key("pace", "ws"), Rate(per_minute=60.0, burst=1))
    channel = Limit(storage.key("pace", "ch"), Rate(per_minute=60.0, burst=1))
    shared = SharedLimits(connections[0])
    await shared.hold(channel, 5.0)
    turn = await shared.reserve(workspace, channel)
    assert not turn.reserved and turn.wait_s == pytest.approx(5.0, abs=0.1)
    other = Limit(storage.key("pace", "ch2"), channel.rate)
    assert (await shared.reserve(workspace, other)).wait_s == pytest.approx(0.0, abs=0.05)


async def test_a_take_given_up_returns_its_turn(
    connections: list[Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller's deadline (asyncio.wait_for around the take, as the sink does) cancels a take
    # while it waits for its turn: the turn is given back, the next post is not pushed back.
    monkeypatch.setattr(slack_client.PostPace, "WORKSPACE_PER_MINUTE", 60.0)
    monkeypatch.setattr(slack_client.PostPace, "WORKSPACE_BURST", 1)
    pace = slack_client.PostPace(1.0, SharedLimits(connections[0]))
    await pace.take("C0A")  # the burst
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pace.take("C0B"), 0.2)  # its turn was a second away
    deadline = time.monotonic() + 5
    workspace = storage.key("pace", "posts")
    while await connections[0].pttl(workspace) > 1100:  # refunded in the background
        assert time.monotonic() < deadline, "the turn was never given back"
        await asyncio.sleep(0.02)
    started = time.monotonic()
    await pace.take("C0C")
    assert time.monotonic() - started < 1.0  # its turn, not one behind the abandoned one
