"""The small pieces every Slack message is written with, in one place.

Escaping (secrets redacted, then mrkdwn's control characters escaped), cutting to a length,
durations, the date tokens Slack shows in each reader's time zone, links to threads, and the
phrases both kinds of thread use (who is on it). Mentions and Slack ids are in
bot.render.mentions; what a whole message says is in the modules that build it
(slack_blocks and chat_text here, bot.alerts.messages for alerts).
"""

from __future__ import annotations

import time

from badgateway.bot.render.mentions import channel_mention, escape_mrkdwn, user_mention
from badgateway.checks.redact import redact

ON_IT = "🙋"  # Unicode, not :raising_hand:, so the terminal shell shows it too


def escape(text: object) -> str:
    """Redact, then escape for mrkdwn: text from a site, a log, an alert or a user can
    neither leak a token nor ping, link or format."""
    return escape_mrkdwn(redact(str(text)))


def cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long, ending in "…" when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def at_most(lines: list[str], limit: int) -> list[str]:
    """The first ``limit`` lines, then "…and N more" for the rest."""
    return lines if len(lines) <= limit else [*lines[:limit], f"…and {len(lines) - limit} more"]


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
    """A time of day each reader sees in their own time zone ("14:05"), UTC as fallback."""
    fallback = time.strftime("%H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{{time}}|{fallback}>"


def slack_date_time(epoch: float) -> str:
    """A date and time each reader sees in their own time zone, UTC as fallback."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def thread_link(channel: str, ts: str) -> str:
    """The permalink of a message (a thread's root)."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def on_it(user: str) -> str:
    """'🙋 @user is on it': a person took the thread (a `/502` or an alert)."""
    return f"{ON_IT} {user_mention(user)} is on it"


def alert_link(permalink: str) -> str:
    """What a `/502` root says when its site has an open alert: where the alert is."""
    return f"🚨 This site has an open alert: <{permalink}|see the alert's thread>."


ASKERS_SHOWN = 20


def asked_note(askers: list[tuple[str, str]], total: int) -> str:
    """The one note in an alert's thread naming who asked about its site with `/502`, and
    where: ``askers`` (user, channel) pairs, the newest ``ASKERS_SHOWN`` at most."""
    shown = [
        f"{user_mention(user)} in {channel_mention(channel)}"
        for user, channel in askers[-ASKERS_SHOWN:]
    ]
    more = f", …and {total - len(shown)} more" if total > len(shown) else ""
    return f"👀 Asked with `/502` (each has its thread there): {', '.join(shown)}{more}."
