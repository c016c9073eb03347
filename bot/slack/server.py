"""`badgateway serve`: the Slack app over HTTP (``/slack/events``, ``/healthz``) or, when
``SLACK_APP_TOKEN`` is set, over Socket Mode (no inbound port: teams behind firewalls).

Slash commands, interactivity (buttons) and events all arrive at ``/slack/events``; point the
three URLs of the app manifest there. Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_sdk.errors import SlackApiError

from bot.config import BotConfig
from bot.malformed_http import quiet_malformed_requests
from bot.slack.app import SlackRuntime, build_runtime
from bot.slack.client import slack_error
from bot.slack.inbound import Answered, UnreadableInteraction, read_request
from bot.slack.payloads import private_route
from bot.slack.private import could_not_read
from checks.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
RUNTIME_KEY = web.AppKey("runtime", SlackRuntime)


def build_web_app(runtime: SlackRuntime, *, events: bool = True) -> web.Application:
    """The aiohttp application: Slack's endpoint (unless in Socket Mode) and a health check."""
    quiet_malformed_requests()

    secret = runtime.config.slack_signing_secret or ""

    async def slack_events(request: web.Request) -> web.Response:
        # Authenticated and parsed within limits before Bolt sees it (bot.slack.inbound).
        try:
            bolt_request = await read_request(request, secret)
        except UnreadableInteraction as unreadable:
            log.warning("a button press Slack would not send: %s", unreadable.problem)
            route = private_route(unreadable.payload, stand_in=runtime.config.slack_api_url)
            runtime.replies.later(route, could_not_read("button press", unreadable.problem))
            return web.Response(status=200, text="")
        except Answered as answered:
            log.info("answered %s without Bolt: %d %s", EVENTS_PATH, answered.status, answered)
            return web.Response(status=answered.status, text=answered.reason)
        bolt_response = await runtime.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    web_app = web.Application()
    web_app[RUNTIME_KEY] = runtime
    web_app.router.add_get(HEALTH_PATH, health)
    if events:
        web_app.router.add_post(EVENTS_PATH, slack_events)
    return web_app


async def _check_token(runtime: SlackRuntime) -> str | None:
    """None when Slack accepts the bot token; else the one line to stop with."""
    try:
        await runtime.chatops.bot_user_id()
    except SlackApiError as exc:
        return f"Slack rejected SLACK_BOT_TOKEN ({slack_error(exc) or exc})"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"cannot reach the Slack Web API at {runtime.config.slack_api_url}: {exc}"
    return None


async def _socket_mode_url(runtime: SlackRuntime) -> tuple[str, str | None]:
    """A Socket Mode WebSocket URL from apps.connections.open, or the one line to stop with:
    slack_sdk's client would retry a rejected app token forever, deaf to SIGTERM."""
    try:
        response = await runtime.client.apps_connections_open(
            app_token=str(runtime.config.slack_app_token)
        )
    except SlackApiError as exc:
        return "", f"Slack rejected SLACK_APP_TOKEN ({slack_error(exc) or exc})"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "", f"cannot reach the Slack Web API at {runtime.config.slack_api_url}: {exc}"
    return str(response["url"]), None


async def run(config: BotConfig, settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when no ``stop`` is given)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    runtime = build_runtime(config, settings)
    incidents = _install_alerts(runtime)
    problem = await _check_token(runtime)
    socket_url = ""
    if problem is None and config.socket_mode:
        socket_url, problem = await _socket_mode_url(runtime)
    if problem:
        await runtime.close()
        if incidents is not None:
            await incidents.store.redis.aclose()
        print(f"badgateway: {problem}", file=sys.stderr)
        return 2
    web_app = build_web_app(runtime, events=not config.socket_mode)
    if incidents is not None:
        from bot.alerts.webhooks import add_alert_routes

        add_alert_routes(web_app, config, settings, incidents)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", config.port)
    await site.start()
    socket_handler = None
    try:
        if config.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_handler = AsyncSocketModeHandler(runtime.app, config.slack_app_token)
            socket_handler.client.wss_uri = socket_url  # connect with it, not a second call
            if await _until_connected(socket_handler, stop):
                log.warning("badgateway: connected over Socket Mode; health on :%d", config.port)
        else:
            log.warning("badgateway: listening on :%d%s", config.port, EVENTS_PATH)
        await stop.wait()
    finally:
        if socket_handler is not None:
            await socket_handler.close_async()  # type: ignore[no-untyped-call]
        await runner.cleanup()
        await runtime.close()
        if incidents is not None:
            await incidents.store.redis.aclose()
    return 0


async def _until_connected(handler: Any, stop: asyncio.Event) -> bool:
    """Connect over Socket Mode; False when ``stop`` came first. slack_sdk's client retries
    a failing connection forever, so the wait must end on a stop too."""
    connecting = asyncio.ensure_future(handler.connect_async())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            connecting.result()
            return True
        return False
    finally:
        connecting.cancel()
        stopping.cancel()


def _install_alerts(runtime: SlackRuntime) -> Any:
    """With Redis, `/502 status|mute|unmute` and alert threads' buttons reach the alerting
    side (bot.alerts), and the alert webhooks are mounted on the same server. Without Redis
    there are no alerts (incidents must outlive the process)."""
    if not runtime.config.redis_url:
        return None
    from bot.alerts.runtime import build_incidents
    from bot.alerts.slack_commands import AlertCommands

    incidents = build_incidents(runtime.config, runtime.settings, runtime.carrier)
    runtime.chatops.alerts = AlertCommands(incidents, runtime.state)
    return incidents


def serve(config: BotConfig, settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    logging.getLogger("bot").setLevel(logging.INFO)
    return asyncio.run(run(config, settings))
