"""What alert messages say: the incident's root message, a grouped alert's root, the notes
in a thread, and `/502 status`'s list of open incidents and mutes.

The root message is rewritten (chat.update) as the incident moves: failing → diagnosing →
diagnosed (cause) → taken by @x → recovered / resolved, with the duration. Thread notes say
what happened in between ("failing again", "recovered after 12 min"). Text from an alert or
a site is escaped (bot.render.wording) before it is posted.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.alerts.store import OPEN, RECOVERED, RESOLVED, Incident, Mute, Storm
from bot.render.mentions import user_mention
from bot.render.wording import at_most, cut, duration, escape, on_it, slack_time, thread_link

SITES_SHOWN = 40  # sites named in a storm's root message before "…and N more"
ALERTS_SHOWN = 5  # firing alerts named on an incident's root before "…and N more"
NOTED_SHOWN = 10  # alerts named in one thread note before "…and N more"
ALERT_TEXT_CHARS = 200  # an alert's text as the root and the notes quote it
STATUS_LINES = 20  # open incidents listed by `/502 status` before "…and N more"


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
    firing = _firing_line(incident)
    if firing:
        lines.append(firing)
    extra = []
    if incident.alerts > 1 and not firing:
        extra.append(f"{incident.alerts} alerts")
    if incident.flaps:
        extra.append(f"flapping: failed again {incident.flaps}×")
    if extra:
        lines.append(" · ".join(extra))
    if mute is not None and incident.state == OPEN:
        by = f" by {user_mention(mute.by)}" if mute.by else ""
        lines.append(f":mute: Muted{by} until {slack_time(mute.until)}")
    return "\n".join(lines)


def _listed(texts: Sequence[str], limit: int) -> str:
    """Alert texts, escaped and cut, joined on one line; "…and N more" past ``limit``."""
    shown = [escape(cut(t, ALERT_TEXT_CHARS)) for t in texts[:limit]]
    more = f" …and {len(texts) - limit} more" if len(texts) > limit else ""
    return " · ".join(shown) + more


def _firing_line(incident: Incident) -> str | None:
    """The alerts firing now, once the incident has had more than one (else "What failed"
    already says it)."""
    if incident.state == RESOLVED or not incident.firing or incident.alerts <= 1:
        return None
    texts = list(incident.firing.values())
    return f"*Alerts firing:* {len(texts)} of {incident.alerts} — {_listed(texts, ALERTS_SHOWN)}"


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


def storm_now_text(storm: Storm, members: Sequence[Incident], now: float) -> str:
    """The grouped root once its sites move: how many still fail."""
    states = {
        state: sum(1 for i in members if i.state == state) for state in (OPEN, RECOVERED, RESOLVED)
    }
    return storm_text(storm, now) + (
        f"\n*Now:* {states[OPEN]} failing, {states[RECOVERED]} recovered, "
        f"{states[RESOLVED]} resolved"
    )


# Thread notes ------------------------------------------------------------------------------
def another_alert_note(source: str, what: str) -> str:
    return f":rotating_light: Another alert ({source}): {escape(what)}"


def alerts_changed_note(
    source: str, started: Sequence[str], ended: Sequence[str], still_firing: int
) -> str:
    """One note for what one notification changed: alerts that began, alerts that ended."""
    lines: list[str] = []
    if len(started) == 1:
        lines.append(another_alert_note(source, cut(started[0], ALERT_TEXT_CHARS)))
    elif started:
        lines.append(
            f":rotating_light: {len(started)} more alerts ({source}): "
            + _listed(started, NOTED_SHOWN)
        )
    if ended:
        what = "Alert" if len(ended) == 1 else f"{len(ended)} alerts"
        lines.append(
            f":large_green_circle: {what} resolved ({source}): {_listed(ended, NOTED_SHOWN)}"
            f" — {still_firing} still firing"
        )
    return "\n".join(lines)


def failing_again_note(incident: Incident, what: str) -> str:
    return f":red_circle: *{escape(incident.site)}* is failing again: {escape(what)}"


def recovered_note(incident: Incident, now: float) -> str:
    took = duration(now - incident.since)
    return f":large_green_circle: *{escape(incident.site)}* recovered after {took}"


def resolved_note(incident: Incident, user: str | None, why: str, now: float) -> str:
    who = f" by {user_mention(user)}" if user else f" ({why})"
    took = duration(now - incident.since)
    return f":white_check_mark: *{escape(incident.site)}* resolved{who} after {took}"


def also_failing_note(newcomers: Sequence[Incident]) -> str:
    names = ", ".join(escape(i.site) for i in newcomers)
    return f":heavy_plus_sign: Also failing: {names}"


def rerun_note(user: str) -> str:
    return f":repeat: {user_mention(user)} re-runs the diagnosis"


def taken_note(user: str) -> str:
    return on_it(user)


# `/502 status` and the mute commands -----------------------------------------------------------
def status_text(open_incidents: Sequence[Incident], mutes: Sequence[Mute], now: float) -> str:
    """Open incidents with links to their threads, and the mutes."""
    lines: list[str] = []
    for incident in open_incidents:
        link = ""
        if incident.channel and incident.root_ts:
            link = f" <{thread_link(incident.channel, incident.root_ts)}|thread>"
        taken = f", taken by {user_mention(incident.taken_by)}" if incident.taken_by else ""
        cause = f", `{escape(incident.cause)}`" if incident.cause else ""
        lines.append(
            f":red_circle: *{escape(incident.site)}* failing for "
            f"{duration(now - incident.since)}{cause}{taken}{link}"
        )
    lines = at_most(lines, STATUS_LINES)
    if not lines:
        lines.append(":large_green_circle: No open incidents.")
    for mute in mutes:
        by = f" by {user_mention(mute.by)}" if mute.by else ""
        lines.append(f":mute: {escape(mute.site)} muted{by} until {slack_time(mute.until)}")
    return "\n".join(lines)


def muted_text(mute: Mute) -> str:
    return f":mute: {escape(mute.site)} is muted until {slack_time(mute.until)}."


def unmuted_text(site: str, was_muted: bool) -> str:
    return f":bell: {escape(site)} alerts again." if was_muted else f"{escape(site)} was not muted."
