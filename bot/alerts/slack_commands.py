"""The alert side of the Slack app: `/502 status`, `/502 mute SITE 1h`, `/502 unmute SITE`,
and the verdict buttons pressed in an alert's (or a grouped alert's) thread.

``bot.slack`` calls these before its own handling (each returns None when the request is
not about alerts, so the Slack app carries on as before):

- ``ChatOps.command``: ``answer = await alert_commands.command(text, user)``; if not None,
  ``ack(answer)`` and stop. For "status", join it with the app's own status text.
- ``ChatOps.action``: ``answer = await alert_commands.action(name, user=..., channel=...,
  root_ts=...)``; if not None, the button acted on the alert's incident(s) (reply with
  ``answer`` privately when it is not empty) and stop.
- ``ChatOps.start``: ``incident = await incidents.incident_for_url(ctx.target.url)``; if
  there is one, submit the diagnosis with ``Incidents.origin(incident)`` instead of posting
  a new root message (`/502 TARGET` for a failing site goes into its alert's thread).
"""

from __future__ import annotations

import uuid

from bot.alerts.incidents import Incidents, parse_duration
from bot.alerts.store import OPEN, Incident
from bot.render.mentions import is_user_id
from bot.render.slack_blocks import escalation_message
from bot.render.wording import escape, slack_time
from bot.slack.client import post_once
from bot.state import BotState
from checks.model import Diagnosis

DEFAULT_MUTE = "1h"
USAGE = "Write `/502 mute SITE 1h` (s, m, h or d), `/502 unmute SITE`."


class AlertCommands:
    def __init__(self, incidents: Incidents, state: BotState | None = None) -> None:
        self.incidents = incidents
        self.state = state  # where the Slack sink keeps each diagnosis (for Escalate)

    def _known(self, site: str) -> bool:
        return self.incidents.settings.site_named(site) is not None

    async def command(self, text: str, user: str) -> str | None:
        """The private answer to an alert command, or None when ``text`` is not one."""
        words = text.split()
        verb = words[0].lower() if words else ""
        if verb == "status" and len(words) == 1:
            return await self.incidents.status_text()
        if verb not in ("mute", "unmute"):
            return None
        if len(words) < 2 or len(words) > (3 if verb == "mute" else 2):
            return USAGE
        site = words[1]
        if not self._known(site) and await self.incidents.incident_for_site(site) is None:
            return f"There is no site named {escape(site)} (see `/502 sites`). {USAGE}"
        if verb == "unmute":
            if await self.incidents.unmute(site):
                return f":bell: {escape(site)} alerts again."
            return f"{escape(site)} was not muted."
        try:
            seconds = parse_duration(words[2] if len(words) == 3 else DEFAULT_MUTE)
        except ValueError as exc:
            return f"{escape(str(exc))}. {USAGE}"
        # The muter is shown as a mention in every alert: only a Slack user id may be one.
        mute = await self.incidents.mute(site, seconds, user if is_user_id(user) else None)
        return f":mute: {escape(site)} is muted until {slack_time(mute.until)}."

    async def action(self, name: str, *, user: str, channel: str, root_ts: str) -> str | None:
        """A verdict button in an alert thread; None when the thread is not an alert's.
        In a grouped alert's thread the button acts on every site of the group."""
        incidents = await self.incidents.incidents_for_thread(channel, root_ts)
        if not incidents:
            return None
        if not is_user_id(user):  # the Slack app checks it; the alert notes mention it
            return "badgateway could not tell who pressed this button; nothing was changed."
        if name == "take":
            for incident in incidents:
                await self.incidents.take(incident.id, user)
            return ""
        if name == "resolve":
            for incident in incidents:
                await self.incidents.resolve(incident.id, user)
            return ""
        if name == "rerun":
            still = [i for i in incidents if i.state == OPEN] or incidents[:1]
            for incident in still:
                await self.incidents.rediagnose(incident.id, user)
            return ""
        if name == "escalate":
            return await self._escalate(incidents, user=user, channel=channel, root_ts=root_ts)
        return None

    async def _escalate(
        self, incidents: list[Incident], *, user: str, channel: str, root_ts: str
    ) -> str | None:
        """Post the provider-ready summary of each site's latest diagnosis in the thread.
        The Slack app's own handler cannot: it knows `/502` threads only, not alerts'."""
        notifier = self.incidents.notifier
        if self.state is None or notifier is None:
            return None
        docs = [
            doc
            for incident in incidents
            if incident.diagnosis_id
            and (doc := await self.state.diagnosis_doc(incident.diagnosis_id)) is not None
        ]
        if not docs:
            return "The diagnosis is still running; escalate once the verdict is in."
        for doc in docs:
            await post_once(
                notifier.client,
                channel=channel,
                thread_ts=root_ts,
                key=f"escalate:{uuid.uuid4().hex}",
                message=escalation_message(Diagnosis.from_dict(doc), user),
            )
        return ""
