"""`/502` threads: starting one, and what its verdict's buttons do (a ``ThreadKind``).

``start`` posts the root message and hands the diagnosis to the carrier; the owner of a
thread (``DiagnosisThreads.owner``) re-runs it (whole or one check), marks who took it or
resolved it, and posts the provider-ready summary. Each change is made under the thread's
lock and shown on the root message and as a short note in the thread.
"""

from __future__ import annotations

import logging
import time
import uuid

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline import Carrier, DiagnosisRequest
from bot.render import chat_text
from bot.render import slack_blocks as blocks
from bot.render.mentions import user_mention
from bot.render.wording import escape, on_it
from bot.slack.sink import refresh_root, remember_request
from bot.slack_client import post_once, slack_error
from bot.state import BotState, DiagnosisThread
from bot.threads import Reply
from checks import steps as step_registry
from checks.context import ProbeContext
from checks.guard import TargetRefused
from checks.model import Diagnosis, StepResult
from checks.runner import prepare
from checks.settings import Settings
from checks.target import BadTarget, parse_target

log = logging.getLogger(__name__)

NOT_JOINED_ERRORS = ("channel_not_found", "not_in_channel")
INVITE_TEXT = (
    "I can't post in this channel: it is private and I'm not a member. "
    "Invite me with `/invite @badgateway`, then run the command again."
)


class DiagnosisThreads:
    def __init__(
        self, client: AsyncWebClient, state: BotState, carrier: Carrier, settings: Settings
    ) -> None:
        self.client = client
        self.state = state
        self.carrier = carrier
        self.settings = settings

    # ThreadKind ------------------------------------------------------------------------------
    async def owner(self, channel: str, ts: str) -> DiagnosisThreadOwner | None:
        thread = await self.state.thread(channel, ts)
        return DiagnosisThreadOwner(self, thread) if thread is not None else None

    async def status_text(self) -> str:
        return chat_text.status_text(await self.state.open_threads())

    async def divert(self, ctx: ProbeContext, *, user: str, reply: Reply) -> bool:
        return False  # a second `/502` of a site is a thread of its own

    # A new thread ----------------------------------------------------------------------------
    async def start(self, ctx: ProbeContext, *, user: str, channel: str, reply: Reply) -> None:
        """Post the root message and hand the diagnosis to the carrier."""
        request = DiagnosisRequest.new(ctx, origin={"kind": "slack", "channel": channel})
        thread = DiagnosisThread(
            channel=channel,
            root_ts="",
            target=ctx.target.raw,
            url=ctx.target.url,
            requester=user,
            created_at=time.time(),
            current=request.id,
        )
        first_view = blocks.root_message(
            target=thread.target,
            url=thread.url,
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
        thread.root_ts = root_ts
        request.origin.update({"root_ts": root_ts, "user": user})
        await self.state.save_thread(thread)
        await remember_request(self.state, request)
        await self.carrier.submit(request)

    # What the buttons do ---------------------------------------------------------------------
    async def rerun(
        self, thread: DiagnosisThread, *, user: str, reply: Reply, step: str | None = None
    ) -> None:
        """Run the sequence (or one step) again in the same thread, with a new verdict."""
        if step is not None and step_registry.step_named(step) is None:
            names = ", ".join(step_registry.step_names()) or "none installed"
            await reply(f"There is no check called `{escape(step)}`. Checks: {names}.")
            return
        try:
            ctx = await prepare(parse_target(thread.target, self.settings), self.settings)
        except (BadTarget, TargetRefused) as exc:
            await reply(f"⚠️ {escape(str(exc))}")
            return
        previous: list[StepResult] = []
        if step is not None:
            old = await self.state.request_doc(thread.current)
            kept = {d["name"]: StepResult.from_dict(d) for d in old.get("previous") or []}
            kept.update(await self.state.results(thread.current))
            previous = [r for name, r in kept.items() if name != step]
        request = DiagnosisRequest.new(
            ctx,
            steps=[step] if step else None,
            origin={
                "kind": "slack",
                "channel": thread.channel,
                "root_ts": thread.root_ts,
                "user": user,
            },
            previous=previous,
        )
        async with self.state.thread_lock(thread.channel, thread.root_ts):
            thread = await self.state.thread(thread.channel, thread.root_ts) or thread
            thread.current, thread.cause = request.id, None
            thread.runs += 1
            await self.state.save_thread(thread)
            await remember_request(self.state, request)
            await refresh_root(self.client, self.state, thread)
        which = f"the {escape(step)} check" if step else "the whole diagnosis"
        await self.note(thread, f"🔁 {user_mention(user)} re-runs {which}.")
        await self.carrier.submit(request)

    async def take(self, thread: DiagnosisThread, user: str) -> None:
        async with self.state.thread_lock(thread.channel, thread.root_ts):
            thread = await self.state.thread(thread.channel, thread.root_ts) or thread
            thread.taken_by, thread.taken_at = user, time.time()
            await self.state.save_thread(thread)
            await refresh_root(self.client, self.state, thread)
        await self.note(thread, f"{on_it(user)}.")

    async def resolve(self, thread: DiagnosisThread, user: str) -> None:
        async with self.state.thread_lock(thread.channel, thread.root_ts):
            thread = await self.state.thread(thread.channel, thread.root_ts) or thread
            if thread.resolved_at is None:
                thread.resolved_by, thread.resolved_at = user, time.time()
                await self.state.save_thread(thread)
            await refresh_root(self.client, self.state, thread)
        await self.note(thread, f"✔️ Resolved by {user_mention(user)}.")

    async def escalate(self, thread: DiagnosisThread, user: str, reply: Reply) -> None:
        doc = await self.state.diagnosis_doc(thread.current)
        if doc is None:
            await reply("The diagnosis is still running; escalate once the verdict is in.")
            return
        await post_once(
            self.client,
            channel=thread.channel,
            thread_ts=thread.root_ts,
            key=f"escalate:{uuid.uuid4().hex}",
            message=blocks.escalation_message(Diagnosis.from_dict(doc), user),
        )

    async def note(self, thread: DiagnosisThread, text: str) -> None:
        try:
            await post_once(
                self.client,
                channel=thread.channel,
                thread_ts=thread.root_ts,
                key=f"note:{uuid.uuid4().hex}",
                message=blocks.notice(text),
            )
        except (SlackApiError, aiohttp.ClientError) as exc:  # a note is not worth failing for
            log.warning("could not post a note in %s: %s", thread.key, exc)


class DiagnosisThreadOwner:
    """A ``ThreadOwner``: one `/502` thread's buttons."""

    def __init__(self, threads: DiagnosisThreads, thread: DiagnosisThread) -> None:
        self.threads = threads
        self.thread = thread

    async def take(self, user: str, reply: Reply) -> None:
        await self.threads.take(self.thread, user)

    async def resolve(self, user: str, reply: Reply) -> None:
        await self.threads.resolve(self.thread, user)

    async def rerun(self, user: str, reply: Reply, step: str | None = None) -> None:
        await self.threads.rerun(self.thread, user=user, reply=reply, step=step)

    async def escalate(self, user: str, reply: Reply) -> None:
        await self.threads.escalate(self.thread, user, reply)
