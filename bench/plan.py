"""How big each bench part is: the full run that the README's figures come from, and the
smoke run the tests use to check that the bench works and what its results file holds."""

from __future__ import annotations

from dataclasses import dataclass, field

# (slash commands per second, how many) for the ack-latency part, in rising order.
FULL_RATES = ((1.0, 10), (5.0, 25), (20.0, 60), (50.0, 100))


@dataclass(frozen=True)
class Plan:
    rates: tuple[tuple[float, int], ...] = FULL_RATES
    storm_sites: int = 200
    storm_workers: tuple[int, ...] = (1, 4)
    askers: int = 50
    askers_workers: int = 2
    runbook_rounds: int = 3  # the bot and the runbook, alternately, this many times each
    within_s: float = 300.0  # no part waits longer than this for what it measures
    env: dict[str, str] = field(default_factory=dict)  # settings for every bot process
    # Parts one after another (figures undisturbed), or all at once (the smoke run: quick).
    parts_at_once: bool = False


FULL = Plan()
# A few requests, a 5-site storm (the smallest grouped alert), a short storm hold.
SMOKE = Plan(
    rates=((5.0, 2), (20.0, 3)),
    storm_sites=5,
    storm_workers=(1,),
    askers=2,
    askers_workers=1,
    runbook_rounds=1,
    within_s=60.0,
    env={"BADGATEWAY_ALERT_STORM_HOLD_S": "0.3"},
    parts_at_once=True,
)
