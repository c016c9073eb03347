"""`/502 history SITE [HOURS]`: a configured site's recent history, answered privately as
Block Kit (bot.render.history): its checks as sparklines, outages, changes and markers."""

from __future__ import annotations

from badgateway.bot.history_store import HistoryStore, marked_site, timeline_of
from badgateway.bot.render.history import history_message
from badgateway.bot.render.wording import escape
from badgateway.bot.threads import Answer, CommandHandler
from badgateway.checks.settings import Settings

DEFAULT_HOURS = 24.0
MAX_HOURS = 24.0 * 30
USAGE = "Usage: `/502 history SITE [HOURS]`, e.g. `/502 history shop` (the last 24 h)."


def history_command(settings: Settings, store: HistoryStore) -> CommandHandler:
    """The handler of the `history` word, reading ``store``."""

    async def history(words: list[str], user: str) -> Answer:
        if len(words) not in (2, 3):
            return USAGE
        site = marked_site(words[1], settings)
        if site is None:
            return f"⚠️ Unknown site {escape(words[1][:100])}: `/502 sites` lists them."
        hours = DEFAULT_HOURS
        if len(words) == 3:
            try:
                hours = float(words[2])
            except ValueError:
                return USAGE
            if not 0 < hours <= MAX_HOURS:
                return f"⚠️ HOURS must be above 0 and at most {MAX_HOURS:g}."
        return history_message(await timeline_of(store, site.name, hours))

    return history
