"""Which runs share a flight (bot.flights.flight_key): a person's run from places is apart from
monitoring's, because only there does who asks change the verdict (client_side)."""

from __future__ import annotations

import dataclasses

from badgateway.bot.flights import flight_key
from badgateway.checks.context import ProbeContext
from badgateway.checks.settings import Settings, Site
from badgateway.checks.target import parse_target

PLACED = Settings(vantages=("eu-west", "us-east"), sites=(Site("shop", "http://shop.test/"),))


def _ctx(settings: Settings, asked: bool, places: tuple[str, ...] | None = None) -> ProbeContext:
    target = parse_target("shop", settings)
    every = settings.vantages_for(target.site)
    return ProbeContext(
        target, settings, places=every if places is None else places, asker_reports_failure=asked
    )


def test_without_places_a_person_and_an_alert_share_one_run() -> None:
    unplaced = dataclasses.replace(PLACED, vantages=())
    assert flight_key(_ctx(unplaced, True)) == flight_key(_ctx(unplaced, False))


def test_from_places_a_persons_run_is_apart_from_monitorings() -> None:
    asked, alert = flight_key(_ctx(PLACED, True)), flight_key(_ctx(PLACED, False))
    assert asked != alert
    assert asked == flight_key(_ctx(PLACED, True))  # fifty people still share one run
    limited = flight_key(_ctx(PLACED, True, ("eu-west",)))
    assert limited not in (asked, alert) and "from eu-west" in limited
