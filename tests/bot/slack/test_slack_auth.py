"""`/readyz` and the bot token (bot.slack.slack_auth): a web process whose token Slack
rejects answers 503 with the reason, found by a background `auth.test`, never one per probe;
Slack out of reach keeps the last answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from badgateway.bot.assemble.web import WebProcess, build_web
from badgateway.bot.config import BotConfig
from badgateway.bot.slack.server import READY_PATH
from badgateway.checks.settings import Settings
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackStandIn
from tests.lab.process import serve_app

TOKEN = "xoxb-watched"
EVERY_S = 0.2  # instead of a minute, so that the test sees a few refreshes


@pytest_asyncio.fixture
async def web_process(slack_api: SlackStandIn) -> AsyncIterator[tuple[WebProcess, str]]:
    """The web process (in-process carrier), its token checked every EVERY_S; its base URL."""
    config = BotConfig(
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_api.base_url,
    )
    process = build_web(config, Settings())
    assert process.slack_auth is not None
    process.slack_auth.every_s = EVERY_S
    runner, port = await serve_app(process.web_app())
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await process.close()


async def _ready(session: aiohttp.ClientSession, base: str) -> tuple[int, Any]:
    async with session.get(base + READY_PATH) as response:
        return response.status, await response.json()


async def _until_ready_is(
    session: aiohttp.ClientSession, base: str, status: int, within_s: float = 10.0
) -> Any:
    """The body of the first `/readyz` answer with ``status`` (probed every 50 ms)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        got, body = await _ready(session, base)
        if got == status:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"/readyz stayed {got}: {body}"
        await asyncio.sleep(0.05)


async def test_readyz_fails_with_the_reason_while_slack_rejects_the_token(
    slack_api: SlackStandIn, web_process: tuple[WebProcess, str]
) -> None:
    _, base = web_process
    async with aiohttp.ClientSession() as session:
        assert await _until_ready_is(session, base, 200) == {"ok": True}
        slack_api.revoked_tokens.add(TOKEN)
        body = await _until_ready_is(session, base, 503)
        assert body == {
            "ok": False,
            "reason": "Slack rejects SLACK_BOT_TOKEN (invalid_auth); the bot cannot post",
        }
        slack_api.revoked_tokens.discard(TOKEN)  # a new token installed under the same name
        assert await _until_ready_is(session, base, 200) == {"ok": True}


async def test_probes_do_not_each_ask_slack(
    slack_api: SlackStandIn, web_process: tuple[WebProcess, str]
) -> None:
    _, base = web_process
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        answers = [await _ready(session, base) for _ in range(40)]
    took_s = loop.time() - started
    assert answers == [(200, {"ok": True})] * 40
    # One check per interval at most, however often /readyz is asked.
    assert len(slack_api.calls_of("auth.test")) <= 1 + took_s / EVERY_S < 40


async def test_slack_out_of_reach_keeps_the_last_answer(
    slack_api: SlackStandIn, web_process: tuple[WebProcess, str]
) -> None:
    _, base = web_process
    async with aiohttp.ClientSession() as session:
        await _until_ready_is(session, base, 200)
        checked = len(slack_api.calls_of("auth.test"))
        accepted = len(slack_api.calls_of("auth.test", ok_only=True))
        slack_api.fail("auth.test", status=503, times=50)  # Slack down, not the token
        await slack_api.wait_for(
            lambda: len(slack_api.calls_of("auth.test")) >= checked + 3, what="refreshes"
        )
        assert len(slack_api.calls_of("auth.test", ok_only=True)) == accepted
        assert (await _ready(session, base)) == (200, {"ok": True})
