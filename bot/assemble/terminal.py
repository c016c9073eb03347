"""The commands that answer in this terminal, each put together from its configuration.

`badgateway diagnose` and `demo` (the diagnosis shown step by step, or as JSON),
`badgateway shell` (the Slack bot against a terminal stand-in of Slack: the same ChatOps,
SlackSink and Block Kit, an in-process carrier, state in memory) and `badgateway status`
(the queue, read from Redis).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import TextIO, cast

from slack_sdk.web.async_client import AsyncWebClient

from bot import storage
from bot.config import BotConfig
from bot.demo import DemoUnavailable, demo_site
from bot.pipeline import InProcessCarrier
from bot.queue.status import show_status
from bot.render.terminal import TerminalReport
from bot.shell import Shell, TerminalSlack
from bot.slack.chatops import ChatOps
from bot.slack.diagnosis_threads import DiagnosisThreads
from bot.slack.root_updates import RootUpdates
from bot.slack.sink import SlackSink
from bot.state import BotState, MemoryStore
from checks.runner import diagnose, prepare
from checks.settings import Settings
from checks.steps import all_steps


async def _diagnose(target: str, settings: Settings, as_json: bool) -> int:
    ctx = await prepare(target, settings)  # BadTarget / TargetRefused before any probe
    if as_json:
        result = await diagnose(ctx, settings)
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    report = TerminalReport()
    report.start(ctx.target.raw, ctx.target.url, list(all_steps()))
    result = await diagnose(ctx, settings, on_step=report.step)
    report.finish(result)
    return 0


def run_diagnose(target: str, settings: Settings, *, as_json: bool) -> int:
    """`badgateway diagnose TARGET`: exit 0 whatever it found."""
    return asyncio.run(_diagnose(target, settings, as_json))


def run_demo(*, as_json: bool = False) -> int:
    """`badgateway demo`: nginx in front of a stopped app on this machine, diagnosed."""
    try:
        with demo_site() as settings:
            if not as_json:
                site = settings.sites[0]
                print(
                    f"Demo: nginx at {site.url} proxies to {site.upstreams[0]}, "
                    "where no app is running.\n"
                )
            return asyncio.run(_diagnose("demo-shop", settings, as_json))
    except DemoUnavailable as exc:
        print(f"badgateway demo: {exc}")
        return 2


def build_shell(settings: Settings, out: TextIO) -> Shell:
    # The person at the terminal runs the bot: Slack's allow-lists do not apply here.
    settings = dataclasses.replace(settings, allowed_channels=(), allowed_users=())
    slack = TerminalSlack(out)
    client = cast(AsyncWebClient, slack)
    state = BotState(MemoryStore())
    sink = SlackSink(client, state, RootUpdates.unpaced(client))
    carrier = InProcessCarrier(settings, sink)
    chatops = ChatOps(
        client, settings, DiagnosisThreads(client, state, carrier, settings, sink=sink)
    )
    return Shell(chatops, carrier, slack, out)


def run_shell(settings: Settings, stdin: TextIO, stdout: TextIO) -> int:
    """`badgateway shell`: until the input ends or the user quits."""
    return asyncio.run(build_shell(settings, stdout).run(stdin))


def run_status(config: BotConfig, *, as_json: bool) -> int:
    """`badgateway status`: the queue's depth, latency and workers."""
    storage.use_prefix(config.redis_prefix)
    return show_status(config, as_json)
