"""bot.render.history: a site's timeline in a terminal and as Slack Block Kit, within Slack's
limits however much history there is, with what people and sites wrote escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from badgateway.bot.render.history import history_message, history_text
from badgateway.bot.render.slack_blocks import MAX_BLOCKS, block_kit_problems
from badgateway.checks.baseline import Snapshot
from badgateway.checks.markers import Marker
from badgateway.checks.timeline import Timeline, timeline

UNTIL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def busy_day() -> Timeline:
    """A check every 5 minutes for a day, flapping, the Server header changing each time, and
    a marker every half hour whose text tries to ping and link."""
    checks, markers = [], []
    for n in range(288):
        at = (UNTIL - timedelta(minutes=5 * (287 - n))).isoformat(timespec="seconds")
        healthy = n % 3 != 0
        checks.append(
            Snapshot(
                "shop",
                at,
                healthy,
                "healthy" if healthy else "upstream_refused",
                facts={"header.server": f"nginx/1.{n} " + "x" * 200},
                context={"phases_ms": {"total": 50 + n}},
            )
        )
        if n % 6 == 0:
            markers.append(Marker("shop", f"deployed <!channel> <@U123> v{n}", at, "CI", "deploy"))
    return timeline("shop", checks, markers, UNTIL)


def test_a_busy_day_is_valid_block_kit_within_the_limits() -> None:
    message = history_message(busy_day())
    assert block_kit_problems(message) == []
    assert len(message["blocks"]) <= MAX_BLOCKS
    shown = json.dumps(message["blocks"], ensure_ascii=False)
    assert "<!channel>" not in shown and "<@U123>" not in shown  # escaped: no ping
    assert "&lt;!channel&gt;" in shown
    assert "History of shop: the last 24 h" in shown and "…and " in shown


def test_the_terminal_shows_sparklines_outages_changes_and_markers() -> None:
    text = history_text(busy_day())
    lines = text.splitlines()
    assert lines[0] == "shop: the last 24 h, 288 checks (2026-11-30 12:00 UTC → 12:00:00 UTC)"
    assert lines[1].startswith("status  ") and len(lines[1]) == len("status  ") + 48
    assert lines[2].startswith("latency ") and lines[2].endswith("(top 334 ms)")
    assert "Outages:" in lines and "Changes:" in lines and "Markers:" in lines
    assert "  [deploy] deployed <!channel> <@U123> v282 by CI at 11:35:00 UTC" in lines


def test_an_empty_history_says_so() -> None:
    message = history_message(timeline("shop", [], [], UNTIL))
    assert block_kit_problems(message) == []
    text = history_text(timeline("shop", [], [], UNTIL))
    assert "0 checks" in text and "Outages: none" in text and "Markers: none" in text
