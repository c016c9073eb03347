"""What the bot does for `/502`, the verdict's buttons and mentions in a thread: routing.

Independent of how requests arrive: the Bolt app (bot.slack.app) and the terminal shell
(bot.shell) both call these methods, so both run the same code. Replies only the asker should
see go through the ``Ack``/``Reply`` callables the caller passes in. A button or a mention
acts on the thread's owner (``bot.threads.Threads.owner``), whatever kind of thread it is;
a command word another feature adds (``/502 mute``) is looked up in ``commands``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.render import chat_text
from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.render.wording import escape
from badgateway.bot.slack.diagnosis_threads import DiagnosisThreads
from badgateway.bot.slack.payloads import target_and_places
from badgateway.bot.slack_client import post_once, slack_error
from badgateway.bot.threads import Answer, CommandHandler, Reply, ThreadKind, ThreadOwner, Threads
from badgateway.checks.guard import TargetRefused
from badgateway.checks.runner import choose_places, prepare
from badgateway.checks.settings import Settings
from badgateway.checks.target import BadTarget, parse_target

log = logging.getLogger(__name__)

# Acknowledge, optionally with a private answer (a text, or a Block Kit message).
Ack = Callable[[Answer | None], Awaitable[None]]
# None when the bot can work now; else why not, in one line (bot.queue.health)
Unavailable = Callable[[], Awaitable[str | None]]
NO_REDIS_WORDS = ("help", "sites", "")  # answered from the settings alone

VET_WAIT_S = 1.5  # how long `/502` waits for DNS before acknowledging (Slack allows 3 s)
_LINK = re.compile(r"^<([^|>]+)(?:\|[^>]*)?>$")
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
NO_RECORD_TEXT = "I no longer have a record of this diagnosis; run `/502` again."
NO_GROUP_TEXT = "I no longer have a record of this grouped alert; nothing was posted."


@runtime_checkable
class ShowsSites(Protocol):
    """A thread owner with many sites (a grouped alert): `@badgateway show SITE`, or the
    site chosen in its root's menu (whose options are ``site_options``)."""

    async def show(self, site: str, user: str, reply: Reply) -> None: ...

    async def site_options(self, typed: str) -> list[dict[str, object]]: ...


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


def _button(owner: ThreadOwner, name: str) -> Callable[[str, Reply], Awaitable[None]] | None:
    presses: dict[str, Callable[[str, Reply], Awaitable[None]]] = {
        "rerun": owner.rerun,
        "take": owner.take,
        "escalate": owner.escalate,
        "resolve": owner.resolve,
    }
    return presses.get(name)


