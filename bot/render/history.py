"""A site's history (checks.timeline) drawn for a terminal and as a Slack message.

Both show the same lines: the status and latency sparklines over the hours asked for, when a
failure going on started, the alert incidents that ended (cause, length, how it ended), the
outages the checks show with their causes and lengths, what changed from one check to the
next, and the markers. In Slack it is Block Kit cut to its limits, every text
that came from a site or a person escaped.
"""

from __future__ import annotations

from typing import Any

from badgateway.bot.render.slack_blocks import (
    MAX_BLOCKS,
    Message,
    context,
    fit,
    header,
    section,
    sections,
)
from badgateway.bot.render.wording import escape
from badgateway.checks.changes import clock_at
from badgateway.checks.readable import duration_text
from badgateway.checks.timeline import GLYPH_FAIL, GLYPH_MIXED, GLYPH_NONE, GLYPH_OK, Timeline

LISTED = 10  # outages, changes and markers listed each; the rest counted
LEGEND = f"{GLYPH_OK} ok  {GLYPH_MIXED} some failed  {GLYPH_FAIL} failing  {GLYPH_NONE} no check"


def _hours(timeline: Timeline) -> str:
    hours = round(timeline.bucket_s * len(timeline.status) / 3600, 1)
    return f"{hours:g} h"


def _clock(timeline: Timeline, iso: str) -> str:
    return clock_at(iso, timeline.until)


def _started_line(timeline: Timeline) -> str | None:
    if timeline.first_failure_at is None:
        return None
    good = _clock(timeline, timeline.last_good_at) if timeline.last_good_at else "never seen"
    first = _clock(timeline, timeline.first_failure_at)
    return f"Failing now: last good check {good} → first failure {first}"


def _outage_lines(timeline: Timeline) -> list[str]:
    lines = []
    for outage in timeline.outages[-LISTED:]:
        end = _clock(timeline, outage.ended_at) if outage.ended_at else "still failing"
        length = duration_text(round(outage.duration_s()))
        lines.append(
            f"{_clock(timeline, outage.started_at)} → {end}: {outage.cause} "
            f"({length}, {outage.checks} failing check{'s' if outage.checks != 1 else ''})"
        )
    return _with_more(lines, len(timeline.outages))


def _incident_lines(timeline: Timeline) -> list[str]:
    lines = [
        f"{_clock(timeline, i.opened_at)} → {_clock(timeline, i.ended_at)}: {i.cause} "
        f"({duration_text(round(i.duration_s()))}, {i.ended})"
        for i in timeline.incidents[-LISTED:]
    ]
    return _with_more(lines, len(timeline.incidents))


def _change_lines(timeline: Timeline) -> list[str]:
    return _with_more([c.message for c in timeline.changes[-LISTED:]], len(timeline.changes))


def _marker_lines(timeline: Timeline) -> list[str]:
    lines = [f"[{m.kind}] {m.line(timeline.until)}" for m in timeline.markers[-LISTED:]]
    return _with_more(lines, len(timeline.markers))


def _with_more(lines: list[str], total: int) -> list[str]:
    more = total - len(lines)
    return [f"…and {more} earlier", *lines] if more > 0 else lines


def _sparklines(timeline: Timeline) -> list[str]:
    top = f" (top {timeline.latency_max_ms} ms)" if timeline.latency_max_ms is not None else ""
    return [f"status  {timeline.status}", f"latency {timeline.latency}{top}"]


def history_text(timeline: Timeline) -> str:
    """For a terminal: a few lines, headed by the site and the span."""
    out = [
        f"{timeline.target}: the last {_hours(timeline)}, {timeline.checks} checks "
        f"({_clock(timeline, timeline.since)} → {_clock(timeline, timeline.until)})",
        *_sparklines(timeline),
        f"        {LEGEND}",
    ]
    started = _started_line(timeline)
    if started:
        out.append(started)
    for title, lines in (
        ("Incidents", _incident_lines(timeline)),
        ("Outages", _outage_lines(timeline)),
        ("Changes", _change_lines(timeline)),
        ("Markers", _marker_lines(timeline)),
    ):
        out.append(f"{title}:" if lines else f"{title}: none")
        out += [f"  {line}" for line in lines]
    return "\n".join(out) + "\n"


def history_message(timeline: Timeline) -> Message:
    """For Slack: Block Kit within its limits."""
    target = escape(timeline.target)
    blocks: list[dict[str, Any]] = [
        header(f"History of {timeline.target}: the last {_hours(timeline)}"),
        section("```" + "\n".join(_sparklines(timeline)) + "```"),
        context(
            f"{timeline.checks} checks, {_clock(timeline, timeline.since)} → "
            f"{_clock(timeline, timeline.until)}; {LEGEND}"
        ),
    ]
    started = _started_line(timeline)
    if started:
        blocks.append(section(f"*{escape(started)}*"))
    for title, lines in (
        ("Incidents", _incident_lines(timeline)),
        ("Outages", _outage_lines(timeline)),
        ("Changes", _change_lines(timeline)),
        ("Markers", _marker_lines(timeline)),
    ):
        if lines:
            blocks += sections([f"*{title}*", *(f"• {escape(line)}" for line in lines)])
        else:
            blocks.append(context(f"{title}: none"))
    text = (
        f"History of {target}: {timeline.checks} checks, {len(timeline.outages)} outages, "
        f"{len(timeline.incidents)} incidents"
    )
    return fit({"text": text, "blocks": blocks[:MAX_BLOCKS]})
