"""The Bolt app: Slack's requests (slash command, buttons, mentions) wired to ChatOps.

Over HTTP, bot.slack.inbound has checked the signature and parsed the body within limits
before Bolt sees a request. Bolt answers url_verification, and each listener acknowledges
before the work (with the private answer when the input is wrong) and then carries on, so
Slack's 3 s are never at risk. Every field a listener reads is checked first
(bot.slack.payloads): a payload Slack would not send gets a private answer saying which field
was wrong, and nothing raises after the acknowledgement, which would make Bolt replace it and
answer 404 after its 3 s timeout. An event seen before (Slack retries with X-Slack-Retry-Num)
is answered 200 and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.config import BotConfig
from badgateway.bot.render.slack_blocks import ACTIONS, SHOW_SITE_ACTION
from badgateway.bot.slack import payloads
from badgateway.bot.slack.chatops import ChatOps, Command
from badgateway.bot.slack.payloads import PayloadProblem, PrivateRoute
from badgateway.bot.slack.private import PrivateReplies, could_not_read
from badgateway.bot.slack_client import slack_error
from badgateway.bot.state import BotState
from badgateway.bot.threads import Answer

log = logging.getLogger(__name__)

_ACTION_NAMES = {action_id: name for name, (action_id, _label) in ACTIONS.items()}
_ACTION_NAMES[SHOW_SITE_ACTION] = "show"  # a grouped alert's menu of sites
FAILED_TEXT = "⚠️ badgateway failed to handle this; its log says why. Try again in a moment."


async def _safely(what: str, work: Awaitable[None]) -> None:
    """Run a handler's work after the acknowledgement without ever raising into Bolt (which
    would replace the acknowledgement and time out): Slack's or the network's failures are one
    log line; anything else is a bug and is logged with its traceback."""
    try:
        await work
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("%s: Slack or the network failed: %s", what, slack_error(exc) or exc)
    except Exception:
        log.exception("%s failed", what)


def build_app(
    config: BotConfig,
    chatops: ChatOps,
    state: BotState,
    client: AsyncWebClient,
    replies: PrivateReplies,
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=config.slack_signing_secret or "",
        name="badgateway",
        process_before_response=False,
        # HTTP requests are verified on their raw bytes before Bolt sees them (bot.slack.inbound);
        # Socket Mode needs no signature.
        request_verification_enabled=False,
    )
    stand_in = config.slack_api_url  # its origin may take response_url posts (a test Slack)
    private = replies.to

    @app.middleware
    async def once_per_event(body: dict[str, Any], next_: Any) -> BoltResponse | None:
        event_id = payloads.event_id(body)
        if event_id and not await state.first_time(event_id):
            log.info("event %s seen before (a retry); ignored", event_id)
            return BoltResponse(status=200, body="")
        return await next_()  # type: ignore[no-any-return]

    @app.command(payloads.LISTENED_COMMANDS)
    async def slash_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        try:
            fields = payloads.slash_command(command, stand_in=stand_in)
        except PayloadProblem as problem:
            log.warning("a slash command Slack would not send: %s", problem)
            await ack(text=could_not_read("command", problem), response_type="ephemeral")
            return

        async def answer(text: Answer | None) -> None:
            if text is None:
                await ack()
            elif isinstance(text, dict):  # a Block Kit answer (`/502 history`)
                await ack(text=text["text"], blocks=text["blocks"], response_type="ephemeral")
            else:
                await ack(text=text, response_type="ephemeral")

        cmd = Command(
            text=fields.text,
            user=fields.user,
            channel=fields.channel,
            channel_name=fields.channel_name,
        )
        route = PrivateRoute(fields.response_url, fields.user, fields.channel)
        await _safely("/502", chatops.command(cmd, answer, private(route)))
        if ack.response is None:  # it failed before answering: still answer within 3 s
            await ack(text=FAILED_TEXT, response_type="ephemeral")

    @app.action(payloads.LISTENED_ACTIONS)
    async def button(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            press = payloads.button_press(body, stand_in=stand_in)
        except PayloadProblem as problem:
            log.warning("a button press Slack would not send: %s", problem)
            route = payloads.private_route(body, stand_in=stand_in)
            await private(route)(could_not_read("button press", problem))
            return
        route = PrivateRoute(press.response_url, press.user, press.channel)
        work = chatops.action(
            _ACTION_NAMES.get(press.action_id, press.action_id),
            user=press.user,
            channel=press.channel,
            root_ts=press.root_ts,
            reply=private(route),
            channel_name=press.channel_name,
            chosen=press.chosen,
        )
        await _safely("a button", work)

    @app.options(SHOW_SITE_ACTION)
    async def site_menu(ack: AsyncAck, body: dict[str, Any]) -> None:
        """A grouped alert's menu of sites, answered as the user types (within Slack's 3 s)."""
        options: list[dict[str, object]] = []
        try:
            typing = payloads.menu_typing(body)
            options = await chatops.site_options(
                user=typing.user, channel=typing.channel, root_ts=typing.root_ts, typed=typing.typed
            )
        except PayloadProblem as problem:
            log.warning("a block_suggestion Slack would not send: %s", problem)
        except Exception:  # the menu shows "no results"; the log says why
            log.exception("the menu of a grouped alert's sites failed")
        await ack(options=options)

    @app.event(payloads.LISTENED_EVENT)
    async def mentioned(event: dict[str, Any]) -> None:
        try:
            mention = payloads.app_mention(event)
        except PayloadProblem as problem:
            log.warning("an app_mention Slack would not send: %s", problem)
            # No response_url for events: an ephemeral, when user and channel are ids.
            await private(payloads.private_route({"event": event}))(
                could_not_read("mention", problem)
            )
            return
        work = chatops.mention(
            text=mention.text,
            user=mention.user,
            channel=mention.channel,
            ts=mention.ts,
            thread_ts=mention.thread_ts,
        )
        await _safely("a mention", work)

    return app
