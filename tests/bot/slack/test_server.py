"""`badgateway serve` in HTTP mode: the real server on a port, its endpoints, its start-up check."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from badgateway.bot.assemble.web import run
from badgateway.bot.config import BotConfig
from badgateway.bot.slack.server import EVENTS_PATH, HEALTH_PATH, READY_PATH
from badgateway.checks.settings import Settings
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackStandIn, sign
from tests.lab.process import free_port


def _config(slack: SlackStandIn, port: int, token: str = "xoxb-serve") -> BotConfig:
    return BotConfig(
        slack_bot_token=token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.base_url,
        port=port,
    )


async def test_serve_answers_health_and_slack_then_stops(slack_api: SlackStandIn) -> None:
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(run(_config(slack_api, port), Settings(), stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(base + HEALTH_PATH) as response:
                    assert response.status == 200
                    assert (await response.json()) == {"ok": True}
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("serve did not start")
        async with session.get(base + READY_PATH) as response:  # no queue: it does the work
            assert response.status == 200 and (await response.json()) == {"ok": True}
        body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"})
        headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, body)}
        async with session.post(base + EVENTS_PATH, data=body, headers=headers) as response:
            assert response.status == 200 and "abc123" in await response.text()
        bad = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
        async with session.post(base + EVENTS_PATH, data=body, headers=bad) as response:
            assert response.status == 401
    stop.set()
    assert await asyncio.wait_for(server, 10) == 0
    assert slack_api.calls_of("auth.test", ok_only=True)  # the token was checked at start


async def test_serve_stops_with_one_line_when_slack_rejects_the_token(
    slack_api: SlackStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    slack_api.revoked_tokens.add("xoxb-revoked")
    code = await run(_config(slack_api, free_port(), "xoxb-revoked"), Settings(), asyncio.Event())
    assert code == 2
    assert "Slack rejected SLACK_BOT_TOKEN (invalid_auth)" in capsys.readouterr().err
