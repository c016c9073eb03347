"""What the bot does for `/502`, the verdict's buttons and mentions in a thread.

Independent of how requests arrive: the Bolt app (bot.slack.app) and the terminal shell
(bot.shell) both call these methods, so both run the same code. Replies only the asker should
see go through the ``Ack``/``Reply`` callables the caller passes in.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline import Carrier, DiagnosisRequest
from bot.render import chat_text
from bot.render import slack_blocks as blocks
from bot.render.mentions import user_mention
from bot.render.wording import escape, on_it
from bot.slack.client import post_once, slack_error
from bot.slack.sink import refresh_root, remember_request
from bot.state import BotState, Incident
from checks import steps as step_registry
from checks.context import ProbeContext
from checks.guard import TargetRefused
from checks.model import Diagnosis, StepResult
from checks.runner import prepare
from checks.settings import Settings
from checks.target import BadTarget, parse_target

log = logging.getLogger(__name__)

Ack = Callable[[str | None], Awaitable[None]]  # acknowledge, optionally with a private text
Reply = Callable[[str], Awaitable[None]]  # a private (ephemeral) message to the user

VET_WAIT_S = 1.5  # how long `/502` waits for DNS before acknowledging (Slack allows 3 s)
_LINK = re.compile(r"^<([^|>]+)(?:\|[^>]*)?>$")
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
NOT_JOINED_ERRORS = ("channel_not_found", "not_in_channel")
INVITE_TEXT = (
    "I can't post in this channel: it is private and I'm not a member. "
    "Invite me with `/invite @badgateway`, then run the command again."
)


class AlertHooks(Protocol):
    """The alerting side (bot.alerts.slack_commands.AlertCommands), asked first when present:
    each hook returns None when the request is not about an alert."""

    incidents: Any  # bot.alerts.incidents.Incidents

    async def command(self, text: str, user: str) -> str | None: ...

    async def action(self, name: str, *, user: str, channel: str, root_ts: str) -> str | None: ...


@dataclass(frozen=True)
class Command:
    text: str
    user: str
    channel: str
    channel_name: str = ""


def unwrap_link(text: str) -> str:
    """Slack sends a typed URL as ``<https://x|x>``; the target is the URL inside."""
    text = text.strip()
    match = _LINK.match(text)
    return match.group(1) if match else text


