"""A 429 to a Tier 3 method (chat.update, conversations.replies) holds the workspace's budget
for that method in every process until its Retry-After ends; the refused call goes out once,
after it.

Two clients, each with a Redis connection of its own, are two processes of one install. The
Slack stand-in refuses one call with 429 and ``Retry-After: 2`` (scripted) and enforces
Slack's limits otherwise; what is measured is the stand-in's own record of when each call came.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import metrics, storage
from badgateway.bot.config import BotConfig
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import (
    find_posted,
    make_web_client,
    update,
    update_budget,
    workspace_budget,
)
from badgateway.bot.state import BotState, DiagnosisThread, MemoryStore
from badgateway.checks.model import Finding, Status, StepResult
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import Call, SlackStandIn
from tests.lab.slack_limits import SlackLimits

CHANNEL = "C0OPS0001"
RETRY_AFTER = 2
BUDGETS = {"chat.update": "updates", "conversations.replies": "replies"}

Clients = Callable[[float], list[AsyncWebClient]]


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    connection = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield connection
    finally:
        await connection.aclose()


@pytest_asyncio.fixture
async def clients(slack_api: SlackStandIn, redis_server: RedisServer) -> AsyncIterator[Clients]:
    """``clients(scale)``: two processes' clients at that rate scale, sharing Redis."""
    connections = [Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]

    def make(scale: float) -> list[AsyncWebClient]:
        config = BotConfig(
            slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url, slack_rate_scale=scale
        )
        return [make_web_client(config, redis) for redis in connections]

    try:
        yield make
    finally:
        for connection in connections:
            await connection.aclose()


def _counted(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def _held(redis: Redis, budget: str) -> None:
    """Until the budget's hold is in Redis (the 429's answer reached the client)."""
    marker = f"{storage.key('pace', budget)}:held"
    deadline = time.monotonic() + 5
    while not await redis.exists(marker):
        assert time.monotonic() < deadline, "the 429 never held the budget"
        await asyncio.sleep(0.01)


async def _tagged_threads(client: AsyncWebClient, count: int) -> list[str]:
    """``count`` threads, each with a reply tagged "k<i>" (as post_once tags its posts)."""
    roots = []
    for i in range(count):
        root = await client.chat_postMessage(channel=CHANNEL, text="running")
        await client.chat_postMessage(
            channel=CHANNEL,
            thread_ts=root["ts"],
            text="dns",
            metadata={"event_type": "badgateway_post", "event_payload": {"key": f"k{i}"}},
        )
        roots.append(str(root["ts"]))
    return roots


async def _call(method: str, client: AsyncWebClient, ts: str, i: int) -> None:
    if method == "chat.update":
        await update(client, channel=CHANNEL, ts=ts, message={"text": f"update {i}"})
    else:
        assert await find_posted(client, CHANNEL, ts, f"k{i}")


def _ok_calls(slack_api: SlackStandIn, method: str, ts: str) -> list[Call]:
    return [c for c in slack_api.calls_of(method, ok_only=True) if c.params["ts"] == ts]


@pytest.mark.slack_limits
@pytest.mark.parametrize("method", list(BUDGETS))
async def test_a_429_holds_the_methods_budget_for_every_process_and_is_retried_once_after(
    slack_api: SlackStandIn, clients: Clients, redis: Redis, method: str
) -> None:
    one, two = clients(4.0)
    first, second = await _tagged_threads(one, 2)
    slack_api.limits = limits = SlackLimits(scale=4.0)
    rate_limited = _counted("badgateway_slack_rate_limited_total", method=method)
    retried = _counted("badgateway_slack_retries_total", method=method, reason="rate_limited")
    slack_api.fail(method, status=429, retry_after=RETRY_AFTER)

    refused_call = asyncio.create_task(_call(method, one, first, 0))
    await _held(redis, BUDGETS[method])
    await _call(method, two, second, 1)  # the other process, meanwhile
    await refused_call

    (refusal,) = [c for c in slack_api.calls_of(method) if c.status == 429]
    (again,) = _ok_calls(slack_api, method, first)  # the refused call, landed once
    (other,) = _ok_calls(slack_api, method, second)
    assert again.at - refusal.at >= RETRY_AFTER
    assert other.at - refusal.at >= RETRY_AFTER
    if method == "chat.update":
        assert slack_api.message(first).text == "update 0"
        assert slack_api.message(first).updates == 1
    assert limits.refused == 0 and limits.unhonoured == 0
    assert _counted("badgateway_slack_rate_limited_total", method=method) == rate_limited + 1
    assert (
        _counted("badgateway_slack_retries_total", method=method, reason="rate_limited")
        == retried + 1
    )


@pytest.mark.slack_limits
async def test_a_429_holds_back_turns_handed_out_before_it(
    slack_api: SlackStandIn, clients: Clients, redis: Redis
) -> None:
    # At Slack's own pace (45 a minute, a burst of 5), the second process spends the burst and
    # has its next turn handed out (about 1.3 s away) when the first, whose turn was taken
    # already (a root update: paced), is refused for 2 s: that turn comes inside the hold,
    # so it is not used.
    one, two = clients(1.0)
    roots = await _tagged_threads(one, 3)
    slack_api.limits = limits = SlackLimits()
    for i in range(5):
        await update(two, channel=CHANNEL, ts=roots[1], message={"text": f"burst {i}"})
    waiting = asyncio.create_task(
        update(two, channel=CHANNEL, ts=roots[2], message={"text": "waited"})
    )
    # Its turn is handed out once the budget's schedule in Redis reaches past the burst's
    # (five turns: about 6.7 s ahead; the sixth takes it to about 8 s).
    deadline = time.monotonic() + 5
    while await redis.pttl(storage.key("pace", "updates")) < 7_500:
        assert time.monotonic() < deadline, "the sixth turn was never handed out"
        await asyncio.sleep(0.01)
    slack_api.fail("chat.update", status=429, retry_after=RETRY_AFTER)
    await update(one, channel=CHANNEL, ts=roots[0], message={"text": "refused"}, paced=True)
    await waiting

    (refusal,) = [c for c in slack_api.calls_of("chat.update") if c.status == 429]
    (again,) = _ok_calls(slack_api, "chat.update", roots[0])
    (waited,) = _ok_calls(slack_api, "chat.update", roots[2])
    assert again.at - refusal.at >= RETRY_AFTER
    assert waited.at - refusal.at >= RETRY_AFTER
    assert [slack_api.message(ts).text for ts in roots] == ["refused", "burst 4", "waited"]
    assert limits.refused == 0 and limits.unhonoured == 0


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "on its own"])
async def test_a_far_turn_is_said_once_a_minute(
    slack_api: SlackStandIn,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    shared: bool,
) -> None:
    config = BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url)
    client = make_web_client(config, redis if shared else None)
    name = f"slow-{shared}"  # once a minute per budget and process: a name of its own
    budget = workspace_budget(client, name, per_minute=1.0, burst=1)
    await budget.take()  # the burst: now, nothing said
    assert not [r for r in caplog.records if name in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="badgateway.bot.slack_client"):
        for _ in range(2):  # each turn a minute away: given up on
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(budget.take(), 0.3)
    said = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(said) == 1, said
    assert "60 s" in said[0] or "59 s" in said[0]


