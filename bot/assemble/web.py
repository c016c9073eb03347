"""`badgateway serve`: the web process, put together from the configuration.

The Slack app (Bolt, over HTTP or Socket Mode), the diagnosis carrier (in-process tasks, or
the Redis queue when ``REDIS_URL`` is set) and the state. With Redis, the alerting side joins
in: its threads and `/502 mute|unmute|status` reach the Slack app through bot.threads, and
the alert webhooks are mounted on the same server. Without Redis there are no alerts
(incidents must outlive the process). Stops cleanly on SIGTERM/SIGINT.

`/readyz` fails while Slack rejects the bot token (bot.slack.slack_auth: checked at start and
every minute, not per probe). With Redis the process also says when it cannot work
(bot.queue.health): `/readyz` fails while Redis is out of reach or no worker heartbeats,
`/502` answers one private line instead of starting what it cannot finish, and a root whose
diagnosis no worker takes says so (bot.slack.waiting; an alert's root through
bot.alerts.incidents). Its clients reconnect by themselves once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import metrics, storage
from badgateway.bot.alerts.chat import AlertChat
from badgateway.bot.alerts.events import add_event_routes
from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.store import OPEN
from badgateway.bot.alerts.webhooks import add_alert_routes
from badgateway.bot.assemble.alerts import build_incidents
from badgateway.bot.config import BotConfig
from badgateway.bot.history_store import (
    HistoryKeeper,
    HistoryStore,
    MemoryHistory,
    close_store,
    redis_history,
)
from badgateway.bot.pipeline import (
    Carrier,
    DiagnosisRequest,
    HistorySink,
    InProcessCarrier,
    ResultSink,
)
from badgateway.bot.queue import worker_metrics
from badgateway.bot.queue.carrier import QueueCarrier, Unclaimed
from badgateway.bot.queue.health import QueueHealth
from badgateway.bot.slack.app import build_app
from badgateway.bot.slack.chatops import ChatOps
from badgateway.bot.slack.diagnosis_threads import DiagnosisThreads
from badgateway.bot.slack.history import history_command
from badgateway.bot.slack.private import PrivateReplies
from badgateway.bot.slack.server import (
    EVENTS_PATH,
    build_web_app,
    check_token,
    socket_mode_handler,
    socket_mode_url,
    until_connected,
)
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack.slack_auth import SlackAuthWatch
from badgateway.bot.slack.waiting import WaitingRoots
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, RedisStore, StateStore, open_store
from badgateway.bot.threads import CommandHandler, ThreadKind, ThreadLinks
from badgateway.checks.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_HOST = "0.0.0.0"  # every IPv4 address: what `serve` has always bound
ROOTS_SETTLE_S = 30.0  # how long a stopping web process waits for its roots' last updates


@dataclass
class WebProcess:
    """Everything `badgateway serve` runs, built once and closed once."""

    config: BotConfig
    settings: Settings
    client: AsyncWebClient
    state: BotState
    carrier: Carrier
    chatops: ChatOps
    app: AsyncApp
    replies: PrivateReplies
    incidents: Incidents | None = None
    health: QueueHealth | None = None  # with Redis: is it there, is a worker taking jobs
    history: HistoryStore | None = None  # where POST /events keeps markers
    slack_auth: SlackAuthWatch | None = None  # does Slack still accept the token

    async def not_ready(self) -> str | None:
        """`/readyz`: None when the bot can work now; else why not, in one line."""
        problem = self.slack_auth.problem() if self.slack_auth is not None else None
        if problem is None and self.health is not None:
            problem = await self.health.not_ready()
        return problem

    async def metrics_snapshot(self) -> metrics.Snapshot:
        """For `/metrics`, besides this process's own: the workers' and the install's."""
        snapshot = metrics.Snapshot()
        if self.health is not None:
            await worker_metrics.read(self.health.redis, snapshot)
        if self.incidents is not None:
            try:
                async with asyncio.timeout(worker_metrics.READ_TIMEOUT_S):
                    active = await self.incidents.store.active()
                snapshot.open_incidents = sum(1 for i in active if i.state == OPEN)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("/metrics without the open incidents: %s", exc)
        return snapshot

    def web_app(self) -> web.Application:
        """The aiohttp application: Slack's endpoint (unless Socket Mode), health, webhooks,
        `/metrics`; with the queue, it looks for diagnoses no worker takes while it serves."""
        served = build_web_app(
            self.config,
            self.app,
            self.replies,
            events=not self.config.socket_mode,
            ready=self.not_ready,
        )
        if self.slack_auth is not None:
            slack_auth = self.slack_auth

            async def watch_token(_: web.Application) -> None:
                slack_auth.start()

            async def stop_watching(_: web.Application) -> None:
                await slack_auth.close()

            served.on_startup.append(watch_token)
            served.on_cleanup.append(stop_watching)
        if isinstance(self.carrier, QueueCarrier):
            carrier = self.carrier

            async def watch(_: web.Application) -> None:
                carrier.watch()

            served.on_startup.append(watch)
        if self.incidents is not None:
            add_alert_routes(served, self.config, self.settings, self.incidents)
        if self.history is not None:
            add_event_routes(served, self.config, self.settings, self.history)
        metrics.add_metrics_route(served, self.metrics_snapshot)
        return served

    async def close(self) -> None:
        await self.carrier.close()
        await self.chatops.diagnoses.sink.roots.settle(ROOTS_SETTLE_S)  # the last root updates
        await self.chatops.diagnoses.sink.roots.close()
        await self.state.store.close()
        if self.incidents is not None:
            await self.incidents.close()
        if self.health is not None:
            await self.health.close()
        await close_store(self.history)


