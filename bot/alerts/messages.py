"""What alert messages say: the incident's root message, a grouped alert's root, the notes
in a thread, and `/502 status`'s list of open incidents and mutes.

The root message is rewritten (chat.update) as the incident moves: failing → diagnosing →
diagnosed (cause) → taken by @x → recovered / resolved, with the duration. Thread notes say
what happened in between ("failing again", "recovered after 12 min"). Text from an alert or
a site is escaped (bot.render.wording) before it is posted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from badgateway.bot.alerts.places import DOWN, FINE, where
from badgateway.bot.alerts.store import OPEN, RECOVERED, RESOLVED, Incident, Mute, Storm
from badgateway.bot.render.chat_text import waiting_for_worker_text
from badgateway.bot.render.mentions import user_mention
from badgateway.bot.render.slack_blocks import (
    MAX_OPTION_VALUE,
    MAX_OPTIONS,
    Message,
    context,
    fit,
    option,
    ordered_names,
    section,
    sections,
    site_menu,
    step_message,
    verdict_message,
)
from badgateway.bot.render.wording import (
    at_most,
    cut,
    duration,
    escape,
    on_it,
    slack_time,
    thread_link,
)
from badgateway.checks.model import Diagnosis

TABLE_ROWS = 400  # a storm's table rows before "…and N more" (blocks cut it sooner)
TABLE_BLOCKS = 45  # of Block Kit's 50 blocks, the head and the table's sections
GROUP_NAMES = 30  # sites named in a cause group's reply before "…and N more"
SHOW_HINT = (
    "A site's full diagnosis: choose it in the menu, or mention me in this thread with `show SITE`."
)
SHOW_MENU = "Show a site's full diagnosis…"
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
    if incident.last_good_at is not None:  # when it started, as the probes saw it
        lines.append(
            f"*Started:* last good check {slack_time(incident.last_good_at)} → "
            f"first failure {slack_time(incident.since)}"
        )
    if incident.what_failed:
        lines.append(f"*What failed:* {escape(incident.what_failed)}")
    if incident.places:
        lines.append(where_line(incident))
    if incident.diagnosis == "diagnosing" and incident.waiting_since is not None:
        lines.append(f"*Diagnosis:* {waiting_for_worker_text(incident.waiting_since)}")
    elif incident.diagnosis == "diagnosing":
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


def where_line(incident: Incident) -> str:
    """From where the site fails, as the latest probe from each place saw it."""
    return f"*Where:* {escape(where(incident.places))}"


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
    """The grouped root's first words: how many sites, since when."""
    return (
        f":thunder_cloud_and_rain: *{len(storm.sites)} sites failing at once* since "
        f"{slack_time(storm.opened_at)} ({duration(now - storm.opened_at)})"
    )


def _row(incident: Incident) -> str:
    """One line of a storm's table: site · cause · since."""
    if incident.state == RESOLVED:
        cause = ":white_check_mark: resolved"
    elif incident.state == RECOVERED:
        cause = ":large_green_circle: recovered"
    elif incident.diagnosis == "diagnosed" and incident.cause:
        cause = f"`{escape(incident.cause)}`"
    elif incident.diagnosis.startswith("not diagnosed"):
        cause = "not diagnosed"
    elif incident.waiting_since is not None:  # queued, and no worker has taken it
        cause = ":hourglass: waiting for a worker"
    else:
        cause = ":hourglass_flowing_sand: diagnosing"
    since = time.strftime("%H:%M:%S", time.gmtime(incident.since))
    return f"*{escape(incident.site)}* · {cause} · since {since}"


def accounted_for(incident: Incident) -> bool:
    """The site's cause is known (or known not to come): the storm's table is final for it."""
    return incident.diagnosis != "diagnosing" and incident.diagnosis != "pending"


def storm_message(storm: Storm, members: Sequence[Incident], now: float) -> Message:
    """A grouped alert's root: the sites' table (site · cause · since), rewritten as their
    diagnoses finish; "…and N more" past what Block Kit holds."""
    done = sum(1 for i in members if accounted_for(i))
    states = {s: sum(1 for i in members if i.state == s) for s in (OPEN, RECOVERED, RESOLVED)}
    head = [
        storm_text(storm, now),
        f"*Diagnosed:* {done} of {len(members)} · *Now:* {states[OPEN]} failing, "
        f"{states[RECOVERED]} recovered, {states[RESOLVED]} resolved",
    ]
    waiting = [
        i.waiting_since
        for i in members
        if i.waiting_since is not None and not accounted_for(i) and i.state == OPEN
    ]
    if waiting:  # said once for the table; each waiting site's row says it too
        head.append(f"*Diagnosis:* {waiting_for_worker_text(min(waiting))} ({len(waiting)} queued)")
    if storm.shared:
        head.append("*What they share:* " + "; ".join(escape(s) for s in storm.shared))
    ordered = sorted(members, key=lambda i: (i.cause or "~", i.site))
    rows = at_most([_row(i) for i in ordered], TABLE_ROWS)
    blocks = [section("\n".join(head)), *sections(rows)]
    if len(blocks) > TABLE_BLOCKS:
        shown = sum(b["text"]["text"].count("\n") + 1 for b in blocks[1:TABLE_BLOCKS])
        blocks = [*blocks[:TABLE_BLOCKS], section(f"…and {len(ordered) - shown} more")]
    blocks += [site_menu(SHOW_MENU), context(SHOW_HINT)]
    text = f":thunder_cloud_and_rain: {len(members)} sites failing at once: {done} diagnosed"
    return fit({"text": text, "blocks": blocks})


