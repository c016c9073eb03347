"""The private answers of `/502`: help, the configured sites, the open `/502` threads, and
what the bot says when it cannot work (Redis out of reach or not configured, no worker).

Plain mrkdwn texts (not Block Kit): Slack shows them only to the person who asked (the
"waiting for a worker" line goes on a root message, as one context line).
"""

from __future__ import annotations

from collections.abc import Sequence

from badgateway.bot.render.mentions import channel_mention, user_mention
from badgateway.bot.render.slack_blocks import MAX_SECTION_TEXT
from badgateway.bot.render.wording import at_most, cut, escape, slack_date_time, slack_time
from badgateway.bot.state import DiagnosisThread
from badgateway.checks import steps as step_registry
from badgateway.checks.settings import Settings

SITES_SHOWN = 40
THREADS_SHOWN = 20


# `/502` words of the alerting side, which lives in Redis: without it they are not targets.
REDIS_COMMANDS = ("mute", "unmute")


def help_text() -> str:
    names = ", ".join(step_registry.step_names()) or "reload, dns, firewall, logs, host"
    return "\n".join(
        [
            "*badgateway* says why a site answers 502 Bad Gateway.",
            "• `/502 shop.example.com` — diagnose a host, a URL or a site's name",
            "• `/502 shop from eu-west` (or `from eu-west,us-east`) — probe only from those "
            "places (`/502 sites` lists each site's)",
            "• `/502 sites` — the configured sites",
            "• `/502 status` — open incidents",
            "• `/502 history SITE` — its last day: checks, outages, changes, deploy markers",
            "• `/502 mute SITE 1h` (s, m, h or d) — no automatic alerts for a site for that long",
            "• `/502 unmute SITE` — alerts for the site again",
            "• `/502 help` — this text",
            "• In a diagnosis thread: `@badgateway rerun`, `@badgateway rerun dns`, "
            "`@badgateway help`",
            f"Checks, in order: {names}.",
        ]
    )


def no_places_text(settings: Settings, target: str) -> str:
    """`/502 shop from` with nothing after ``from``: which places there are."""
    places = ", ".join(f"`{escape(p)}`" for p in settings.vantages) or "none are configured"
    return (
        f"⚠️ Name the places after `from`, e.g. `/502 {escape(cut(target, 80))} from eu-west`. "
        f"The places: {places}."
    )


def needs_redis_text(word: str) -> str:
    """`/502 mute` where the bot runs without Redis (no REDIS_URL): no alerts to mute."""
    return (
        f"⚠️ `/502 {escape(word)}` needs Redis: automatic alerts and mutes are kept there, and "
        "this badgateway runs without it (`REDIS_URL` is not set). `/502 TARGET` works."
    )


def unavailable_text(problem: str) -> str:
    """The one line a user gets when the bot's Redis is out of reach: nothing was done."""
    return (
        f"⚠️ badgateway cannot work right now: {escape(problem)}. Nothing was run or changed; "
        "try again in a minute, and tell whoever runs badgateway if it goes on."
    )


def waiting_for_worker_text(since: float) -> str:
    """A root's line while no worker has taken its diagnosis."""
    return f"⏳ Waiting for a worker since {slack_time(since)}; is `badgateway worker` running?"


def waiting_root_fallback(target: str) -> str:
    """The notification text of a root waiting for a worker."""
    return f"502 diagnosis for {escape(target)}: waiting for a worker"


def sites_text(settings: Settings) -> str:
    if not settings.sites:
        return "No sites are configured; `/502 HOST` works for any host the settings allow."
    rows = []
    for site in settings.sites:
        channel = f" → {escape(site.channel)}" if site.channel else ""
        places = settings.vantages_for(site)
        where = f" · from {escape(', '.join(places))}" if places else ""
        rows.append(f"• `{escape(site.name)}` {escape(site.url)}{channel}{where}")
    lines = ["*Configured sites*", *at_most(rows, SITES_SHOWN)]
    return cut("\n".join(lines), MAX_SECTION_TEXT)


def status_text(threads: Sequence[DiagnosisThread]) -> str:
    """The `/502` threads still open, oldest first."""
    if not threads:
        return "No open incidents."
    rows = []
    for thread in threads:
        cause = f"`{thread.cause}`" if thread.cause else "running"
        owner = f", {user_mention(thread.taken_by)} on it" if thread.taken_by else ""
        rows.append(
            f"• {escape(thread.target)} in {channel_mention(thread.channel)} — {cause}{owner}, "
            f"asked by {user_mention(thread.requester)} {slack_date_time(thread.created_at)}"
        )
    lines = [f"*Open incidents* ({len(threads)})", *at_most(rows, THREADS_SHOWN)]
    return cut("\n".join(lines), MAX_SECTION_TEXT)
