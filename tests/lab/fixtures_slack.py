"""A local stand-in of the Slack Web API, and requests signed exactly as Slack signs them.

``SlackStandIn`` is a real aiohttp server on a loopback port. It records every call (method,
parameters, headers) and answers the methods the bot uses as Slack does: auth.test,
chat.postMessage/update/postEphemeral/getPermalink, conversations.info/history/replies (with
message metadata) and conversations.open (a direct message: channel ``D`` + the user id's
rest), usergroups.users.list, and ``response_url`` posts. With ``limits=SlackLimits()`` it
enforces Slack's documented rate limits (tests/lab/slack_limits.py). Failures are scriptable:
``fail("chat.postMessage", status=429, times=3, retry_after=0)``, a 500 that posted anyway
(``posted_anyway=True``, as Slack sometimes does), or an error code per channel
(``channel_errors["G1"] = "channel_not_found"``).

``SlackSigner`` builds slash-command, block_actions, event and url_verification bodies like
Slack's and signs them (v0 HMAC-SHA256 over ``v0:{timestamp}:{body}``).

Socket Mode: ``apps.connections.open`` (with an ``xapp-`` app-level token) answers a
``ws://127.0.0.1:PORT/link/?ticket=…`` URL, and ``SlackStandIn.socket`` (``SocketModeLink``) is
the WebSocket server behind it, speaking Slack's protocol as slack_sdk's clients expect it: a
``hello`` on connect, envelopes pushed to the app (``push``: ``{"envelope_id", "type":
"slash_commands" | "interactive" | "events_api", "payload", "accepts_response_payload"}``,
the payload being what HTTP mode would POST, e.g. ``socket_payload(signer.slash_command(…))``),
the app's acks (``{"envelope_id", "payload"?}``) recorded, and ``disconnect`` to make the app
reconnect as Slack asks it to every few hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest_asyncio
from aiohttp import WSMsgType, web

from tests.lab.process import serve_app
from tests.lab.slack_limits import SlackLimits

BOT_USER_ID = "UBGWBOT01"
BOT_ID = "BBGWBOT01"
TEAM_ID = "T0BGW0001"
APP_ID = "A0BGW0001"
SOCKET_PATH = "/link/"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int
    at: float


@dataclass
class Failure:
    method: str
    status: int
    times: int
    retry_after: int | None = None
    posted_anyway: bool = False


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    updates: int = 0
    user: str = BOT_USER_ID


@dataclass
class Envelope:
    """One envelope pushed to the app over Socket Mode, and the app's ack once it came."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    pushed_at: float
    ack: dict[str, Any] | None = None
    acked_at: float | None = None

    @property
    def ack_payload(self) -> dict[str, Any] | None:
        """What the app answered with (an ephemeral text for a slash command), if anything."""
        return None if self.ack is None else self.ack.get("payload")


