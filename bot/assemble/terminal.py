"""The commands that answer in this terminal, each put together from its configuration.

`badgateway diagnose` and `demo` (the diagnosis shown step by step, or as JSON; with
``--from PLACES``, through the queue: from those vantages and from here, bot.queue.asker),
`badgateway mark` (a deploy or change marker in a site's history), `badgateway shell` (the
Slack bot against a terminal stand-in of Slack: the same ChatOps, SlackSink and Block Kit,
an in-process carrier, state in memory) and `badgateway status` (the queue, from Redis).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar, cast

from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import storage
from badgateway.bot.config import BotConfig, HistoryRetention
from badgateway.bot.demo import DemoUnavailable, demo_site
from badgateway.bot.history_store import (
    FileHistory,
    HistoryKeeper,
    HistoryStore,
    MemoryHistory,
    close_store,
    marked_site,
    redis_history,
    timeline_of,
)
from badgateway.bot.pipeline import DiagnosisRequest, HistorySink, InProcessCarrier, combine
from badgateway.bot.queue.asker import NotAnswered, ask_through_queue
from badgateway.bot.queue.places import HERE
from badgateway.bot.queue.status import show_status
from badgateway.bot.render.history import history_text
from badgateway.bot.render.terminal import TerminalReport
from badgateway.bot.shell import Shell, TerminalSlack
from badgateway.bot.slack.chatops import ChatOps
from badgateway.bot.slack.diagnosis_threads import DiagnosisThreads
from badgateway.bot.slack.history import MAX_HOURS
from badgateway.bot.slack.root_updates import RootUpdates
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.state import BotState, MemoryStore
from badgateway.checks.markers import MarkerError, checked
from badgateway.checks.runner import diagnose, prepare
from badgateway.checks.settings import Settings, one_line
from badgateway.checks.steps import all_steps


async def _diagnose(
    target: str, settings: Settings, as_json: bool, history: HistoryKeeper | None = None
) -> int:
    ctx = await prepare(target, settings)  # BadTarget / TargetRefused before any probe
    report = None if as_json else TerminalReport()
    if report is not None:
        report.start(ctx.target.raw, ctx.target.url, list(all_steps()))
    result = await diagnose(ctx, settings, on_step=report.step if report else None)
    if history is not None:  # each run from a shell is a run of its own
        result = await history.compare_and_keep(result, uuid.uuid4().hex)
    if report is None:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        report.finish(result)
    return 0


async def _diagnose_from(
    config: BotConfig, settings: Settings, target: str, places: list[str], as_json: bool
) -> int:
    ctx = await prepare(target, settings, places)  # BadTarget, UnknownPlace, TargetRefused
    # The asker's own view is a place too: every vantage reaching the site while this
    # terminal cannot says the trouble is on this side (client_side).
    ctx.places = (*ctx.places, HERE)
    request = DiagnosisRequest.new(ctx, origin={"kind": "terminal", "places": list(places)})
    report = None if as_json else TerminalReport()
    if report is not None:
        report.start(ctx.target.raw, ctx.target.url, list(all_steps()))
    try:
        results = await ask_through_queue(
            config, settings, request, report.step if report else None
        )
    except NotAnswered as exc:
        if report is not None:
            print()  # off the progress line (its spinner ends with the run)
        print(f"badgateway: {one_line(str(exc))}", file=sys.stderr)
        return 1
    # The verdict as a worker concludes it, compared with the site's history in Redis as the
    # worker compares it (the run is kept once, by whichever of the two comes first).
    history = HistoryKeeper(redis_history(str(config.redis_url), config.history))
    try:
        result = await history.compare_and_keep(combine(request, results, settings), request.id)
    finally:
        await history.aclose()
    if report is None:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        report.finish(result)
    return 0


def run_diagnose_from(
    config: BotConfig, settings: Settings, target: str, places: list[str], *, as_json: bool
) -> int:
    """`badgateway diagnose TARGET --from PLACES` (needs ``config.redis_url``): 0 whatever it
    found, 1 when the workers did not answer. Raises BadTarget (UnknownPlace),
    TargetRefused, RedisUnreachable."""
    storage.use_prefix(config.redis_prefix)
    return asyncio.run(_diagnose_from(config, settings, target, places, as_json))


DEFAULT_RETENTION = HistoryRetention()  # tests and callers without a configuration


def _state_warning(message: str) -> None:
    print(f"badgateway: warning: {one_line(message)}", file=sys.stderr)


def run_diagnose(
    target: str,
    settings: Settings,
    *,
    as_json: bool,
    state: Path | None = None,
    retention: HistoryRetention = DEFAULT_RETENTION,
) -> int:
    """`badgateway diagnose TARGET`: exit 0 whatever it found. ``state``: the file whose
    earlier runs this one is compared with, and kept in (None: neither)."""
    history = None
    if state is not None:
        store = FileHistory(state, retention, warn=_state_warning)
        history = HistoryKeeper(store)
    return asyncio.run(_diagnose(target, settings, as_json, history))


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


def build_shell(
    settings: Settings, out: TextIO, retention: HistoryRetention = DEFAULT_RETENTION
) -> Shell:
    # The person at the terminal runs the bot: Slack's allow-lists do not apply here.
    settings = dataclasses.replace(settings, allowed_channels=(), allowed_users=())
    slack = TerminalSlack(out)
    client = cast(AsyncWebClient, slack)
    state = BotState(MemoryStore())
    sink = SlackSink(client, state, RootUpdates.unpaced(client))
    history = HistoryKeeper(MemoryHistory(retention))
    carrier = InProcessCarrier(settings, HistorySink(sink, history))
    chatops = ChatOps(
        client, settings, DiagnosisThreads(client, state, carrier, settings, sink=sink)
    )
    return Shell(chatops, carrier, slack, out)


def run_shell(
    settings: Settings,
    stdin: TextIO,
    stdout: TextIO,
    retention: HistoryRetention = DEFAULT_RETENTION,
) -> int:
    """`badgateway shell`: until the input ends or the user quits."""
    return asyncio.run(build_shell(settings, stdout, retention).run(stdin))


def _history_store(config: BotConfig, state: Path) -> HistoryStore:
    """Where the bot's processes keep the history (Redis), else `diagnose`'s state file."""
    if config.redis_url:
        storage.use_prefix(config.redis_prefix)
        return redis_history(config.redis_url, config.history)
    return FileHistory(state, config.history, warn=_state_warning)


def _site_named(given: str, settings: Settings) -> str:
    found = marked_site(given, settings)
    if found is None:
        raise MarkerError(f"unknown site {given[:100]!r}: not in the sites file")
    return found.name


T = TypeVar("T")


async def _closed(store: HistoryStore, work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await close_store(store)


def run_mark(
    config: BotConfig,
    settings: Settings,
    site: str,
    text: str,
    *,
    by: str,
    kind: str,
    state: Path,
) -> int:
    """`badgateway mark SITE TEXT`: a marker in the site's history, kept in Redis when
    REDIS_URL is set (where the bot's processes find it), else in ``state`` (where
    `badgateway diagnose` does). Raises MarkerError for an unknown site or a bad marker."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    marker = checked(_site_named(site, settings), text, at, by=by, kind=kind)
    store = _history_store(config, state)
    asyncio.run(_closed(store, store.mark(marker)))
    where = "Redis" if config.redis_url else str(state)
    print(f"marked {marker.target}: {marker.line(marker.at)} (kept in {where})")
    return 0


def run_history(
    config: BotConfig,
    settings: Settings,
    site: str,
    *,
    hours: float,
    as_json: bool,
    state: Path,
) -> int:
    """`badgateway history SITE`: its last ``hours`` from Redis (REDIS_URL) or ``state``."""
    if not 0 < hours <= MAX_HOURS:
        raise MarkerError(f"--hours must be above 0 and at most {MAX_HOURS:g}, got {hours:g}")
    name = _site_named(site, settings)
    store = _history_store(config, state)
    shown = asyncio.run(_closed(store, timeline_of(store, name, hours)))
    if as_json:
        print(json.dumps(shown.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(history_text(shown))
    return 0


def run_status(config: BotConfig, *, as_json: bool) -> int:
    """`badgateway status`: the queue's depth, latency and workers."""
    storage.use_prefix(config.redis_prefix)
    return show_status(config, as_json)
