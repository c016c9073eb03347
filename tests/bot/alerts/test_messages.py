"""A grouped alert's root and its menu of sites within Slack's limits, however many sites and
however long their names."""

from __future__ import annotations

from badgateway.bot.alerts import messages
from badgateway.bot.alerts.store import OPEN, RECOVERED, RESOLVED, Incident, Storm
from badgateway.bot.render.slack_blocks import (
    MAX_BLOCKS,
    MAX_OPTIONS,
    SHOW_SITE_ACTION,
    block_kit_problems,
    options_problems,
)

NOW = 1_800_000_000.0


def members(count: int, name_chars: int = 7) -> list[Incident]:
    found = []
    for n in range(count):
        name = f"site{n:03d}".ljust(name_chars, "x")
        incident = Incident.new(name, f"http://127.0.0.1:9/{n}", "C0ALERTS", since=NOW - 60)
        incident.diagnosis, incident.cause = "diagnosed", "upstream_refused"
        incident.state = (OPEN, RECOVERED, RESOLVED)[n % 3]
        found.append(incident)
    return found


def test_a_storms_root_keeps_its_menu_within_block_kits_limits() -> None:
    for count, name_chars in ((5, 7), (400, 7), (400, 240)):
        sites = members(count, name_chars)
        storm = Storm("storm-1", "C0ALERTS", "1.2", NOW - 60, sites=[i.site for i in sites])
        message = messages.storm_message(storm, sites, NOW)
        assert block_kit_problems(message) == [], (count, name_chars)
        assert len(message["blocks"]) <= MAX_BLOCKS
        [menu] = [b for b in message["blocks"] if b["type"] == "actions"]
        assert menu["elements"][0]["action_id"] == SHOW_SITE_ACTION


def test_the_menus_options_fit_slacks_limits_failing_sites_first() -> None:
    sites = members(400, 120)
    options = messages.site_options(sites, "")
    assert len(options) == MAX_OPTIONS and options_problems(options) == []
    open_names = sorted(i.site for i in sites if i.state == OPEN)
    assert [o["value"] for o in options] == open_names[:MAX_OPTIONS]
    assert messages.site_options(sites, "SITE39")[0]["value"] == "site390".ljust(120, "x")
    too_long = members(3, 151)  # a value Slack would refuse: left out, not cut (it names)
    assert messages.site_options(too_long, "") == []
