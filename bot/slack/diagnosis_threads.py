"""`/502` threads: starting one, and what its verdict's buttons do (a ``ThreadKind``).

``start`` answers a `/502` where it was typed: a root message in that channel (or, when the
bot cannot post there, in a direct message to the asker), always. The diagnosis behind it is
the site's flight (bot.state.Flight): one run per site at a time — a request while one runs,
or within ``share_window_s`` after it, shares that run, and its thread is shown the run's
results (bot.slack.sink). A site with an open alert (bot.threads.ThreadLinks): the root links
to the alert's thread, and that thread gets one note per window naming who asked from where.

The owner of a thread (``DiagnosisThreads.owner``) re-runs it (a fresh run, whole or one
check), marks who took it or resolved it, and posts the provider-ready summary. Each change is
made under the thread's lock and shown on the root message and as a short note in the thread.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.flights import SiteFlights, flight_key, limited_places, remember_request
from badgateway.bot.pipeline import Carrier, DiagnosisRequest
from badgateway.bot.render import chat_text
from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.render.mentions import user_mention
from badgateway.bot.render.wording import ASKERS_SHOWN, asked_note, escape, on_it, thread_link
from badgateway.bot.slack.payloads import target_and_places
from badgateway.bot.slack.sink import SlackSink, root_view
from badgateway.bot.slack_client import post_once, slack_error
from badgateway.bot.state import BotState, DiagnosisThread
from badgateway.bot.threads import Reply, ThreadLink, ThreadLinks, open_thread
from badgateway.checks import steps as step_registry
from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import TargetRefused
from badgateway.checks.model import Diagnosis, StepResult
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings
from badgateway.checks.target import BadTarget, parse_target

log = logging.getLogger(__name__)

NOT_JOINED_ERRORS = ("channel_not_found", "not_in_channel")
INVITE_TEXT = (
    "I can't post in this channel: it is private and I'm not a member. "
    "Invite me with `/invite @badgateway`, then run the command again."
)
IN_DM_TEXT = (
    "I can't post in this channel (it is private and I'm not a member), so the diagnosis is "
    "in our direct messages. Invite me with `/invite @badgateway` to have it here next time."
)
SHARE_WINDOW_S = 30.0  # bot.config.BotConfig.share_window_s (bot.flights)


class DiagnosisThreads:
    """``links``: where an open thread of another kind (an alert's) is found for a site;
    ``sink``: what shows a run in a thread (the process's own, so that its root updates share
    one budget); ``share_window_s``: how long after a run ends a new request still shares it."""

    def __init__(
        self,
        client: AsyncWebClient,
        state: BotState,
        carrier: Carrier,
        settings: Settings,
        *,
        sink: SlackSink | None = None,
        links: Sequence[ThreadLinks] = (),
        share_window_s: float = SHARE_WINDOW_S,
    ) -> None:
        self.client = client
        self.state = state
        self.carrier = carrier
        self.settings = settings
        self.sink = sink or SlackSink(client, state)
        self.links = tuple(links)
        self.flights = SiteFlights(state, carrier, share_window_s)

    @property
    def share_window_s(self) -> float:
        return self.flights.window_s

    @share_window_s.setter
    def share_window_s(self, seconds: float) -> None:
        self.flights.window_s = seconds

    # ThreadKind ------------------------------------------------------------------------------
    async def owner(self, channel: str, ts: str) -> DiagnosisThreadOwner | None:
        thread = await self.state.thread(channel, ts)
        return DiagnosisThreadOwner(self, thread) if thread is not None else None

    async def status_text(self) -> str:
        return chat_text.status_text(await self.state.open_threads())

    # A new thread ----------------------------------------------------------------------------
    async def start(self, ctx: ProbeContext, *, user: str, channel: str, reply: Reply) -> None:
        """Post the root where the `/502` was typed and show the site's run in its thread."""
        diagnosis_id, steps = await self._join_flight(ctx, user)
        alert = await open_thread(self.links, ctx)
        limited = limited_places(ctx)
        thread = DiagnosisThread(
            channel=channel,
            root_ts="",
            # What *Re-run* runs again: the target, and the places it was limited to.
            target=f"{ctx.target.raw} from {','.join(limited)}" if limited else ctx.target.raw,
            url=ctx.target.url,
            requester=user,
            created_at=time.time(),
            link=await self._permalink(alert) if alert else "",
            current=diagnosis_id,
        )
        posted = await self._post_root(thread, user, reply)
        if posted is None:
            return
        thread.channel, thread.root_ts = posted
        await self.state.save_thread(thread)
        # Joined before the results are read: whatever the run posts from now on reaches this
        # thread too, and what it posted before is caught up here.
        await self.state.add_sharer(diagnosis_id, thread.channel, thread.root_ts)
        await self.sink.show(diagnosis_id, steps, thread.channel, thread.root_ts)
        if alert is not None:
            await self._tell_alert(alert, user, channel)

    async def _join_flight(self, ctx: ProbeContext, user: str) -> tuple[str, list[str]]:
        """The site's run to show: the one running or just finished, else a new one."""
        joined = await self.flights.join(flight_key(ctx), lambda: self._flight_request(ctx, user))
        return joined.diagnosis_id, joined.steps

    async def _flight_request(
        self, ctx: ProbeContext, user: str, trigger: str = "slash"
    ) -> DiagnosisRequest:
        """A fresh run of the whole sequence, to become the site's flight; the threads that
        show it are its sharers, none in particular is its origin."""
        origin = {"kind": "slack", "flight": flight_key(ctx), "user": user, "trigger": trigger}
        request = DiagnosisRequest.new(ctx, origin=origin)
        await remember_request(self.state, request)
        return request

    async def _post_root(
        self, thread: DiagnosisThread, user: str, reply: Reply
    ) -> tuple[str, str] | None:
        """Post the root in the thread's channel, else in a direct message; (channel, ts)."""
        first_view = await root_view(self.state, thread)
        try:
            ts = await post_once(
                self.client,
                channel=thread.channel,
                key=f"root:{uuid.uuid4().hex}",
                message=first_view,
            )
            self.sink.roots.posted(thread.channel, ts, first_view)
            return thread.channel, ts
        except SlackApiError as exc:
            if slack_error(exc) not in NOT_JOINED_ERRORS:
                await reply(f"Slack refused the message ({slack_error(exc) or exc}).")
                raise
        try:
            opened = await self.client.conversations_open(users=user)
            dm = str(opened["channel"]["id"])
            ts = await post_once(
                self.client, channel=dm, key=f"root:{uuid.uuid4().hex}", message=first_view
            )
            self.sink.roots.posted(dm, ts, first_view)
        except (SlackApiError, aiohttp.ClientError, KeyError, TypeError) as exc:
            log.warning("could not open a direct message with %s: %s", user, exc)
            await reply(INVITE_TEXT)
            return None
        await reply(IN_DM_TEXT)
        return dm, ts

    async def _permalink(self, link: ThreadLink) -> str:
        try:
            response = await self.client.chat_getPermalink(channel=link.channel, message_ts=link.ts)
            return str(response["permalink"])
        except (SlackApiError, aiohttp.ClientError, KeyError) as exc:
            log.warning("no permalink for %s/%s: %s", link.channel, link.ts, exc)
            return thread_link(link.channel, link.ts)

    async def _tell_alert(self, alert: ThreadLink, user: str, channel: str) -> None:
        """One note per window in the alert's thread, naming everyone who asked and where:
        posted for the first asker, then updated (coalesced, like a root) for the others."""
        async with self.state.asked_lock(alert.channel, alert.ts):
            now = time.time()
            doc = await self.state.asked(alert.channel, alert.ts)
            if doc is None or now - float(doc["since"]) > self.share_window_s:
                doc = {"since": now, "ts": "", "askers": [], "total": 0}
            doc["askers"] = [*doc["askers"], [user, channel]][-ASKERS_SHOWN:]
            doc["total"] = int(doc["total"]) + 1
            ttl = self.share_window_s + 60
            if not doc["ts"]:
                note = blocks.notice(_asked_text(doc))
                try:
                    doc["ts"] = await post_once(
                        self.client,
                        channel=alert.channel,
                        thread_ts=alert.ts,
                        key=f"asked:{uuid.uuid4().hex}",
                        message=note,
                    )
                except (SlackApiError, aiohttp.ClientError) as exc:
                    log.warning("could not post the note in the alert's thread: %s", exc)
                    return
                self.sink.roots.posted(alert.channel, str(doc["ts"]), note)
                await self.state.record_asked(alert.channel, alert.ts, doc, ttl)
                return
            await self.state.record_asked(alert.channel, alert.ts, doc, ttl)

        async def render() -> dict[str, object] | None:
            latest = await self.state.asked(alert.channel, alert.ts)
            return blocks.notice(_asked_text(latest)) if latest else None

        self.sink.roots.want(alert.channel, str(doc["ts"]), render)

    # What the buttons do ---------------------------------------------------------------------
    async def rerun(
        self,
        thread: DiagnosisThread,
        *,
        user: str,
        reply: Reply,
        step: str | None = None,
        trigger: str = "rerun",
    ) -> None:
        """Run the sequence (or one step) again in the same thread, with a new verdict."""
        if step is not None and step_registry.step_named(step) is None:
            names = ", ".join(step_registry.step_names()) or "none installed"
            await reply(f"There is no check called `{escape(step)}`. Checks: {names}.")
            return
        typed, places = target_and_places(thread.target)
        try:
            target = parse_target(typed, self.settings)
            ctx = await prepare(target, self.settings, places or None)
        except (BadTarget, TargetRefused) as exc:
            await reply(f"⚠️ {escape(str(exc))}")
            return
        ctx.asker_reports_failure = True  # as the `/502` that started the thread
        previous: list[StepResult] = []
        if step is not None:
            old = await self.state.request_doc(thread.current)
            kept = {d["name"]: StepResult.from_dict(d) for d in old.get("previous") or []}
            kept.update(await self.state.results(thread.current))
            previous = [r for name, r in kept.items() if name != step]
        if step is None:
            # Always a fresh run, which becomes the site's flight: later `/502`s share it.
            request = await self._flight_request(ctx, user, trigger)
        else:
            request = DiagnosisRequest.new(
                ctx,
                steps=[step],
                origin={
                    "kind": "slack",
                    "channel": thread.channel,
                    "root_ts": thread.root_ts,
                    "user": user,
                    "trigger": trigger,
                },
                previous=previous,
            )
            await remember_request(self.state, request)
        async with self.state.thread_lock(thread.channel, thread.root_ts):
            thread = await self.state.thread(thread.channel, thread.root_ts) or thread
            thread.current, thread.cause = request.id, None
            thread.runs += 1
            await self.state.save_thread(thread)
            await self.state.add_sharer(request.id, thread.channel, thread.root_ts)
        self.sink.refresh_root(thread)
        which = f"the {escape(step)} check" if step else "the whole diagnosis"
        await self.note(thread, f"🔁 {user_mention(user)} re-runs {which}.")
        if step is None:
            await self.flights.fresh(request, flight_key(ctx))
        else:
            await self.carrier.submit(request)

    async def take(self, thread: DiagnosisThread, user: str) -> None:
        async with self.state.thread_lock(thread.channel, thread.root_ts):
            thread = await self.state.thread(thread.channel, thread.root_ts) or thread
            thread.taken_by, thread.taken_at = user, time.time()
            await self.state.save_thread(thread)
        self.sink.refresh_root(thread)
        await self.note(thread, f"{on_it(user)}.")

    async def resolve(self, thread: DiagnosisThread, user: str) -> None:
        async with self.state.thread_lock(thread.channel, thread.root_ts):
            thread = await self.state.thread(thread.channel, thread.root_ts) or thread
            if thread.resolved_at is None:
                thread.resolved_by, thread.resolved_at = user, time.time()
                await self.state.save_thread(thread)
        self.sink.refresh_root(thread)
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

    async def rerun(
        self, user: str, reply: Reply, step: str | None = None, trigger: str = "rerun"
    ) -> None:
        await self.threads.rerun(self.thread, user=user, reply=reply, step=step, trigger=trigger)

    async def escalate(self, user: str, reply: Reply) -> None:
        await self.threads.escalate(self.thread, user, reply)


def _asked_text(doc: dict[str, object]) -> str:
    askers = doc.get("askers")
    pairs = [(str(u), str(c)) for u, c in askers] if isinstance(askers, list) else []
    total = doc.get("total")
    return asked_note(pairs, int(total) if isinstance(total, int) else len(pairs))
