"""Shared lab for the alert tests: a real redis-server, a recording carrier, builders, an app
that can be stopped and started, and the alert webhooks served on a real port.

Its fixtures (``redis_url``, ``redis``, ``app``, ``bot``) are registered in tests/conftest.py.
The Slack Web API stand-in is ``tests.lab.fixtures_slack``'s ``slack_api``; nginx comes from
``tests.lab.fixtures_proxies``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.monitor import probe_site
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.alerts.webhooks import add_alert_routes
from badgateway.bot.config import AlertPolicy, BotConfig
from badgateway.bot.history_store import HistoryStore
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.slack_client import make_web_client
from badgateway.checks.settings import Settings, Site
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import Message, SlackStandIn
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import serve_app

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
    history: HistoryStore | None = None,
) -> Incidents:
    """A fresh bot-side object over the given Redis: what a restarted process builds."""
    notifier = SlackNotifier(make_web_client(bot_config(slack)))
    return Incidents(IncidentStore(redis), notifier, settings, policy, carrier, history=history)


@contextlib.asynccontextmanager
async def another_process(
    redis_url: str, slack: SlackStandIn, settings: Settings
) -> AsyncIterator[Incidents]:
    """What a restarted (or a second) process builds: its own Redis connection and objects
    over the same Redis."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield make_incidents(client, slack, settings, RecordingCarrier())
    finally:
        await client.aclose()


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


def shown(message: Message) -> str:
    """What a message shows: its blocks' texts (a storm's table lives there, not in the
    fallback text)."""
    texts: list[str] = []
    for block in message.blocks:
        if isinstance(block.get("text"), dict):
            texts.append(str(block["text"].get("text", "")))
        texts += [str(e.get("text", "")) for e in block.get("elements") or [] if "text" in e]
    return "\n".join(texts)


class App:
    """An upstream app that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.server: Upstream | None = Upstream("ok").start()
        self.port = self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def start(self) -> None:
        if self.server is None:
            self.server = Upstream("ok", port=self.port).start()


@pytest.fixture
def app() -> Iterator[App]:
    server = App()
    try:
        yield server
    finally:
        server.stop()


async def probe(incidents: Incidents, site: Site, times: int = 1) -> None:
    for _ in range(times):
        await incidents.observe(site, await probe_site(site, incidents.settings))


ALERTS_TOKEN = "alerts-secret-7f3a"
SHOP = Site("shop", "http://127.0.0.1:9/", channel="C0SHOP")

Post = Callable[..., Awaitable[tuple[int, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    """One webhook request the bot answered, and what it said back."""

    path: str
    status: int
    answer: Any  # the JSON answered: for a 202, the alerts taken and skipped


class Bot:
    def __init__(
        self,
        incidents: Incidents,
        base: str,
        carrier: RecordingCarrier,
        received: list[Received] | None = None,
    ) -> None:
        self.incidents = incidents
        self.base = base
        self.carrier = carrier
        # Every answer, as the sender (Alertmanager) saw it: filled in by the server.
        self.received = received if received is not None else []

    def answered(self, path: str = "/alerts/alertmanager") -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def post(
        self,
        path: str,
        body: Any,
        token: str | None = ALERTS_TOKEN,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.base + path, data=data, headers=sent) as response,
        ):
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text


async def serve_webhooks(
    redis: Redis,
    slack: SlackStandIn,
    token: str | None,
    *,
    diagnose: bool = True,
) -> AsyncIterator[Bot]:
    """The webhooks on a real aiohttp server; without ``diagnose`` an accepted alert opens its
    incident and posts, but its carrier is never asked to run a diagnosis."""
    settings = lab_settings(SHOP)
    carrier = RecordingCarrier()
    incidents = make_incidents(redis, slack, settings, carrier if diagnose else None)
    received: list[Received] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The answer only: reading the body here would take it from the handler (which
        # must refuse a wrong token before reading it).
        response = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            answer = json.loads(response.body) if response.body else None
            received.append(Received(request.path, response.status, answer))
        return response

    app = web.Application(middlewares=[record])
    add_alert_routes(app, bot_config(slack, alerts_token=token), settings, incidents)
    runner, port = await serve_app(app)
    try:
        yield Bot(incidents, f"http://127.0.0.1:{port}", carrier, received)
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def bot(redis: Redis, slack_api: SlackStandIn) -> AsyncIterator[Bot]:
    async for served in serve_webhooks(redis, slack_api, ALERTS_TOKEN):
        yield served
