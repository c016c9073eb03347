"""The Slack app's HTTP side: ``/slack/events``, ``/healthz`` and ``/readyz`` on aiohttp, or,
when ``SLACK_APP_TOKEN`` is set, Socket Mode (no inbound port: teams behind firewalls).

``/healthz`` answers 200 while the process is alive. ``/readyz`` answers 200 when the bot can
do work now and 503 with the reason in one line of JSON when it cannot (in queue mode: Redis
out of reach, or no worker heartbeating); what "ready" means is the ``ready`` callable the
assembly gives (bot.assemble.web).

Slash commands, interactivity (buttons) and events all arrive at ``/slack/events``; point the
three URLs of the app manifest there. The web process is put together, started and stopped by
bot.assemble.web; this module holds the pieces that speak to Slack while it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.config import BotConfig
from badgateway.bot.malformed_http import quiet_malformed_requests
from badgateway.bot.slack.chatops import ChatOps
from badgateway.bot.slack.inbound import Answered, UnreadableInteraction, read_request
from badgateway.bot.slack.payloads import private_route
from badgateway.bot.slack.private import PrivateReplies, could_not_read
from badgateway.bot.slack_client import slack_error

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

Readiness = Callable[[], Awaitable[str | None]]  # None: ready; else why not, in one line


def build_web_app(
    config: BotConfig,
    app: AsyncApp,
    replies: PrivateReplies,
    *,
    events: bool = True,
    ready: Readiness | None = None,
) -> web.Application:
    """The aiohttp application: Slack's endpoint (unless in Socket Mode), liveness and
    readiness (always ready when no ``ready`` is given: the process does the work itself)."""
    quiet_malformed_requests()

    secret = config.slack_signing_secret or ""

    async def slack_events(request: web.Request) -> web.Response:
        # Authenticated and parsed within limits before Bolt sees it (bot.slack.inbound).
        try:
            bolt_request = await read_request(request, secret)
        except UnreadableInteraction as unreadable:
            log.warning("a button press Slack would not send: %s", unreadable.problem)
            route = private_route(unreadable.payload, stand_in=config.slack_api_url)
            replies.later(route, could_not_read("button press", unreadable.problem))
            return web.Response(status=200, text="")
        except Answered as answered:
            log.info("answered %s without Bolt: %d %s", EVENTS_PATH, answered.status, answered)
            return web.Response(status=answered.status, text=answered.reason)
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readiness(_request: web.Request) -> web.Response:
        problem = await ready() if ready is not None else None
        if problem:
            return web.json_response({"ok": False, "reason": problem}, status=503)
        return web.json_response({"ok": True})

    web_app = web.Application()
    web_app.router.add_get(HEALTH_PATH, health)
    web_app.router.add_get(READY_PATH, readiness)
    if events:
        web_app.router.add_post(EVENTS_PATH, slack_events)
    return web_app


async def check_token(chatops: ChatOps, config: BotConfig) -> str | None:
    """None when Slack accepts the bot token; else the one line to stop with."""
    try:
        await chatops.bot_user_id()
    except SlackApiError as exc:
        return f"Slack rejected SLACK_BOT_TOKEN ({slack_error(exc) or exc})"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"cannot reach the Slack Web API at {config.slack_api_url}: {exc}"
    return None


async def socket_mode_url(client: AsyncWebClient, config: BotConfig) -> tuple[str, str | None]:
    """A Socket Mode WebSocket URL from apps.connections.open, or the one line to stop with:
    slack_sdk's client would retry a rejected app token forever, deaf to SIGTERM."""
    try:
        response = await client.apps_connections_open(app_token=str(config.slack_app_token))
    except SlackApiError as exc:
        return "", f"Slack rejected SLACK_APP_TOKEN ({slack_error(exc) or exc})"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "", f"cannot reach the Slack Web API at {config.slack_api_url}: {exc}"
    return str(response["url"]), None


def socket_mode_handler(app: AsyncApp, config: BotConfig, url: str) -> AsyncSocketModeHandler:
    handler = AsyncSocketModeHandler(app, config.slack_app_token)
    handler.client.wss_uri = url  # connect with the URL already asked for, not a second call
    return handler


async def until_connected(handler: AsyncSocketModeHandler, stop: asyncio.Event) -> bool:
    """Connect over Socket Mode; False when ``stop`` came first. slack_sdk's client retries
    a failing connection forever, so the wait must end on a stop too."""
    connecting = asyncio.ensure_future(handler.connect_async())  # type: ignore[no-untyped-call]
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