def storm_now_text(storm: Storm, members: Sequence[Incident], now: float) -> str:
    """The grouped root as plain text (what the message's blocks say)."""
    message = storm_message(storm, members, now)
    return "\n".join(b["text"]["text"] for b in message["blocks"] if b.get("type") == "section")


def shared_reply(storm: Storm) -> str:
    """The storm thread's first reply: what the sites have in common."""
    if storm.shared:
        return ":link: *What they share:* " + "; ".join(escape(s) for s in storm.shared)
    return ":link: *What they share:* nothing obvious (different upstreams and addresses)"


def group_reply(cause: str, group: Sequence[Incident], summary: str | None) -> str:
    """One reply per cause: how many sites, which, and what the cause means."""
    names = [escape(i.site) for i in sorted(group, key=lambda i: i.site)]
    shown = ", ".join(names[:GROUP_NAMES]) + (
        f" …and {len(names) - GROUP_NAMES} more" if len(names) > GROUP_NAMES else ""
    )
    what = f"\n{escape(cut(summary, ALERT_TEXT_CHARS))}" if summary else ""
    sites = "site" if len(names) == 1 else "sites"
    return f":mag: *`{escape(cause)}`* — {len(names)} {sites}: {shown}{what}\n_{SHOW_HINT}_"


def site_diagnosis(incident: Incident, diagnosis: Diagnosis) -> Message:
    """A storm site's whole diagnosis in one message: which site, each check, the verdict
    (its buttons left out: in a grouped thread they would act on every site)."""
    by_name = {r.name: r for r in diagnosis.steps}
    parts = [step_message(by_name[n]) for n in ordered_names(by_name)]
    verdict = verdict_message(diagnosis, "")
    head = f":mag_right: *{escape(incident.site)}*: its full diagnosis ({escape(incident.url)})"
    body = [b for part in [*parts, verdict] for b in part["blocks"] if b.get("type") != "actions"]
    text = f"{escape(incident.site)}: {verdict['text']}"
    return fit({"text": text, "blocks": [section(head), *body]})


def site_options(members: Sequence[Incident], typed: str) -> list[dict[str, object]]:
    """The grouped alert's sites for its menu, as the user types: those whose name contains
    what was typed, failing ones first, at most Slack's 100 per answer."""
    wanted = typed.strip().lower()
    rank = {OPEN: 0, RECOVERED: 1, RESOLVED: 2}
    found = sorted(
        (i for i in members if wanted in i.site.lower() and len(i.site) <= MAX_OPTION_VALUE),
        key=lambda i: (rank.get(i.state, 3), i.site),
    )
    return [option(_option_text(i), i.site) for i in found[:MAX_OPTIONS]]


def _option_text(incident: Incident) -> str:
    """A menu option: the site and where it stands (plain text: no mrkdwn in options)."""
    if incident.state != OPEN:
        return f"{incident.site} · {incident.state}"
    if incident.diagnosis == "diagnosed" and incident.cause:
        return f"{incident.site} · {incident.cause}"
    return f"{incident.site} · diagnosing"


def already_shown(incident: Incident, link: str) -> str:
    """A private answer: this site's latest diagnosis is in the thread already."""
    return f"{escape(incident.site)}'s latest diagnosis is already shown: {link}"


def shown_elsewhere(incident: Incident, link: str) -> str:
    """In the grouped thread, where a site's diagnosis went (its own channel)."""
    return f":mag_right: *{escape(incident.site)}*: its full diagnosis is in {link}"


def not_in_storm(site: str) -> str:
    return f"{escape(site)} is not one of this grouped alert's sites."


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


def _where_after(incident: Incident) -> str:
    """ " — down from eu-west; fine from us-east" for a site probed from places, else ""."""
    return f" — {escape(where(incident.places))}" if incident.places else ""


def recovered_note(incident: Incident, now: float) -> str:
    took = duration(now - incident.since)
    site = escape(incident.site)
    return f":large_green_circle: *{site}* recovered after {took}{_where_after(incident)}"


def resolved_note(incident: Incident, user: str | None, why: str, now: float) -> str:
    who = f" by {user_mention(user)}" if user else f" ({why})"
    took = duration(now - incident.since)
    site = escape(incident.site)
    return f":white_check_mark: *{site}* resolved{who} after {took}{_where_after(incident)}"


def places_moved_note(incident: Incident, moved: dict[str, list[str]]) -> str:
    """While an incident is open, places whose probe moved: fine again, or down too."""
    lines = []
    if moved.get(FINE):
        lines.append(f":large_green_circle: Fine again from {escape(', '.join(moved[FINE]))}")
    if moved.get(DOWN):
        lines.append(f":red_circle: Now down from {escape(', '.join(moved[DOWN]))} too")
    lines.append(f"*{escape(incident.site)}* now: {escape(where(incident.places))}")
    return "\n".join(lines)


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