@dataclass
class SocketModeLink:
    """Slack's Socket Mode WebSocket server, served by the Web API stand-in's aiohttp app.

    A connection needs a ticket that ``apps.connections.open`` handed out (each once). The
    server sends ``hello`` first, answers WebSocket pings (slack_sdk pings to detect stale
    connections), records every text frame the app sends and matches acks to envelopes."""

    tickets: dict[str, str] = field(default_factory=dict)  # ticket -> app token it was for
    connections: list[web.WebSocketResponse] = field(default_factory=list)  # open ones
    connects: int = 0  # connections accepted so far
    refused: int = 0  # connection attempts refused (no valid ticket, or not accepting)
    accepting: bool = True  # False: every connection attempt gets a 503 (Slack is down)
    received: list[dict[str, Any]] = field(default_factory=list)  # every frame from the app
    envelopes: list[Envelope] = field(default_factory=list)

    def issue_ticket(self, app_token: str) -> str:
        ticket = uuid.uuid4().hex
        self.tickets[ticket] = app_token
        return ticket

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self.connections)

    async def wait_connected(self, within_s: float = 10.0, connects: int = 1) -> None:
        """Until ``connects`` connections have been accepted and one is open."""
        deadline = time.monotonic() + within_s
        while not (self.connects >= connects and self.connected):
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not connect over Socket Mode ({connects})")
            await asyncio.sleep(0.02)

    async def push(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str = "",
    ) -> Envelope:
        """Send an envelope to the app on the newest open connection, as Slack does."""
        ws = next((w for w in reversed(self.connections) if not w.closed), None)
        if ws is None:
            raise AssertionError("no Socket Mode connection to push to")
        envelope = Envelope(uuid.uuid4().hex, type_, payload, time.monotonic())
        message: dict[str, Any] = {
            "envelope_id": envelope.envelope_id,
            "payload": payload,
            "type": type_,
            # Slack lets the ack carry a response for slash commands (and some interactions).
            "accepts_response_payload": (
                type_ == "slash_commands"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        }
        if type_ == "events_api":
            message["retry_attempt"] = retry_attempt or 0
            message["retry_reason"] = retry_reason
        self.envelopes.append(envelope)
        await ws.send_str(json.dumps(message))
        return envelope

    async def acked(self, envelope: Envelope, within_s: float = 3.0) -> dict[str, Any]:
        """The app's ack of ``envelope`` (Slack waits 3 s for it, then retries elsewhere)."""
        deadline = time.monotonic() + within_s
        while envelope.ack is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"envelope {envelope.type} not acked within {within_s} s")
            await asyncio.sleep(0.01)
        return envelope.ack

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's notice that it will close this connection: the app opens a new one."""
        for ws in [w for w in self.connections if not w.closed]:
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "stand-in"}}
            await ws.send_str(json.dumps(message))

    async def close(self) -> None:
        for ws in list(self.connections):
            await ws.close()

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)  # pongs echo the ping's data, as Slack's do
        ticket = request.query.get("ticket", "")
        if self.tickets.pop(ticket, None) is None:
            self.refused += 1
            raise web.HTTPUnauthorized(text="invalid ticket")
        if not self.accepting:
            self.refused += 1
            raise web.HTTPServiceUnavailable(text="try again later")
        await ws.prepare(request)
        self.connections.append(ws)
        self.connects += 1
        hello = {
            "type": "hello",
            "num_connections": len([w for w in self.connections if not w.closed]),
            "debug_info": {
                "host": "applink-stand-in",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        }
        await ws.send_str(json.dumps(hello))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                self.received.append(data)
                envelope = next(
                    (e for e in self.envelopes if e.envelope_id == data.get("envelope_id")), None
                )
                if envelope is not None and envelope.ack is None:
                    envelope.ack, envelope.acked_at = data, time.monotonic()
        finally:
            self.connections.remove(ws)
        return ws


@dataclass
class SlackStandIn:
    """The Slack Web API on 127.0.0.1, in the test's event loop."""

    calls: list[Call] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response_url
    failures: list[Failure] = field(default_factory=list)
    channel_errors: dict[str, str] = field(default_factory=dict)
    channel_names: dict[str, str] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    revoked_tokens: set[str] = field(default_factory=set)
    limits: SlackLimits | None = None  # Slack's rate limits, enforced when a test sets them
    socket: SocketModeLink = field(default_factory=SocketModeLink)
    port: int = 0
    _runner: web.AppRunner | None = None
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/response/{uuid.uuid4().hex}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{token}", self._response)
        app.router.add_get(SOCKET_PATH, self.socket.serve)
        self._runner, self.port = await serve_app(app)

    async def stop(self) -> None:
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # Scripting ---------------------------------------------------------------------------
    def fail(
        self,
        method: str,
        *,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        posted_anyway: bool = False,
    ) -> None:
        self.failures.append(Failure(method, status, times, retry_after, posted_anyway))

    # Queries -------------------------------------------------------------------------------
    def calls_of(self, method: str, *, ok_only: bool = False) -> list[Call]:
        return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def roots(self, channel: str | None = None) -> list[Message]:
        return [
            m
            for m in self.messages
            if m.thread_ts is None and (channel is None or m.channel == channel)
        ]

    def thread(self, root_ts: str) -> list[Message]:
        return [m for m in self.messages if m.thread_ts == root_ts]

    def message(self, ts: str) -> Message:
        return next(m for m in self.messages if m.ts == ts)

    async def wait_for(
        self, condition: Callable[[], object], within_s: float = 15.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + within_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}")
            await asyncio.sleep(0.02)

    # Server side ---------------------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        for key in ("blocks", "metadata"):  # form posts carry these as JSON text
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append({"url": str(request.url), **body})
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        failure = next((f for f in self.failures if f.method == method and f.times > 0), None)
        now = time.monotonic()
        if failure is None and self.limits is not None:
            call = json.dumps([method, params], sort_keys=True, default=str)
            retry_after = self.limits.admit(method, str(params.get("channel", "")), now, call)
            if retry_after is not None:
                failure = Failure(method, 429, 1, retry_after)
        status = failure.status if failure else 200
        self.calls.append(Call(method, params, dict(request.headers), status, now))
        if failure is not None:
            failure.times -= 1
            if failure.posted_anyway:
                self._answer(method, params)  # Slack did the work, then failed to say so
            if failure.status == 429:
                headers = {"Retry-After": str(failure.retry_after or 0)}
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers=headers
                )
            return web.Response(status=failure.status, text="upstream error")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if method == "apps.connections.open":  # the one method an app-level token calls
            return web.json_response(self._open_connection(token))
        if not token.startswith("xoxb-"):
            return web.json_response({"ok": False, "error": "not_authed"})
        if token in self.revoked_tokens:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response(self._answer(method, params))

    def _open_connection(self, token: str) -> dict[str, Any]:
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if token in self.revoked_tokens:
            return {"ok": False, "error": "invalid_auth"}
        ticket = self.socket.issue_ticket(token)
        url = f"ws://127.0.0.1:{self.port}{SOCKET_PATH}?ticket={ticket}&app_id={APP_ID}"
        return {"ok": True, "url": url}

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel", ""))
        if channel in self.channel_errors and method.startswith(("chat.", "conversations.")):
            return {"ok": False, "error": self.channel_errors[channel]}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://badgateway-test.slack.com/",
                "team": "badgateway test",
                "user": "badgateway",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            message = Message(
                channel=channel,
                ts=self._next_ts(),
                text=str(p.get("text") or ""),
                blocks=list(p.get("blocks") or []),
                thread_ts=p.get("thread_ts") or None,
                metadata=p.get("metadata"),
            )
            self.messages.append(message)
            return {"ok": True, "channel": channel, "ts": message.ts, "message": _shown(message)}
        if method == "chat.update":
            found = next(
                (m for m in self.messages if m.ts == p.get("ts") and m.channel == channel), None
            )
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            found.text = str(p.get("text") or found.text)
            found.blocks = list(p.get("blocks") or found.blocks)
            found.updates += 1
            return {"ok": True, "channel": channel, "ts": found.ts, "text": found.text}
        if method == "chat.getPermalink":
            found = next(
                (m for m in self.messages if m.ts == p.get("message_ts") and m.channel == channel),
                None,
            )
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            digits = found.ts.replace(".", "")
            permalink = f"https://badgateway-test.slack.com/archives/{channel}/p{digits}"
            return {"ok": True, "channel": channel, "permalink": permalink}
        if method == "conversations.open":
            users = str(p.get("users") or "")
            if not users:
                return {"ok": False, "error": "users_not_found"}
            return {"ok": True, "channel": {"id": "D" + users.split(",")[0][1:]}}
        if method == "chat.postEphemeral":
            self.ephemerals.append(p)
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "conversations.info":
            name = self.channel_names.get(channel, channel.lower())
            return {"ok": True, "channel": {"id": channel, "name": name, "is_member": True}}
        if method in ("conversations.replies", "conversations.history"):
            metadata = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
            if method == "conversations.replies":
                root = p.get("ts")
                listed = [
                    m
                    for m in self.messages
                    if m.channel == channel and (m.ts == root or m.thread_ts == root)
                ]
            else:
                listed = [m for m in self.messages if m.channel == channel and not m.thread_ts]
                listed.reverse()  # newest first, as Slack does
            return {"ok": True, "messages": [_shown(m, metadata) for m in listed]}
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.usergroups.get(str(p.get("usergroup")), [])}
        return {"ok": False, "error": "unknown_method"}


