"""A place flapping while an incident is open: one thread note per window, not one per round,
while the root's Where line follows every round. Real redis-server, the Slack stand-in."""

from __future__ import annotations

import dataclasses

from redis.asyncio import Redis

from badgateway.bot.alerts.incidents import PLACE_NOTE_EVERY_S, Incidents
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.places import DOWN, FINE, ProbeOutcome
from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.slack_client import make_web_client
from badgateway.checks.settings import Site
from tests.lab.alerts import CHANNEL, FAST, RecordingCarrier, bot_config, lab_settings
from tests.lab.fixtures_slack import SlackStandIn

SITE = Site("shop", "http://127.0.0.1:9/", channel=CHANNEL, vantages=("eu-west", "us-east", "ap"))


def _round(ap: str) -> ProbeOutcome:
    """eu-west and us-east down (the quorum), ap-south as given."""
    places = {"eu-west": DOWN, "us-east": DOWN, "ap": ap}
    return ProbeOutcome(False, "HTTP 502 Bad Gateway from http://127.0.0.1:9/", places=places)


async def test_a_flapping_place_is_one_note_per_window(
    redis: Redis, slack_api: SlackStandIn
) -> None:
    now = [1_000_000.0]
    notifier = SlackNotifier(make_web_client(bot_config(slack_api)))
    settings = dataclasses.replace(lab_settings(SITE), vantages=SITE.vantages or ())
    incidents = Incidents(
        IncidentStore(redis), notifier, settings, FAST, RecordingCarrier(), clock=lambda: now[0]
    )
    try:
        for _ in range(2):  # two failing rounds open the incident
            await incidents.observe(SITE, _round(DOWN))
            now[0] += 10
        await incidents.settle()
        root = slack_api.roots()[0]
        for n in range(6):  # ap flips every round for a minute
            await incidents.observe(SITE, _round(FINE if n % 2 == 0 else DOWN))
            now[0] += 10
        await incidents.settle()

        def notes() -> list[str]:
            return [
                m.text
                for m in slack_api.thread(root.ts)
                if "Fine again" in m.text or "Now down" in m.text
            ]

        assert len(notes()) == 1 and "Fine again from ap" in notes()[0]
        assert "fine from ap" not in slack_api.message(root.ts).text  # the latest: down
        now[0] += PLACE_NOTE_EVERY_S  # the window is over: the next move is news again
        await incidents.observe(SITE, _round(FINE))
        await incidents.settle()
        assert len(notes()) == 2 and "Fine again from ap" in notes()[1]
        assert "fine from ap" in slack_api.message(root.ts).text
    finally:
        await incidents.close()
