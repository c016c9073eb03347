"""`/502` threads when Redis goes away between the readiness check and the queueing: no root
is posted, and no flight is left behind for later requests to join and wait on."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from badgateway.bot.config import BotConfig
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.slack.diagnosis_threads import DiagnosisThreads
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, MemoryStore
from badgateway.checks.runner import prepare
from tests.lab.fixtures_slack import SlackStandIn, loopback_settings


class RedisGoneCarrier:
    """A queue whose Redis stopped answering: every submit fails as redis-py fails."""

    def __init__(self) -> None:
        self.tried: list[str] = []

    async def submit(self, request: DiagnosisRequest) -> None:
        self.tried.append(request.id)
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    async def close(self) -> None:
        return None


async def test_a_failed_submit_posts_no_root_and_leaves_no_flight(
    slack_api: SlackStandIn,
) -> None:
    settings = loopback_settings()
    state = BotState(MemoryStore())
    carrier = RedisGoneCarrier()
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url))
    threads = DiagnosisThreads(client, state, carrier, settings)
    ctx = await prepare("http://127.0.0.1:9/", settings)
    answers: list[str] = []

    async def reply(text: str) -> None:
        answers.append(text)

    for _ in range(2):  # the second request must not join a run that was never queued
        with pytest.raises(RedisConnectionError):
            await threads.start(ctx, user="U0ALICE01", channel="C0OPS0001", reply=reply)
    assert len(carrier.tried) == 2 and carrier.tried[0] != carrier.tried[1]
    assert await state.flight(ctx.target.url) is None
    assert slack_api.calls_of("chat.postMessage") == []
