"""Shared lab for the alert tests: a real redis-server, a recording carrier, builders.

(No tests here; the alert test modules import these fixtures.) The Slack Web API stand-in
is ``tests.lab.fixtures_slack``'s ``slack_api``; nginx comes from ``tests.lab.fixtures_proxies``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bot.alerts.incidents import Incidents
from bot.alerts.notifier import SlackNotifier
from bot.alerts.store import IncidentStore
from bot.config import AlertPolicy, BotConfig
from bot.pipeline import DiagnosisRequest
from bot.slack_client import make_web_client
from checks.settings import Settings, Site
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn

CHANNEL = "C0ALERTS"
TOKEN = "xoxb-test-alerts"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
FAST = AlertPolicy(
    failures_to_open=2,
    successes_to_recover=2,
    flap_window_s=60,
    storm_threshold=5,
    storm_hold_s=0.2,
    storm_window_s=30,
    body_limit_bytes=16 * 1024,
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The queue lab's real redis-server, shared by a module's tests."""
    server = RedisServer(tmp_path_factory.mktemp("alerts-redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client on an empty database."""
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


class RecordingCarrier:
    """A Carrier that keeps the requests (the diagnosis itself is tested elsewhere)."""

    def __init__(self) -> None:
        self.requests: list[DiagnosisRequest] = []

    async def submit(self, request: DiagnosisRequest) -> None:
        self.requests.append(request)

    async def close(self) -> None:
        return None


def bot_config(
    slack: SlackStandIn, redis_url: str = "", alerts_token: str | None = None
) -> BotConfig:
    return BotConfig(
        slack_bot_token=TOKEN,
        slack_api_url=slack.base_url,
        redis_url=redis_url or None,
        alerts_token=alerts_token,
    )


def lab_settings(*sites: Site, budget_s: float = 4.0) -> Settings:
    return Settings(
        allow_networks=LOOPBACK,
        timeout_s=1.0,
        reload_attempts=1,
        reload_spacing_s=0.0,
        diagnosis_budget_s=budget_s,
        sites=tuple(sites),
        default_channel=CHANNEL,
    )


def make_incidents(
    redis: Redis,
    slack: SlackStandIn,
    settings: Settings,
    carrier: RecordingCarrier | None = None,
    policy: AlertPolicy = FAST,
) -> Incidents:
    """A fresh bot-side object over the given Redis: what a restarted process builds."""
    notifier = SlackNotifier(make_web_client(bot_config(slack)))
    return Incidents(IncidentStore(redis), notifier, settings, policy, carrier)


async def until(condition: Callable[[], bool], within_s: float = 5.0, what: str = "") -> None:
    """Wait for something another task does (a webhook's background post)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


def posted(slack: SlackStandIn) -> list[str]:
    """Every chat.postMessage text, in order."""
    return [str(c.params.get("text")) for c in slack.calls_of("chat.postMessage")]
