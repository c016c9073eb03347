"""Alerts in Slack's chat: an alert's thread as a ``ThreadKind`` (its verdict buttons), its
part of `/502 status`, `/502 mute SITE 1h` and `/502 unmute SITE`, and the open alert's
thread that a `/502` root for an alerting site links to (a ``ThreadLinks``).

In a grouped alert's thread a button acts on every site of the group, and
`@badgateway show SITE` posts that site's full diagnosis (its checks, then the verdict): in
the thread, or as a thread of its own in the site's channel when it has one (linked from the
grouped thread). The Slack side (bot.slack.chatops) routes to these through bot.threads; it
never imports this package.
"""

from __future__ import annotations

import uuid
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.alerts import messages
from badgateway.bot.alerts.incidents import Incidents, parse_duration
from badgateway.bot.alerts.store import OPEN, Incident
from badgateway.bot.pipeline import Carrier
from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.render.mentions import is_user_id
from badgateway.bot.render.wording import escape, thread_link
from badgateway.bot.slack_client import post_once
from badgateway.bot.state import BotState
from badgateway.bot.threads import CommandHandler, Reply, ThreadLink
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Diagnosis

DEFAULT_MUTE = "1h"
USAGE = "Write `/502 mute SITE 1h` (s, m, h or d), `/502 unmute SITE`."
UNKNOWN_PRESSER = "badgateway could not tell who pressed this button; nothing was changed."
STILL_RUNNING = "The diagnosis is still running; escalate once the verdict is in."


class AlertChat:
    """``state``: where the Slack sink keeps each diagnosis (what *Escalate* posts)."""

    def __init__(
        self,
        incidents: Incidents,
        state: BotState,
        client: AsyncWebClient,
        carrier: Carrier | None,
    ) -> None:
        self.incidents = incidents
        self.state = state
        self.client = client
        self.carrier = carrier

    # ThreadKind ------------------------------------------------------------------------------
    async def owner(self, channel: str, ts: str) -> AlertThreadOwner | None:
        incidents = await self.incidents.incidents_for_thread(channel, ts)
        return AlertThreadOwner(self, incidents, channel, ts) if incidents else None

    async def status_text(self) -> str:
        return await self.incidents.status_text()

    # ThreadLinks: a `/502` root for an alerting site links to the alert's thread -------------
    async def open_thread(self, ctx: ProbeContext) -> ThreadLink | None:
        incident = await self.incidents.incident_for_url(ctx.target.url)
        if incident is None or not incident.channel or not incident.root_ts:
            return None
        return ThreadLink(incident.channel, incident.root_ts)

    # `/502 mute SITE 1h`, `/502 unmute SITE` ---------------------------------------------------
    def commands(self) -> dict[str, CommandHandler]:
        return {"mute": self.mute, "unmute": self.unmute}

    async def _unknown(self, site: str) -> str | None:
        if self.incidents.settings.site_named(site) is not None:
            return None
        if await self.incidents.incident_for_site(site) is not None:
            return None
        return f"There is no site named {escape(site)} (see `/502 sites`). {USAGE}"

    async def mute(self, words: list[str], user: str) -> str:
        if len(words) not in (2, 3):
            return USAGE
        site = words[1]
        unknown = await self._unknown(site)
        if unknown:
            return unknown
        try:
            seconds = parse_duration(words[2] if len(words) == 3 else DEFAULT_MUTE)
        except ValueError as exc:
            return f"{escape(str(exc))}. {USAGE}"
        # The muter is shown as a mention in every alert: only a Slack user id may be one.
        mute = await self.incidents.mute(site, seconds, user if is_user_id(user) else None)
        return messages.muted_text(mute)

    async def unmute(self, words: list[str], user: str) -> str:
        if len(words) != 2:
            return USAGE
        site = words[1]
        unknown = await self._unknown(site)
        if unknown:
            return unknown
        return messages.unmuted_text(site, await self.incidents.unmute(site))

    # What the buttons do ---------------------------------------------------------------------
    async def escalate(
        self, incidents: list[Incident], *, user: str, channel: str, root_ts: str, reply: Reply
    ) -> None:
        """Post the provider-ready summary of each site's latest diagnosis in the thread."""
        docs = [doc for incident in incidents if (doc := await self.latest(incident)) is not None]
        if not docs:
            await reply(STILL_RUNNING)
            return
        for doc in docs:
            await post_once(
                self.client,
                channel=channel,
                thread_ts=root_ts,
                key=f"escalate:{uuid.uuid4().hex}",
                message=blocks.escalation_message(Diagnosis.from_dict(doc), user),
            )

    async def latest(self, incident: Incident) -> dict[str, Any] | None:
        """The incident's latest diagnosis: as the Slack sink kept it, or (a storm's site,
        not posted) as the alerting side kept it."""
        if incident.diagnosis_id:
            doc = await self.state.diagnosis_doc(incident.diagnosis_id)
            if doc is not None:
                return doc
        return await self.incidents.store.diagnosis(incident.id)

    async def show(self, incident: Incident, *, channel: str, root_ts: str, reply: Reply) -> None:
        """Post a storm site's full diagnosis as one message (its checks in runbook order,
        then the verdict). One post, not seven: a grouped thread is where Slack's one post a
        second per channel bites. Asked for again (typed or chosen twice, by two people at
        once), the same diagnosis is not posted again: the asker gets a private link to it."""
        doc = await self.latest(incident)
        if doc is None:
            await reply(f"{escape(incident.site)}: {STILL_RUNNING}")
            return
        store = self.incidents.store
        thread = f"{channel}:{root_ts}"
        shown = f"{incident.id}:{incident.diagnosis_id or doc.get('started_at', '')}"
        async with store.shown_lock(thread, shown):
            where = await store.shown_at(thread, shown)
            if where is None:
                where = await self._show(incident, Diagnosis.from_dict(doc), channel, root_ts)
                await store.save_shown(thread, shown, *where)
                return
        link = f"<{thread_link(*where)}|here>"
        await reply(messages.already_shown(incident, link))

    async def _show(
        self, incident: Incident, diagnosis: Diagnosis, channel: str, root_ts: str
    ) -> tuple[str, str]:
        """Post the diagnosis: in the thread, or in the site's own channel (linked from the
        thread) when it has one. Returns where it is (channel, ts)."""
        message = messages.site_diagnosis(incident, diagnosis)
        site = self.incidents.settings.site_named(incident.site)
        if site is None or not site.channel or site.channel == channel:
            return channel, await self._post(channel, message, root_ts)
        ts = await self._post(site.channel, message, None)
        link = f"<{thread_link(site.channel, ts)}|<#{site.channel}>>"
        await self._post(channel, blocks.notice(messages.shown_elsewhere(incident, link)), root_ts)
        return site.channel, ts

    async def _post(self, channel: str, message: blocks.Message, thread_ts: str | None) -> str:
        key = f"show:{uuid.uuid4().hex}"
        return await post_once(
            self.client, channel=channel, thread_ts=thread_ts, key=key, message=message
        )


