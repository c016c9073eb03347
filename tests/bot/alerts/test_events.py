"""POST /events on a real aiohttp server, keeping markers in a real Redis: a good body is
kept with the time it arrived (201), by site name or URL; every bad request is one short
line (401, 413, 400, 422 naming the unknown site, 503 without a token) and keeps nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from badgateway.bot.alerts.events import EVENTS_PATH, add_event_routes
from badgateway.bot.config import AlertPolicy, BotConfig, HistoryRetention
from badgateway.bot.history_store import RedisHistory
from badgateway.bot.storage import key
from badgateway.checks.settings import Settings, Site
from tests.lab.fixtures_redis import RedisServer
from tests.lab.process import serve_app

TOKEN = "events-token-5e1b"
SHOP = Site("shop", "http://127.0.0.1:9/")
LIMIT = 2048


class Events:
    def __init__(self, url: str, redis: Redis) -> None:
        self.url, self.redis = url, redis

    async def post(
        self, body: Any, *, token: str | None = TOKEN, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else json.dumps(body).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=data, headers=headers) as response,
        ):
            return response.status, json.loads(await response.text())

    async def kept(self) -> list[str]:
        found: list[str] = []
        async for name in self.redis.scan_iter(match=key("markers", "*")):
            found += await self.redis.lrange(name, 0, -1)  # type: ignore[misc]
        return found


async def serve_events(redis: Redis, token: str | None) -> AsyncIterator[Events]:
    config = BotConfig(alerts_token=token, alert_policy=AlertPolicy(body_limit_bytes=LIMIT))
    app = web.Application()
    add_event_routes(app, config, Settings(sites=(SHOP,)), RedisHistory(redis, HistoryRetention()))
    runner, port = await serve_app(app)
    try:
        yield Events(f"http://127.0.0.1:{port}{EVENTS_PATH}", redis)
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def events(redis: Redis) -> AsyncIterator[Events]:
    async for served in serve_events(redis, TOKEN):
        yield served


@pytest.mark.parametrize("site", ["shop", "http://127.0.0.1:9/", "http://127.0.0.1:9"])
async def test_a_marker_is_kept_by_site_name_or_url(events: Events, site: str) -> None:
    body = {"site": site, "text": "deployed shop v1.2.3", "by": "CI", "kind": "deploy"}
    status, answer = await events.post(body)
    assert status == 201, answer
    assert answer["marker"]["target"] == "shop" and answer["marker"]["at"].endswith("+00:00")
    [kept] = await events.kept()
    assert json.loads(kept) == answer["marker"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"site": "blog", "text": "deployed"}, 422, "unknown site 'blog'"),
        ({"site": "http://blog.test/", "text": "x"}, 422, "unknown site 'http://blog.test/'"),
        ({"text": "deployed"}, 400, "needs 'site'"),
        ({"site": "shop"}, 400, "needs 'text'"),
        ({"site": "shop", "text": "  "}, 400, "'text' must say what was done"),
        ({"site": "shop", "text": "x" * 301}, 400, "'text' is longer than 300"),
        ({"site": "shop", "text": "x", "kind": "party"}, 400, "'kind' must be one of"),
        ({"site": "shop", "text": "x", "by": 7}, 400, "'by' must be a string"),
        ({"site": "shop", "text": "x", "at": "12:00"}, 400, "unknown field 'at'"),
        (["shop", "deployed"], 400, "body must be a JSON object"),
    ],
)
async def test_a_bad_body_is_one_line_and_keeps_nothing(
    events: Events, body: Any, status: int, reason: str
) -> None:
    got, answer = await events.post(body)
    assert (got, list(answer)) == (status, ["error"])
    assert reason in answer["error"] and "\n" not in answer["error"]
    assert await events.kept() == []


async def test_a_wrong_token_a_big_body_and_bad_json_keep_nothing(events: Events) -> None:
    good = {"site": "shop", "text": "deployed"}
    assert (await events.post(good, token="wrong"))[0] == 401
    assert (await events.post(good, token=None))[0] == 401
    status, answer = await events.post(None, raw=b'{"site": "shop", "text": "' + b"x" * LIMIT)
    assert (status, answer["error"]) == (413, f"body larger than {LIMIT} bytes")
    status, answer = await events.post(None, raw=b'{"site": "shop",')
    assert status == 400 and answer["error"].startswith("body: ")
    assert await events.kept() == []


async def test_without_a_token_events_are_off(redis: Redis) -> None:
    async for events in serve_events(redis, None):
        status, answer = await events.post({"site": "shop", "text": "deployed"})
        assert (status, answer["error"]) == (503, "events are off: ALERTS_TOKEN is not set")
        assert await events.kept() == []
