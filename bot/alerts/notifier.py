"""Alert messages in Slack: the incident's root message, its updates, and thread notes.

The root message is rewritten (chat.update) as the incident moves: failing → diagnosing →
diagnosed (cause) → taken by @x → recovered / resolved, with the duration. Thread notes say
what happened in between ("failing again", "recovered after 12 min"). Text from an alert or
a site is escaped for mrkdwn before it is posted.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.store import OPEN, RECOVERED, RESOLVED, Incident, Mute, Storm
from bot.render.mentions import user_mention
from bot.slack.client import post_once, update
from checks.redact import redact

SECTION_LIMIT = 3000  # Block Kit: characters in one section's text
SITES_SHOWN = 40  # sites named in a storm's root message before "…and N more"


def escape(text: str) -> str:
    """Secrets blanked, then Slack's mrkdwn control characters escaped, so an alert's
    text can neither leak a token nor ping or fake a link."""
    return redact(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 5 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def slack_time(epoch: float) -> str:
    """A time each reader sees in their own time zone."""
    fallback = time.strftime("%H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{{time}}|{fallback}>"


def root_text(incident: Incident, mute: Mute | None, now: float) -> str:
    site = f"*{escape(incident.site)}*"
    lines: list[str]
    if incident.state == RESOLVED:
        took = duration((incident.resolved_at or now) - incident.since)
        who = f" by {user_mention(incident.resolved_by)}" if incident.resolved_by else ""
        lines = [f":white_check_mark: {site} resolved{who} after {took}"]
    elif incident.state == RECOVERED:
        took = duration((incident.recovered_at or now) - incident.since)
        lines = [f":large_green_circle: {site} recovered after {took}"]
    else:
        lines = [
            f":red_circle: {site} is failing since {slack_time(incident.since)}"
            f" ({duration(now - incident.since)})"
        ]
    lines.append(f"*URL:* {escape(incident.url)}")
    if incident.what_failed:
        lines.append(f"*What failed:* {escape(incident.what_failed)}")
    if incident.diagnosis == "diagnosing":
        lines.append("*Diagnosis:* running in the thread…")
    elif incident.diagnosis == "diagnosed" and incident.cause:
        summary = f" — {escape(incident.cause_summary)}" if incident.cause_summary else ""
        lines.append(f"*Diagnosed:* `{escape(incident.cause)}`{summary}")
    elif incident.diagnosis.startswith("not diagnosed"):
        lines.append(f"*Diagnosis:* {escape(incident.diagnosis)}")
    if incident.taken_by:
        lines.append(f"*Taken by* {user_mention(incident.taken_by)}")
    extra = []
    if incident.alerts > 1:
        extra.append(f"{incident.alerts} alerts")
    if incident.flaps:
        extra.append(f"flapping: failed again {incident.flaps}×")
    if extra:
        lines.append(" · ".join(extra))
    if mute is not None and incident.state == OPEN:
        by = f" by {user_mention(mute.by)}" if mute.by else ""
        lines.append(f":mute: Muted{by} until {slack_time(mute.until)}")
    return "\n".join(lines)


def storm_text(storm: Storm, now: float) -> str:
    shown = ", ".join(escape(s) for s in storm.sites[:SITES_SHOWN])
    more = len(storm.sites) - SITES_SHOWN
    if more > 0:
        shown += f" …and {more} more"
    lines = [
        f":thunder_cloud_and_rain: *{len(storm.sites)} sites failing at once* since "
        f"{slack_time(storm.opened_at)} ({duration(now - storm.opened_at)})",
    ]
    if storm.shared:
        lines.append("*What they share:* " + "; ".join(escape(s) for s in storm.shared))
    else:
        lines.append("*What they share:* nothing obvious (different upstreams and addresses)")
    lines.append(f"*Sites:* {shown}")
    lines.append("Each site's diagnosis follows in this thread.")
    return "\n".join(lines)


def _blocks(text: str) -> list[dict[str, Any]]:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


class SlackNotifier:
    """Posts and updates alert messages through the Slack app's client: retries on 429, 5xx
    and dropped connections, and ``post_once`` so an ambiguous failure never posts twice.
    Make the client with ``bot.slack.client.make_web_client(config)``."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self, channel: str, text: str, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        """Post; returns the message's ts. ``key`` names the message for ``post_once``."""
        message = {"text": text, "blocks": _blocks(text)}
        key = key or f"alert:{uuid.uuid4().hex}"
        return await post_once(
            self.client, channel=channel, key=key, message=message, thread_ts=thread_ts
        )

    async def update(self, channel: str, ts: str, text: str) -> None:
        await update(
            self.client, channel=channel, ts=ts, message={"text": text, "blocks": _blocks(text)}
        )