def _shown(m: Message, metadata: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "type": "message",
        "user": m.user,
        "bot_id": BOT_ID,
        "text": m.text,
        "blocks": m.blocks,
        "ts": m.ts,
    }
    if m.thread_ts:
        shown["thread_ts"] = m.thread_ts
    if metadata and m.metadata:
        shown["metadata"] = m.metadata
    return shown


@pytest_asyncio.fixture
async def slack_api() -> AsyncIterator[SlackStandIn]:
    """A fresh Slack Web API stand-in for one test."""
    stand_in = SlackStandIn()
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


# Signing and payloads ------------------------------------------------------------------------
def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: X-Slack-Request-Timestamp and the v0 HMAC-SHA256 signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def socket_payload(built: tuple[str, str]) -> dict[str, Any]:
    """A body ``SlackSigner`` built for HTTP mode, as the payload of a Socket Mode envelope:
    a slash command's form fields, an interaction's ``payload`` document, an event's body."""
    body, content_type = built
    if content_type == "application/json":
        return dict(json.loads(body))
    fields = dict(parse_qsl(body, keep_blank_values=True))
    if set(fields) == {"payload"}:
        return dict(json.loads(fields["payload"]))
    return fields


@dataclass
class SlackSigner:
    """Builds request bodies as Slack sends them, for one app (signing secret) and workspace."""

    secret: str
    response_url: Callable[[], str]

    def slash_command(
        self,
        text: str,
        *,
        user: str = "U0ALICE01",
        channel: str = "C0OPS0001",
        channel_name: str = "ops",
        command: str = "/502",
    ) -> tuple[str, str]:
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": TEAM_ID,
                "team_domain": "badgateway-test",
                "channel_id": channel,
                "channel_name": channel_name,
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": text,
                "api_app_id": "A0BGW0001",
                "is_enterprise_install": "false",
                "response_url": self.response_url(),
                "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:12]}",
            }
        )
        return body, "application/x-www-form-urlencoded"

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        message_ts: str,
        thread_ts: str | None = None,
        user: str = "U0ALICE01",
        channel: str = "C0OPS0001",
        chosen: str | None = None,
    ) -> tuple[str, str]:
        """A button pressed (its ``value``), or with ``chosen`` an option chosen in an
        external select menu (``value`` is then unused, as Slack sends none)."""
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": "bgw_verdict_actions",
            "text": {"type": "plain_text", "text": action_id, "emoji": True},
            "value": value,
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if chosen is not None:
            action = {
                "action_id": action_id,
                "block_id": "bgw_show_site_menu",
                "type": "external_select",
                "selected_option": {
                    "text": {"type": "plain_text", "text": chosen, "emoji": True},
                    "value": chosen,
                },
                "placeholder": {"type": "plain_text", "text": "Show…", "emoji": True},
                "action_ts": f"{time.time():.6f}",
            }
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {
                "id": user,
                "username": user.lower(),
                "name": user.lower(),
                "team_id": TEAM_ID,
            },
            "api_app_id": "A0BGW0001",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
                "thread_ts": thread_ts,
            },
            "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:12]}",
            "team": {"id": TEAM_ID, "domain": "badgateway-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "ops"},
            "message": {
                "type": "message",
                "user": BOT_USER_ID,
                "ts": message_ts,
                "thread_ts": thread_ts,
                "bot_id": BOT_ID,
                "text": "verdict",
            },
            "state": {"values": {}},
            "response_url": self.response_url(),
            "actions": [action],
        }
        return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"

    def block_suggestion(
        self,
        action_id: str,
        typed: str,
        *,
        message_ts: str,
        user: str = "U0ALICE01",
        channel: str = "C0OPS0001",
    ) -> tuple[str, str]:
        """Someone typing ``typed`` in an external select menu on the message ``message_ts``."""
        payload: dict[str, Any] = {
            "type": "block_suggestion",
            "user": {
                "id": user,
                "username": user.lower(),
                "name": user.lower(),
                "team_id": TEAM_ID,
            },
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "api_app_id": "A0BGW0001",
            "token": "legacy-verification-token",
            "action_id": action_id,
            "block_id": "bgw_show_site_menu",
            "value": typed,
            "team": {"id": TEAM_ID, "domain": "badgateway-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "ops"},
            "message": {"type": "message", "user": BOT_USER_ID, "ts": message_ts, "bot_id": BOT_ID},
        }
        return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"

    def app_mention(
        self,
        text: str,
        *,
        thread_ts: str | None,
        user: str = "U0ALICE01",
        channel: str = "C0OPS0001",
        event_id: str | None = None,
    ) -> tuple[str, str]:
        ts = f"{time.time():.6f}"
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        body = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0BGW0001",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        return json.dumps(body), "application/json"

    def url_verification(self, challenge: str) -> tuple[str, str]:
        body = {"token": "legacy", "challenge": challenge, "type": "url_verification"}
        return json.dumps(body), "application/json"


# The bot under test ---------------------------------------------------------------------------
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class Sent:
    status: int
    text: str
    elapsed_s: float

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class BotUnderTest:
    """The real Bolt app served over HTTP on loopback, posting to the Slack stand-in."""

    url: str
    runtime: Any  # bot.assemble.web.WebProcess
    slack: SlackStandIn
    signer: SlackSigner

    async def send(
        self,
        built: tuple[str, str],
        *,
        signed: bool = True,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Sent:
        import aiohttp

        body, content_type = built
        sent_headers = {"Content-Type": content_type, **(headers or {})}
        if signed:
            sent_headers.update(sign(secret or self.signer.secret, body, timestamp))
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body.encode(), headers=sent_headers) as response,
        ):
            text = await response.text()
        return Sent(response.status, text, time.monotonic() - started)

    async def command(self, text: str, **kwargs: Any) -> Sent:
        return await self.send(self.signer.slash_command(text, **kwargs))

    async def settle(self) -> None:
        """Wait until every diagnosis started so far has finished posting, and the root
        messages show it (their updates are coalesced, so they land a little later)."""
        drain = getattr(self.runtime.carrier, "drain", None)
        if drain is not None:
            await drain()
        await self.runtime.chatops.diagnoses.sink.roots.settle()