class ChatOps:
    def __init__(
        self,
        client: AsyncWebClient,
        state: BotState,
        carrier: Carrier,
        settings: Settings,
        alerts: AlertHooks | None = None,
    ) -> None:
        self.client = client
        self.state = state
        self.carrier = carrier
        self.settings = settings
        self.alerts = alerts
        self._bot_user_id: str | None = None
        self._group_members: dict[str, tuple[float, set[str]]] = {}
        self._channel_names: dict[str, str] = {}

    async def bot_user_id(self) -> str:
        """The bot's own user id, from auth.test (asked once)."""
        if self._bot_user_id is None:
            response = await self.client.auth_test()
            self._bot_user_id = str(response["user_id"])
        return self._bot_user_id

    # Who may use the bot -------------------------------------------------------------------
    async def refusal(self, user: str, channel: str, channel_name: str = "") -> str | None:
        """Why this user may not use the bot here, politely; None when they may."""
        allowed_channels = self.settings.allowed_channels
        if allowed_channels:
            names = {channel}
            name = channel_name or await self._channel_name(channel)
            if name:
                names |= {name, f"#{name}"}
            if not names & set(allowed_channels):
                shown = ", ".join(escape(c) for c in allowed_channels[:10])
                return (
                    "Sorry, badgateway is not enabled in this channel. "
                    f"It works in: {shown}. An admin can add channels to the sites file's "
                    "`allowed_channels`."
                )
        if self.settings.allowed_users and not await self._user_allowed(user):
            return (
                "Sorry, you are not on badgateway's list of users. An admin can add you (or "
                "your user group) to the sites file's `allowed_users`."
            )
        return None

    async def _user_allowed(self, user: str) -> bool:
        allowed = self.settings.allowed_users
        if user in allowed:
            return True
        for group in (a for a in allowed if a.startswith("S")):  # Slack user group ids
            if user in await self._members(group):
                return True
        return False

    async def _members(self, group: str) -> set[str]:
        cached = self._group_members.get(group)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
            members = set(response.get("users") or [])
        except SlackApiError as exc:
            log.warning("cannot read user group %s: %s", group, slack_error(exc))
            members = set()
        self._group_members[group] = (time.monotonic() + 300, members)
        return members

    async def _channel_name(self, channel: str) -> str:
        if channel not in self._channel_names:
            try:
                response = await self.client.conversations_info(channel=channel)
                self._channel_names[channel] = str(response["channel"].get("name") or "")
            except SlackApiError:
                self._channel_names[channel] = ""
        return self._channel_names[channel]

    # /502 ---------------------------------------------------------------------------------
    async def command(self, cmd: Command, ack: Ack, reply: Reply) -> None:
        refusal = await self.refusal(cmd.user, cmd.channel, cmd.channel_name)
        if refusal:
            await ack(refusal)
            return
        text = unwrap_link(cmd.text)
        word = text.lower()
        if self.alerts is not None:
            answer = await self.alerts.command(text, cmd.user)
            if answer is not None:
                if word == "status":
                    own = chat_text.status_text(await self.state.open_incidents())
                    answer = f"{own}\n\n{answer}"
                await ack(answer)
                return
        if word == "help":
            await ack(chat_text.help_text())
            return
        if word == "sites":
            await ack(chat_text.sites_text(self.settings))
            return
        if word == "status":
            await ack(chat_text.status_text(await self.state.open_incidents()))
            return
        if not text:
            await ack("Give me a target to diagnose.\n" + chat_text.help_text())
            return
        try:
            target = parse_target(text, self.settings)
        except BadTarget as exc:
            await ack(f"⚠️ {escape(str(exc))}")
            return
        # Vet (resolve, check the guard) within Slack's 3 s if DNS is quick; else ack first.
        vetting = asyncio.ensure_future(prepare(target, self.settings))
        acked = False
        try:
            ctx = await asyncio.wait_for(asyncio.shield(vetting), VET_WAIT_S)
        except (BadTarget, TargetRefused) as exc:
            await ack(f"⚠️ {escape(str(exc))}")
            return
        except TimeoutError:
            await ack(None)
            acked = True
            try:
                ctx = await vetting
            except (BadTarget, TargetRefused) as exc:
                await reply(f"⚠️ {escape(str(exc))}")
                return
        if not acked:
            await ack(None)
        await self.start(ctx, user=cmd.user, channel=cmd.channel, reply=reply)

    async def start(self, ctx: ProbeContext, *, user: str, channel: str, reply: Reply) -> None:
        """Post the root message and hand the diagnosis to the carrier."""
        if self.alerts is not None:
            # A site already alerting has a thread: the diagnosis goes there, no second root.
            alert = await self.alerts.incidents.incident_for_url(ctx.target.url)
            if alert is not None:
                origin = dict(type(self.alerts.incidents).origin(alert))
                origin["user"] = user
                await self.carrier.submit(DiagnosisRequest.new(ctx, origin=origin))
                await reply("This site has an open alert; the diagnosis is in its thread.")
                return
        request = DiagnosisRequest.new(ctx, origin={"kind": "slack", "channel": channel})
        incident = Incident(
            channel=channel,
            root_ts="",
            target=ctx.target.raw,
            url=ctx.target.url,
            requester=user,
            created_at=time.time(),
            current=request.id,
        )
        first_view = blocks.root_message(
            target=incident.target,
            url=incident.url,
            requester=user,
            steps=request.steps,
            results={},
        )
        try:
            root_ts = await post_once(
                self.client, channel=channel, key=f"root:{uuid.uuid4().hex}", message=first_view
            )
        except SlackApiError as exc:
            if slack_error(exc) in NOT_JOINED_ERRORS:
                await reply(INVITE_TEXT)
                return
            await reply(f"Slack refused the message ({slack_error(exc) or exc}); nothing was run.")
            raise
        incident.root_ts = root_ts
        request.origin.update({"root_ts": root_ts, "user": user})
        await self.state.save_incident(incident)
        await remember_request(self.state, request)
        await self.carrier.submit(request)

    # Buttons -------------------------------------------------------------------------------
    async def action(
        self,
        name: str,
        *,
        user: str,
        channel: str,
        root_ts: str,
        reply: Reply,
        channel_name: str = "",
    ) -> None:
        """A verdict button: rerun, take, escalate or resolve."""
        refusal = await self.refusal(user, channel, channel_name)
        if refusal:
            await reply(refusal)
            return
        if self.alerts is not None:
            answer = await self.alerts.action(name, user=user, channel=channel, root_ts=root_ts)
            if answer is not None:  # the thread was an alert's: done
                if answer:
                    await reply(answer)
                return
        incident = await self.state.incident(channel, root_ts)
        if incident is None:
            await reply("I no longer have a record of this diagnosis; run `/502` again.")
            return
        if name == "rerun":
            await self.rerun(incident, user=user, reply=reply)
        elif name == "take":
            async with self.state.thread_lock(channel, root_ts):
                incident = await self.state.incident(channel, root_ts) or incident
                incident.taken_by, incident.taken_at = user, time.time()
                await self.state.save_incident(incident)
                await refresh_root(self.client, self.state, incident)
            await self._note(incident, f"{on_it(user)}.")
        elif name == "escalate":
            doc = await self.state.diagnosis_doc(incident.current)
            if doc is None:
                await reply("The diagnosis is still running; escalate once the verdict is in.")
                return
            message = blocks.escalation_message(Diagnosis.from_dict(doc), user)
            await post_once(
                self.client,
                channel=channel,
                thread_ts=root_ts,
                key=f"escalate:{uuid.uuid4().hex}",
                message=message,
            )
        elif name == "resolve":
            async with self.state.thread_lock(channel, root_ts):
                incident = await self.state.incident(channel, root_ts) or incident
                if incident.resolved_at is None:
                    incident.resolved_by, incident.resolved_at = user, time.time()
                    await self.state.save_incident(incident)
                await refresh_root(self.client, self.state, incident)
            await self._note(incident, f"✔️ Resolved by {user_mention(user)}.")
        else:
            await reply(f"Unknown action {escape(name)}.")

    async def rerun(
        self, incident: Incident, *, user: str, reply: Reply, step: str | None = None
    ) -> None:
        """Run the sequence (or one step) again in the same thread, with a new verdict."""
        try:
            ctx = await prepare(parse_target(incident.target, self.settings), self.settings)
        except (BadTarget, TargetRefused) as exc:
            await reply(f"⚠️ {escape(str(exc))}")
            return
        previous: list[StepResult] = []
        if step is not None:
            old = await self.state.request_doc(incident.current)
            kept = {d["name"]: StepResult.from_dict(d) for d in old.get("previous") or []}
            kept.update(await self.state.results(incident.current))
            previous = [r for name, r in kept.items() if name != step]
        request = DiagnosisRequest.new(
            ctx,
            steps=[step] if step else None,
            origin={
                "kind": "slack",
                "channel": incident.channel,
                "root_ts": incident.root_ts,
                "user": user,
            },
            previous=previous,
        )
        async with self.state.thread_lock(incident.channel, incident.root_ts):
            incident = await self.state.incident(incident.channel, incident.root_ts) or incident
            incident.current, incident.cause = request.id, None
            incident.runs += 1
            await self.state.save_incident(incident)
            await remember_request(self.state, request)
            await refresh_root(self.client, self.state, incident)
        which = f"the {escape(step)} check" if step else "the whole diagnosis"
        await self._note(incident, f"🔁 {user_mention(user)} re-runs {which}.")
        await self.carrier.submit(request)

    # Mentions ------------------------------------------------------------------------------
    async def mention(
        self, *, text: str, user: str, channel: str, ts: str, thread_ts: str | None
    ) -> None:
        """`@badgateway rerun`, `rerun dns` or `help`, in a diagnosis thread."""

        async def private(message: str) -> None:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=message, thread_ts=thread_ts
            )

        refusal = await self.refusal(user, channel)
        if refusal:
            await private(refusal)
            return
        bot_id = await self.bot_user_id()
        words = _MENTION.sub(" ", text.replace(f"<@{bot_id}>", " ")).split()
        incident = await self.state.incident(channel, thread_ts) if thread_ts else None
        where = thread_ts or ts
        if words[:1] == ["rerun"] and incident is not None:
            step = words[1].lower() if len(words) > 1 else None
            if step is not None and step_registry.step_named(step) is None:
                names = ", ".join(step_registry.step_names()) or "none installed"
                await private(f"There is no check called `{escape(step)}`. Checks: {names}.")
                return
            await self.rerun(incident, user=user, reply=private, step=step)
            return
        if words[:1] == ["rerun"] and thread_ts and self.alerts is not None:
            # An alert's thread: the alerting side owns it and re-runs the whole diagnosis.
            answer = await self.alerts.action(
                "rerun", user=user, channel=channel, root_ts=thread_ts
            )
            if answer is not None:
                if answer:
                    await private(answer)
                return
        hint = (
            ""
            if incident
            else "\nStart a diagnosis with `/502 TARGET`; then mention me in its thread."
        )
        await post_once(
            self.client,
            channel=channel,
            thread_ts=where,
            key=f"mention:{channel}:{ts}",
            message=blocks.notice(chat_text.help_text() + hint),
        )

    async def _note(self, incident: Incident, text: str) -> None:
        try:
            await post_once(
                self.client,
                channel=incident.channel,
                thread_ts=incident.root_ts,
                key=f"note:{uuid.uuid4().hex}",
                message=blocks.notice(text),
            )
        except (SlackApiError, aiohttp.ClientError) as exc:  # a note is not worth failing for
            log.warning("could not post a note in %s: %s", incident.key, exc)
