"""Replies only the asker sees, sent after Slack was acknowledged, that never raise.

Through the payload's ``response_url`` when it has a valid one (bot.slack.payloads checked
it), else chat.postEphemeral to the user in the channel. A reply that fails is one log line:
it runs after the acknowledgement, where an exception would make Bolt replace the answer.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from badgateway.bot.slack.payloads import PrivateRoute
from badgateway.bot.slack_client import slack_error
from badgateway.bot.threads import Reply

log = logging.getLogger(__name__)

TIMEOUT_S = 10


def could_not_read(what: str, problem: object) -> str:
    """The private answer to a payload Slack would not send: which field was wrong."""
    return f"⚠️ badgateway could not read this {what}: {problem}."


class PrivateReplies:
    """Makes a ``Reply`` for a payload's route, or sends one in the background."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._background: set[asyncio.Task[None]] = set()

    def to(self, route: PrivateRoute) -> Reply:
        async def reply(text: str) -> None:
            try:
                await self._send(route, text)
            except (SlackApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("could not send a private reply: %s", slack_error(exc) or exc)

        return reply

    def later(self, route: PrivateRoute, text: str) -> None:
        """Send once the current answer has gone (the task is kept until it is done)."""
        task = asyncio.ensure_future(self.to(route)(text))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, route: PrivateRoute, text: str) -> None:
        if route.response_url:
            hook = AsyncWebhookClient(route.response_url, timeout=TIMEOUT_S)
            sent = await hook.send(text=text, response_type="ephemeral", replace_original=False)
            if sent.status_code != 200:
                log.warning("response_url answered %d to a private reply", sent.status_code)
        elif route.user and route.channel:
            await self.client.chat_postEphemeral(channel=route.channel, user=route.user, text=text)
        else:
            log.warning("a private reply had nowhere to go (no valid response_url, user, channel)")
