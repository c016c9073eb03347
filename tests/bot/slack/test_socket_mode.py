"""`badgateway serve` in Socket Mode: the real server (`bot.slack.server.run`) with an
app-level token connects to the Slack stand-in's Socket Mode WebSocket and gets `/502`, the
verdict's buttons and mentions as envelopes, acking each one on the socket; everything it
posts goes through the Web API stand-in. The target is a real HTTP server on loopback
answering 502, diagnosed by the engine's own checks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from badgateway.bot.assemble.web import run
from badgateway.bot.config import BotConfig, load_config
from badgateway.bot.slack.server import HEALTH_PATH
from badgateway.checks.settings import Settings
from badgateway.checks.steps import step_names
from tests.lab.fixtures_slack import (
    BOT_USER_ID,
    SIGNING_SECRET,
    Envelope,
    Message,
    SlackSigner,
    SlackStandIn,
    loopback_settings,
    socket_payload,
)
from tests.lab.process import free_port

CHANNEL = "C0OPS0001"
APP_TOKEN = "xapp-1-A0BGW0001-1234-socketmodetoken"
ACK_WITHIN_S = 1.5  # Slack allows 3 s; the bot acks before it works


def settings() -> Settings:
    loopback: Settings = loopback_settings()
    return loopback


class SocketBot:
    """The real `serve` in Socket Mode, talking to the stand-in only over its WebSocket."""

    def __init__(self, slack: SlackStandIn, server: asyncio.Task[int], port: int) -> None:
        self.slack = slack
        self.server = server
        self.port = port
        self.signer = SlackSigner(SIGNING_SECRET, slack.response_url)  # builds bodies only

    async def command(self, text: str, **kwargs: Any) -> Envelope:
        payload = socket_payload(self.signer.slash_command(text, **kwargs))
        return await self.slack.socket.push("slash_commands", payload)

    async def press(self, action_id: str, root_ts: str, message_ts: str) -> Envelope:
        built = self.signer.block_action(
            action_id, root_ts, message_ts=message_ts, thread_ts=root_ts
        )
        return await self.slack.socket.push("interactive", socket_payload(built))

    async def mention(self, text: str, thread_ts: str, **kwargs: Any) -> Envelope:
        built = self.signer.app_mention(f"<@{BOT_USER_ID}> {text}", thread_ts=thread_ts)
        return await self.slack.socket.push("events_api", socket_payload(built), **kwargs)


def socket_config(slack: SlackStandIn, port: int, app_token: str = APP_TOKEN) -> BotConfig:
    config = load_config(
        {
            "SLACK_BOT_TOKEN": "xoxb-socket-mode",
            "SLACK_APP_TOKEN": app_token,
            "SLACK_API_URL": slack.base_url,
            "PORT": str(port),
        },
        dotenv_path=None,
        require_slack=True,  # Socket Mode needs no signing secret
    )
    assert config.socket_mode and config.slack_signing_secret is None
    return config


@pytest_asyncio.fixture
async def socket_bot(slack_api: SlackStandIn) -> AsyncIterator[SocketBot]:
    port = free_port()
    config = socket_config(slack_api, port)
    stop = asyncio.Event()
    server = asyncio.create_task(run(config, settings(), stop))
    try:
        await slack_api.socket.wait_connected()
        yield SocketBot(slack_api, server, port)
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 15) == 0
    assert not slack_api.socket.connected  # closed its connection on the way out


def verdicts(slack: SlackStandIn, root_ts: str) -> list[Message]:
    return [m for m in slack.thread(root_ts) if m.text.startswith("verdict:")]


async def test_connects_with_the_app_token_and_keeps_health_on_the_port(
    socket_bot: SocketBot,
) -> None:
    slack = socket_bot.slack
    [opened] = slack.calls_of("apps.connections.open")
    assert opened.headers["Authorization"] == f"Bearer {APP_TOKEN}"
    assert slack.calls_of("auth.test", ok_only=True)  # the bot token was checked first
    assert slack.socket.connects == 1 and slack.socket.refused == 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{socket_bot.port}{HEALTH_PATH}") as health,
    ):
        assert health.status == 200
        assert await health.json() == {"ok": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{socket_bot.port}/slack/events", data="{}") as events,
    ):
        assert events.status in (404, 405)  # no HTTP endpoint for Slack in Socket Mode


async def test_slash_command_threads_and_rerun_over_the_socket(
    socket_bot: SocketBot, failing_site: str
) -> None:
    slack = socket_bot.slack
    envelope = await socket_bot.command(failing_site)
    ack = await slack.socket.acked(envelope, ACK_WITHIN_S)
    assert ack == {"envelope_id": envelope.envelope_id}  # acked, nothing to say privately
    await slack.wait_for(lambda: len(slack.roots()) == 1, what="the root message")
    root = slack.roots()[0]
    assert root.channel == CHANNEL and failing_site in str(root.blocks)
    await slack.wait_for(lambda: len(verdicts(slack, root.ts)) == 1, what="the verdict")
    steps = step_names()
    await slack.wait_for(lambda: "Verdict:" in str(slack.message(root.ts).blocks), what="root")
    thread = [m.text.split(":")[0] for m in slack.thread(root.ts)]
    assert thread == [*steps, "verdict"]
    verdict = verdicts(slack, root.ts)[0]
    actions = next(b for b in verdict.blocks if b["type"] == "actions")
    assert "bgw_rerun" in [e["action_id"] for e in actions["elements"]]

    # Re-run, pressed on the verdict: acked on the socket, a new verdict in the same thread.
    pressed = await socket_bot.press("bgw_rerun", root.ts, verdict.ts)
    assert await slack.socket.acked(pressed, ACK_WITHIN_S) == {"envelope_id": pressed.envelope_id}
    await slack.wait_for(lambda: len(verdicts(slack, root.ts)) == 2, what="the second verdict")
    assert len(slack.roots()) == 1
    assert all(m.thread_ts == root.ts for m in slack.messages if m is not root)
    assert [m.text.split(":")[0] for m in slack.thread(root.ts)].count("verdict") == 2
    await slack.wait_for(lambda: "re-run" in str(slack.message(root.ts).blocks), what="re-run")

    # `@badgateway rerun dns` in the thread arrives as an Events API envelope; Slack's retry
    # of the same event (same event_id) is acked and ignored.
    mention = await socket_bot.mention("rerun dns", root.ts)
    await slack.socket.acked(mention, ACK_WITHIN_S)
    await slack.wait_for(lambda: len(verdicts(slack, root.ts)) == 3, what="the dns re-run")
    retried = await slack.socket.push(
        "events_api", mention.payload, retry_attempt=1, retry_reason="timeout"
    )
    await slack.socket.acked(retried, ACK_WITHIN_S)
    await asyncio.sleep(0.5)
    assert len(verdicts(slack, root.ts)) == 3
    assert len(slack.roots()) == 1
    assert all(e.ack is not None for e in slack.socket.envelopes)


async def test_bad_targets_are_answered_in_the_ack_and_nothing_is_posted(
    socket_bot: SocketBot,
) -> None:
    slack = socket_bot.slack
    for text, expected in (
        ("ftp://files.example.com/", "only http and https"),
        ("http://10.0.0.1/", "private address"),
        ("", "Give me a target"),
    ):
        envelope = await socket_bot.command(text)
        ack = await slack.socket.acked(envelope, ACK_WITHIN_S)
        assert ack["envelope_id"] == envelope.envelope_id
        assert envelope.ack_payload is not None
        assert envelope.ack_payload["response_type"] == "ephemeral"
        assert expected in envelope.ack_payload["text"]
    await asyncio.sleep(0.2)
    assert slack.calls_of("chat.postMessage") == [] and slack.messages == []
    assert slack.responses == [] and slack.ephemerals == []


async def test_reconnects_when_slack_asks_and_keeps_working(
    socket_bot: SocketBot, failing_site: str
) -> None:
    slack = socket_bot.slack
    await slack.socket.disconnect("refresh_requested")
    await slack.socket.wait_connected(connects=2)
    assert len(slack.calls_of("apps.connections.open", ok_only=True)) == 2
    envelope = await socket_bot.command(failing_site)
    await slack.socket.acked(envelope, ACK_WITHIN_S)
    await slack.wait_for(lambda: len(slack.roots()) == 1, what="the root after reconnecting")
    await slack.wait_for(lambda: verdicts(slack, slack.roots()[0].ts), what="the verdict")
    assert len(slack.roots()) == 1


async def test_a_rejected_app_token_stops_start_up_with_one_line(
    slack_api: SlackStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    slack_api.revoked_tokens.add("xapp-1-revoked")
    config = socket_config(slack_api, free_port(), "xapp-1-revoked")
    code = await asyncio.wait_for(run(config, settings(), asyncio.Event()), 10)
    assert code == 2
    assert "Slack rejected SLACK_APP_TOKEN (invalid_auth)" in capsys.readouterr().err
    assert slack_api.socket.connects == 0


async def test_stops_while_slack_refuses_the_websocket(slack_api: SlackStandIn) -> None:
    # slack_sdk retries a refused connection forever; a stop (SIGTERM) must still end serve.
    slack_api.socket.accepting = False
    stop = asyncio.Event()
    server = asyncio.create_task(run(socket_config(slack_api, free_port()), settings(), stop))
    await slack_api.wait_for(lambda: slack_api.socket.refused >= 1, what="a refused connect")
    stop.set()
    stopped = time.monotonic()
    assert await asyncio.wait_for(server, 5) == 0
    assert time.monotonic() - stopped < 2
    assert slack_api.socket.connects == 0
