"""ChatOps' command words: every one is in `/502 help` and in the Slack manifest, and the ones
that need Redis say so where the bot runs without it instead of being read as a target."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from badgateway.bot.assemble.web import build_web
from badgateway.bot.config import BotConfig
from badgateway.bot.render import chat_text
from badgateway.checks.settings import Settings, Site
from tests.lab import REPO
from tests.lab.fixtures_slack import BotUnderTest, SlackStandIn
from tests.lab.process import free_port

BUILT_IN_WORDS = ("help", "sites", "status")  # answered by ChatOps itself
HISTORY_WORDS = ("history",)  # added by the web process's assembly, with or without Redis


async def _command_words(slack_api: SlackStandIn) -> set[str]:
    """The `/502` words the web process routes when it has Redis (the alerting side's too)."""
    config = BotConfig(
        slack_bot_token="xoxb-words",
        slack_signing_secret="secret",
        slack_api_url=slack_api.base_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # built, never connected to
    )
    process = build_web(config, Settings())
    try:
        return {*BUILT_IN_WORDS, *process.chatops.commands}
    finally:
        await process.close()


async def test_help_and_the_manifest_list_every_command(slack_api: SlackStandIn) -> None:
    words = await _command_words(slack_api)
    assert {*chat_text.REDIS_COMMANDS, *HISTORY_WORDS} == words - set(BUILT_IN_WORDS)
    help_text = chat_text.help_text()
    manifest = (REPO / "deploy" / "slack-manifest.yaml").read_text(encoding="utf-8")
    hint = re.search(r'usage_hint: "([^"]*)"', manifest)
    assert hint is not None
    listed = {part.split()[0] for part in hint.group(1).split(" | ")}
    for word in sorted(words):
        assert f"`/502 {word}" in help_text, word
        assert word in listed, word


async def test_mute_and_unmute_without_redis_say_they_need_it(
    slack_bot: Callable[..., Any],
) -> None:
    shop = Site(name="shop", url="https://shop.example.com/")
    bot: BotUnderTest = await slack_bot(Settings(sites=(shop,)))
    for text in ("mute shop 1h", "unmute shop", "MUTE shop"):
        answer = (await bot.command(text)).json()
        assert answer["response_type"] == "ephemeral"
        assert "needs Redis" in answer["text"] and "REDIS_URL" in answer["text"], answer
        assert "target" not in answer["text"]
    assert not bot.slack.calls_of("chat.postMessage")