class AlertThreadOwner:
    """A ``ThreadOwner``: the buttons of an alert's thread (every site of a grouped alert).
    The alert notes mention the presser, so only a Slack user id may press."""

    def __init__(self, chat: AlertChat, incidents: list[Incident], channel: str, ts: str) -> None:
        self.chat = chat
        self.incidents = incidents
        self.channel = channel
        self.ts = ts

    async def _presser_known(self, user: str, reply: Reply) -> bool:
        if is_user_id(user):  # the Slack app checks it; the shell's user is one too
            return True
        await reply(UNKNOWN_PRESSER)
        return False

    async def take(self, user: str, reply: Reply) -> None:
        if await self._presser_known(user, reply):
            for incident in self.incidents:
                await self.chat.incidents.take(incident.id, user)

    async def resolve(self, user: str, reply: Reply) -> None:
        if await self._presser_known(user, reply):
            for incident in self.incidents:
                await self.chat.incidents.resolve(incident.id, user)

    async def rerun(
        self, user: str, reply: Reply, step: str | None = None, trigger: str = "rerun"
    ) -> None:
        """The whole diagnosis again (an alert's thread has no one-check re-run). It counts
        under its alert's trigger (bot.alerts.posting.diagnosis_origin)."""
        if await self._presser_known(user, reply):
            still = [i for i in self.incidents if i.state == OPEN] or self.incidents[:1]
            for incident in still:
                await self.chat.incidents.rediagnose(incident.id, user)

    async def escalate(self, user: str, reply: Reply) -> None:
        if await self._presser_known(user, reply):
            await self.chat.escalate(
                self.incidents, user=user, channel=self.channel, root_ts=self.ts, reply=reply
            )

    async def show(self, site: str, user: str, reply: Reply) -> None:
        """`@badgateway show SITE`: one site's full diagnosis (a grouped alert's thread)."""
        found = [i for i in self.incidents if i.site == site]
        if not found:
            await reply(messages.not_in_storm(site))
            return
        await self.chat.show(found[0], channel=self.channel, root_ts=self.ts, reply=reply)

    async def site_options(self, typed: str) -> list[dict[str, object]]:
        """The grouped alert's menu: its sites whose name contains ``typed``."""
        return messages.site_options(self.incidents, typed)
