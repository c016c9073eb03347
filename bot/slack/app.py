"""The Bolt app: Slack's requests (slash command, buttons, mentions) wired to ChatOps.

Bolt verifies every request's signature and timestamp (401 otherwise), answers
url_verification, and acknowledges before the work: each listener acks first (or with the
private answer when the input is wrong) and then carries on, so Slack's 3 s are never at risk.
An event seen before (Slack retries with X-Slack-Retry-Num) is answered 200 and dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.carriers import build_carrier
from bot.config import BotConfig
from bot.pipeline import Carrier
from bot.render.slack_blocks import ACTIONS
from bot.slack.chatops import ChatOps, Command, Reply
from bot.slack.client import make_web_client
from bot.slack.sink import SlackSink
from bot.state import BotState, StateStore, open_store
from checks.settings import Settings

log = logging.getLogger(__name__)

_ACTION_NAMES = {action_id: name for name, (action_id, _label) in ACTIONS.items()}


@dataclass
class SlackRuntime:
    """Everything `badgateway serve` runs, built once and closed once."""

    config: BotConfig
    settings: Settings
    client: AsyncWebClient
    state: BotState
    sink: SlackSink
    carrier: Carrier
    chatops: ChatOps
    app: AsyncApp

    async def close(self) -> None:
        await self.carrier.close()
        await self.state.store.close()


def build_runtime(
    config: BotConfig, settings: Settings, *, store: StateStore | None = None
) -> SlackRuntime:
    client = make_web_client(config)
    state = BotState(store or open_store(config.redis_url))
    sink = SlackSink(client, state)
    carrier = build_carrier(config, settings, sink)
    chatops = ChatOps(client, state, carrier, settings)
    app = build_app(config, chatops, state, client)
    return SlackRuntime(config, settings, client, state, sink, carrier, chatops, app)


def _private(respond: AsyncRespond) -> Reply:
    async def reply(text: str) -> None:
        await respond(text=text, response_type="ephemeral", replace_original=False)

    return reply


def build_app(
    config: BotConfig, chatops: ChatOps, state: BotState, client: AsyncWebClient
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=config.slack_signing_secret or "",
        name="badgateway",
        process_before_response=False,
    )

    @app.middleware
    async def once_per_event(body: dict[str, Any], next_: Any) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not await state.first_time(str(event_id)):
            log.info("event %s seen before (a retry); ignored", event_id)
            return BoltResponse(status=200, body="")
        return await next_()  # type: ignore[no-any-return]

    @app.command(re.compile(r"^/.+"))  # the installer may rename the command; /502 by default
    async def slash_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        async def answer(text: str | None) -> None:
            if text is None:
                await ack()
            else:
                await ack(text=text, response_type="ephemeral")

        cmd = Command(
            text=str(command.get("text") or ""),
            user=str(command["user_id"]),
            channel=str(command["channel_id"]),
            channel_name=str(command.get("channel_name") or ""),
        )
        await chatops.command(cmd, answer, _private(respond))

    @app.action(re.compile(r"^bgw_"))
    async def button(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        action = body["actions"][0]
        name = _ACTION_NAMES.get(action["action_id"], action["action_id"])
        message = body.get("message") or {}
        root_ts = str(action.get("value") or message.get("thread_ts") or message.get("ts"))
        await chatops.action(
            name,
            user=str(body["user"]["id"]),
            channel=str(body["channel"]["id"]),
            root_ts=root_ts,
            reply=_private(respond),
            channel_name=str(body["channel"].get("name") or ""),
        )

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any]) -> None:
        await chatops.mention(
            text=str(event.get("text") or ""),
            user=str(event.get("user") or ""),
            channel=str(event["channel"]),
            ts=str(event["ts"]),
            thread_ts=event.get("thread_ts"),
        )

    return app