async def test_a_redelivered_step_waits_for_its_update_turn_outside_the_threads_lock(
    slack_api: SlackStandIn,
) -> None:
    config = BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url)
    client = make_web_client(config)
    state = BotState(MemoryStore())
    root_ts = str((await client.chat_postMessage(channel="C1", text="root"))["ts"])
    await state.save_thread(
        DiagnosisThread("C1", root_ts, "shop", "https://shop/", "U1", time.time(), current="d1")
    )
    sink = SlackSink(client, state)

    async def deliver(summary: str, redelivered: str | None) -> None:
        result = StepResult.from_findings(
            "reload", summary, [Finding("reload_x", summary, Status.OK, None)]
        )
        await state.record_result("d1", result)
        await sink.show("d1", ["reload"], "C1", root_ts, redelivered=redelivered)

    try:
        await deliver("fine", None)
        (reply,) = slack_api.thread(root_ts)
        await update_budget(client).hold(1.5)  # Slack's chat.update budget is empty meanwhile
        held_at = time.monotonic()
        again = asyncio.create_task(deliver("slow", "reload"))
        budget = update_budget(client).local  # no Redis: this process's own bucket
        await slack_api.wait_for(budget.turn.locked, 5, "the update waiting for its turn")
        # While it waits for its turn, the thread is free for everything else.
        async with asyncio.timeout(0.5):
            async with state.thread_lock("C1", root_ts):
                assert not again.done()
        await again
    finally:
        await sink.roots.close()
    (updated,) = [c for c in slack_api.calls_of("chat.update") if c.params["ts"] == reply.ts]
    assert updated.at - held_at >= 1.4  # (the root's updates are RootUpdates')
    assert [m.ts for m in slack_api.thread(root_ts)] == [reply.ts]  # updated, not posted again
    assert "slow" in str(slack_api.message(reply.ts).blocks)
