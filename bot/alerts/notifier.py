"""Alert messages to Slack: post a root or a thread note, rewrite a root (chat.update).

What the messages say is bot.alerts.messages; this module only sends them, as one section
block cut to Block Kit's limit, never twice (bot.slack_client.post_once). Posts keep the
posting pace; every rewrite (an alert's root, a storm's table, a cause group's reply) waits its
turn in the workspace's one chat.update budget (bot.slack_client.update_budget), which the
chat's root updates and every other process share: together they stay under Tier 3.
"""

from __future__ import annotations

import uuid
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.render.wording import cut
from badgateway.bot.slack_client import post_once, update

SECTION_LIMIT = 3000  # Block Kit: characters in one section's text


def _blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}]


class SlackNotifier:
    """Posts and updates alert messages through the Slack app's client: retries on 429, 5xx
    and dropped connections, and ``post_once`` so an ambiguous failure never posts twice.
    Make the client with ``bot.slack_client.make_web_client(config)``."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self, channel: str, text: str, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        """Post; returns the message's ts. ``key`` names the message for ``post_once``."""
        message = {"text": text, "blocks": _blocks(text)}
        return await self.post_message(channel, message, thread_ts, key)

    async def post_message(
        self,
        channel: str,
        message: dict[str, Any],
        thread_ts: str | None = None,
        key: str | None = None,
    ) -> str:
        """Post a message already in blocks (a storm's table, a step's reply)."""
        key = key or f"alert:{uuid.uuid4().hex}"
        return await post_once(
            self.client, channel=channel, key=key, message=message, thread_ts=thread_ts
        )

    async def update(self, channel: str, ts: str, text: str) -> None:
        await self.update_message(channel, ts, {"text": text, "blocks": _blocks(text)})

    async def update_message(self, channel: str, ts: str, message: dict[str, Any]) -> None:
        await update(self.client, channel=channel, ts=ts, message=message)