class ChatOps:
    def __init__(
        self,
        client: AsyncWebClient,
        settings: Settings,
        diagnoses: DiagnosisThreads,
        *,
        other_threads: Sequence[ThreadKind] = (),
        commands: Mapping[str, CommandHandler] | None = None,
        unavailable: Unavailable | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.diagnoses = diagnoses
        self.threads = Threads([diagnoses, *other_threads])
        self.commands = dict(commands or {})
        self._unavailable = unavailable
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

    async def unavailable(self) -> str | None:
        """Why the bot cannot work now (its Redis out of reach), in one private line; or None."""
        if self._unavailable is None:
            return None
        problem = await self._unavailable()
        return chat_text.unavailable_text(problem) if problem else None

    # /502 ---------------------------------------------------------------------------------
    async def command(self, cmd: Command, ack: Ack, reply: Reply) -> None:
        refusal = await self.refusal(cmd.user, cmd.channel, cmd.channel_name)
        if refusal:
            await ack(refusal)
            return
        text = unwrap_link(cmd.text)
        word = text.lower()
        words = text.split()
        first = words[0].lower() if words else ""
        handler = self.commands.get(first)
        if handler is None and first in chat_text.REDIS_COMMANDS:
            await ack(chat_text.needs_redis_text(first))
            return
        if word not in NO_REDIS_WORDS and (problem := await self.unavailable()):
            await ack(problem)
            return
        if handler is not None:
            await ack(await handler(words, cmd.user))
            return
        if word == "help":
            await ack(chat_text.help_text())
            return
        if word == "sites":
            await ack(chat_text.sites_text(self.settings))
            return
        if word == "status":
            await ack(await self.threads.status_text())
            return
        if not text:
            await ack("Give me a target to diagnose.\n" + chat_text.help_text())
            return
        typed, places = target_and_places(cmd.text)
        if places == []:
            await ack(chat_text.no_places_text(self.settings, unwrap_link(typed)))
            return
        try:
            target = parse_target(unwrap_link(typed), self.settings)
            # An unknown place is refused here, before anything resolves or starts.
            choose_places(target, self.settings, places)
        except BadTarget as exc:
            await ack(f"⚠️ {escape(str(exc))}")
            return
        # Vet (resolve, check the guard) within Slack's 3 s if DNS is quick; else ack first.
        vetting = asyncio.ensure_future(prepare(target, self.settings, places))
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
        ctx.asker_reports_failure = True  # a person says it fails for them (client_side)
        # Answered where it was typed, always (an open alert's thread is linked from there).
        try:
            await self.diagnoses.start(ctx, user=cmd.user, channel=cmd.channel, reply=reply)
        except (RedisError, OSError) as exc:  # Redis went away after the check above
            log.warning("a /502 for %s found Redis gone: %s", ctx.target.url, exc)
            await reply(
                chat_text.unavailable_text(f"Redis stopped answering ({type(exc).__name__})")
            )

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
        chosen: str = "",
    ) -> None:
        """A verdict button: rerun, take, escalate or resolve, on whatever thread it is in;
        or ``show``, the site ``chosen`` in a grouped alert's menu: its full diagnosis in the
        thread, as `@badgateway show SITE` does."""
        refusal = await self.refusal(user, channel, channel_name) or await self.unavailable()
        if refusal:
            await reply(refusal)
            return
        owner = await self.threads.owner(channel, root_ts)
        if name == "show":
            if isinstance(owner, ShowsSites):
                await owner.show(chosen, user, reply)
            else:
                await reply(NO_GROUP_TEXT)
            return
        if owner is None:
            await reply(NO_RECORD_TEXT)
            return
        press = _button(owner, name)
        if press is None:
            await reply(f"Unknown action {escape(name)}.")
            return
        await press(user, reply)

    # The menu of a grouped alert's sites -----------------------------------------------------
    async def site_options(
        self, *, user: str, channel: str, root_ts: str, typed: str
    ) -> list[dict[str, object]]:
        """The menu's options as the user types; none where the menu cannot be used (the
        choice itself then says why, privately)."""
        if await self.refusal(user, channel) or await self.unavailable():
            return []
        owner = await self.threads.owner(channel, root_ts)
        return await owner.site_options(typed) if isinstance(owner, ShowsSites) else []

    # Mentions ------------------------------------------------------------------------------
    async def mention(
        self, *, text: str, user: str, channel: str, ts: str, thread_ts: str | None
    ) -> None:
        """`@badgateway rerun`, `rerun dns`, `show SITE` (a grouped alert's) or `help`, in a
        thread the bot keeps."""

        async def private(message: str) -> None:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=message, thread_ts=thread_ts
            )

        refusal = await self.refusal(user, channel) or await self.unavailable()
        if refusal:
            await private(refusal)
            return
        bot_id = await self.bot_user_id()
        words = _MENTION.sub(" ", text.replace(f"<@{bot_id}>", " ")).split()
        owner = await self.threads.owner(channel, thread_ts) if thread_ts else None
        if words[:1] == ["rerun"] and owner is not None:
            step = words[1].lower() if len(words) > 1 else None
            # An alert's thread re-runs it all.
            await owner.rerun(user, private, step, trigger="mention")
            return
        if words[:1] == ["show"] and len(words) == 2 and isinstance(owner, ShowsSites):
            await owner.show(unwrap_link(words[1]), user, private)
            return
        hint = (
            ""
            if owner
            else "\nStart a diagnosis with `/502 TARGET`; then mention me in its thread."
        )
        await post_once(
            self.client,
            channel=channel,
            thread_ts=thread_ts or ts,
            key=f"mention:{channel}:{ts}",
            message=blocks.notice(chat_text.help_text() + hint),
        )