@pytest_asyncio.fixture
async def slack_bot(
    slack_api: SlackStandIn,
) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``bot = await slack_bot(settings)`` serves the real app against ``slack_api``;
    ``rate_scale`` is the bot's BADGATEWAY_SLACK_RATE_SCALE, ``alerts_token`` its ALERTS_TOKEN;
    other keyword arguments go to ``bot.assemble.web.build_web`` (other kinds of thread…)."""

    from badgateway.bot.assemble.web import build_web
    from badgateway.bot.config import BotConfig
    from badgateway.bot.slack.server import EVENTS_PATH

    started: list[tuple[Any, web.AppRunner]] = []

    async def start(
        settings: Any, *, rate_scale: float = 1.0, alerts_token: str | None = None, **extra: Any
    ) -> BotUnderTest:
        config = BotConfig(
            slack_bot_token="xoxb-test-token",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack_api.base_url,
            slack_rate_scale=rate_scale,  # BADGATEWAY_SLACK_RATE_SCALE
            alerts_token=alerts_token,  # POST /events (and, with Redis, the alert webhooks)
        )
        runtime = build_web(config, settings, **extra)
        runner, port = await serve_app(runtime.web_app())
        started.append((runtime, runner))
        return BotUnderTest(
            url=f"http://127.0.0.1:{port}{EVENTS_PATH}",
            runtime=runtime,
            slack=slack_api,
            signer=SlackSigner(SIGNING_SECRET, slack_api.response_url),
        )

    try:
        yield start
    finally:
        for runtime, runner in started:
            await runner.cleanup()
            await runtime.close()


def loopback_settings() -> Any:
    """Settings for the Slack tests' loopback sites: quick, one reload attempt."""
    import ipaddress

    from badgateway.checks.settings import Settings

    return Settings(
        allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        reload_attempts=1,
        reload_spacing_s=0,
        timeout_s=2,
        diagnosis_budget_s=8,
    )


@pytest_asyncio.fixture
async def failing_site() -> AsyncIterator[str]:
    """A site on loopback for the Slack tests: answers 502 with nginx's page; yields its URL.
    (The tests that prove causes use the real proxies of fixtures_proxies instead.)"""

    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(
            status=502,
            text="<html><center><h1>502 Bad Gateway</h1></center></html>",
            headers={"Server": "nginx/1.22.1"},
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", bad_gateway)
    runner, port = await serve_app(app)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()