def build_carrier(
    config: BotConfig,
    settings: Settings,
    sink: ResultSink,
    on_unclaimed: Unclaimed | None = None,
    history: HistoryStore | None = None,
) -> Carrier:
    """The queue (``REDIS_URL`` set) or in-process asyncio tasks (unset). With the queue the
    workers post with their own sink (bot.assemble.worker), sharing the state through Redis,
    and a diagnosis no worker takes in time goes to ``on_unclaimed``."""
    if config.redis_url:
        return QueueCarrier(config, settings, on_unclaimed=on_unclaimed)
    # Without Redis the history of each target lives as long as this process.
    keeper = HistoryKeeper(history or MemoryHistory(config.history))
    return InProcessCarrier(settings, HistorySink(sink, keeper))


def build_web(
    config: BotConfig,
    settings: Settings,
    *,
    store: StateStore | None = None,
    other_threads: Sequence[ThreadKind] = (),
    commands: Mapping[str, CommandHandler] | None = None,
    links: Sequence[ThreadLinks] = (),
) -> WebProcess:
    """``other_threads``, ``commands`` and ``links``: kinds of thread, `/502` words and open
    threads a `/502` root links to, besides the alerting side's (tests stand in for it)."""
    storage.use_prefix(config.redis_prefix)  # before anything builds a key
    state = BotState(store or open_store(config.redis_url))
    # In Redis, the posting pace is one for this process and the workers (bot.shared_pace).
    shared = state.store.redis if isinstance(state.store, RedisStore) else None
    client = make_web_client(config, shared)
    waiting = WaitingRoots(client, state)
    sink = SlackSink(client, state)
    incidents: Incidents | None = None

    async def unclaimed(request: DiagnosisRequest, since: float) -> None:
        """A diagnosis no worker took: its `/502` roots say so, and its alert's root."""
        await waiting.show(request, since)
        incident_id = request.origin.get("incident")
        if incidents is not None and incident_id:
            await incidents.waiting_for_worker(str(incident_id), request.id, since)

    # Markers (POST /events) go where the diagnoses' history is: Redis, else this process.
    history: HistoryStore = (
        redis_history(config.redis_url, config.history)
        if config.redis_url
        else MemoryHistory(config.history)
    )
    carrier = build_carrier(config, settings, sink, unclaimed, history)
    kinds, words, linked = list(other_threads), dict(commands or {}), list(links)
    words.setdefault("history", history_command(settings, history))
    health = QueueHealth(config.redis_url) if config.redis_url else None
    if config.redis_url:
        incidents = build_incidents(config, settings, carrier, state=state, show_run=sink.show)
        alert_chat = AlertChat(incidents, state, client, carrier)
        kinds.append(alert_chat)
        words.update(alert_chat.commands())
        linked.append(alert_chat)
    diagnoses = DiagnosisThreads(
        client,
        state,
        carrier,
        settings,
        sink=sink,
        links=linked,
        share_window_s=config.share_window_s,
    )
    chatops = ChatOps(
        client,
        settings,
        diagnoses,
        other_threads=kinds,
        commands=words,
        unavailable=health.unreachable if health is not None else None,
    )
    replies = PrivateReplies(client)
    app = build_app(config, chatops, state, client, replies)
    return WebProcess(
        config,
        settings,
        client,
        state,
        carrier,
        chatops,
        app,
        replies,
        incidents,
        health,
        history,
        SlackAuthWatch(client),
    )


async def run(
    config: BotConfig,
    settings: Settings,
    stop: asyncio.Event | None = None,
    host: str = DEFAULT_HOST,
) -> int:
    """Serve on ``host`` until ``stop`` is set (or SIGTERM/SIGINT when no ``stop`` is given)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    process = build_web(config, settings)
    problem = await check_token(process.chatops, config)
    if problem is None and process.slack_auth is not None:
        process.slack_auth.accepted_at_start()
    socket_url = ""
    if problem is None and config.socket_mode:
        socket_url, problem = await socket_mode_url(process.client, config)
    if problem:
        await process.close()
        print(f"badgateway: {problem}", file=sys.stderr)
        return 2
    runner = web.AppRunner(process.web_app())
    await runner.setup()
    site = web.TCPSite(runner, host, config.port)
    try:
        await site.start()
    except OSError as exc:  # the address is not this machine's, or the port is taken
        await runner.cleanup()
        await process.close()
        print(f"badgateway: cannot listen on {host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return 2
    socket_handler = None
    try:
        if config.socket_mode:
            socket_handler = socket_mode_handler(process.app, config, socket_url)
            if await until_connected(socket_handler, stop):
                log.warning(
                    "badgateway: connected over Socket Mode; health on %s:%d", host, config.port
                )
        else:
            log.warning("badgateway: listening on %s:%d%s", host, config.port, EVENTS_PATH)
        await stop.wait()
    finally:
        if socket_handler is not None:
            await socket_handler.close_async()  # type: ignore[no-untyped-call]
        await runner.cleanup()
        await process.close()
    return 0


def serve(config: BotConfig, settings: Settings, host: str = DEFAULT_HOST) -> int:
    """Listen on ``host`` until SIGTERM/SIGINT; returns the process exit code."""
    logging.getLogger("badgateway.bot").setLevel(logging.INFO)
    return asyncio.run(run(config, settings, host=host))
