"""An alert incident that ends is kept in its site's history (real redis-server, a real app
the test stops and starts): opened by failing probes and resolved by a person, or by its
webhook alert, or recovered by passing probes, it shows in `history SITE` with its cause, its
length and how it ended, in the terminal, in JSON and as valid Block Kit; bounded by the
history's retention; and a history store that is down costs the line, never the incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from redis.asyncio import Redis

from badgateway.bot.alerts.incidents import AlertSignal, Incidents
from badgateway.bot.config import HistoryRetention
from badgateway.bot.history_store import RedisHistory, timeline_of
from badgateway.bot.render.history import history_message, history_text
from badgateway.bot.render.slack_blocks import block_kit_problems
from badgateway.bot.storage import key
from badgateway.checks.settings import Site
from badgateway.checks.timeline import IncidentRecord
from tests.lab.alerts import (
    CHANNEL,
    App,
    RecordingCarrier,
    lab_settings,
    make_incidents,
    probe,
)
from tests.lab.fixtures_slack import SlackStandIn


def _keeping(redis: Redis, slack: SlackStandIn, app: App) -> tuple[Site, RedisHistory, Incidents]:
    """The site served by ``app``, its history in Redis, and incidents that keep in it."""
    site = Site("shop", f"http://127.0.0.1:{app.port}/shop", channel=CHANNEL)
    store = RedisHistory(redis)
    return site, store, make_incidents(redis, slack, lab_settings(site), history=store)


async def test_an_incident_resolved_by_a_person_shows_in_the_history(
    redis: Redis, slack_api: SlackStandIn, app: App
) -> None:
    site, store, incidents = _keeping(redis, slack_api, app)
    await probe(incidents, site)
    app.stop()
    await probe(incidents, site, 2)  # FAST: two failures open the incident
    incident = await incidents.store.current("shop")
    assert incident is not None
    assert (await store.load("shop")).incidents == []
    await incidents.resolve(incident.id, "U0ALICE")

    shown = await timeline_of(store, "shop", 1)
    [record] = shown.incidents
    assert record.id == incident.id and record.ended == "resolved by U0ALICE"
    assert "Connect call failed" in record.cause  # what the probes saw: the app is down
    assert 0 <= record.duration_s() < 60
    assert 0 < await redis.ttl(key("incidents", "shop")) <= 7 * 86400

    text = history_text(shown)
    assert "Incidents:" in text and "resolved by U0ALICE" in text
    line = next(ln for ln in text.splitlines() if "resolved by U0ALICE" in ln)
    assert " s, " in line and "Connect call failed" in line  # its length, then how it ended
    [as_json] = json.loads(json.dumps(shown.to_dict()))["incidents"]
    assert as_json["id"] == incident.id and as_json["ended"] == "resolved by U0ALICE"
    assert isinstance(as_json["duration_s"], int) and as_json["cause"] == record.cause
    message = history_message(shown)
    assert block_kit_problems(message) == []
    blocks = json.dumps(message["blocks"], ensure_ascii=False)
    assert "*Incidents*" in blocks and "resolved by U0ALICE" in blocks


async def test_a_webhook_alert_resolving_and_probes_recovering_end_incidents(
    redis: Redis, slack_api: SlackStandIn, app: App
) -> None:
    site, store, incidents = _keeping(redis, slack_api, app)
    firing = AlertSignal("webhook:shop-5xx", True, "shop 5xx rate high")
    opened = await incidents.alerts_seen(site, "webhook", [firing])
    assert opened is not None
    await incidents.alerts_seen(site, "webhook", [AlertSignal(firing.key, False, firing.text)])

    await probe(incidents, site)
    app.stop()
    await probe(incidents, site, 2)
    by_probes = await incidents.store.current("shop")
    assert by_probes is not None and by_probes.id != opened.id
    await incidents.diagnosed(by_probes.id, "upstream_refused", "nothing listens on the app port")
    app.start()
    await probe(incidents, site, 2)  # FAST: two passes recover it

    first, second = (await timeline_of(store, "shop", 1)).incidents
    assert (first.id, first.cause, first.ended) == (
        opened.id,
        "shop 5xx rate high",
        "the webhook alert resolved",
    )
    assert second.id == by_probes.id and second.ended == "recovered: its probes pass again"
    assert second.cause == "upstream_refused: nothing listens on the app port"
    assert second.duration_s() >= 0


async def test_ended_incidents_are_bounded_by_the_retention(redis: Redis) -> None:
    store = RedisHistory(redis, HistoryRetention(keep=5))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for n in range(12):
        await store.ended(IncidentRecord(f"i{n}", "shop", now, now, "upstream_refused", "x"))
    kept = (await store.load("shop")).incidents
    assert [r.id for r in kept] == [f"i{n}" for n in range(7, 12)]
    assert await redis.llen(key("incidents", "shop")) == 5  # type: ignore[misc]


async def test_an_incident_closes_when_its_history_cannot_be_kept(
    redis: Redis, slack_api: SlackStandIn, app: App
) -> None:
    site = Site("shop", f"http://127.0.0.1:{app.port}/shop", channel=CHANNEL)
    gone = RedisHistory(Redis.from_url("redis://127.0.0.1:9/0", decode_responses=True))
    incidents = make_incidents(
        redis, slack_api, lab_settings(site), RecordingCarrier(), history=gone
    )
    try:
        opened = await incidents.alerts_seen(
            site, "webhook", [AlertSignal("webhook:a", True, "down")]
        )
        assert opened is not None
        await incidents.resolve(opened.id, "U0BOB")
    finally:
        await gone.aclose()
    closed = await incidents.store.get(opened.id)
    assert closed is not None and closed.state == "resolved"
    assert await incidents.store.current("shop") is None


async def test_an_incident_that_fails_again_after_recovering_has_not_ended(
    redis: Redis, slack_api: SlackStandIn, app: App
) -> None:
    site, store, incidents = _keeping(redis, slack_api, app)
    app.stop()
    await probe(incidents, site, 2)
    app.start()
    await probe(incidents, site, 2)
    [recovered] = (await timeline_of(store, "shop", 1)).incidents
    app.stop()
    await probe(incidents, site, 2)  # within the flap window: the same incident reopens
    reopened = await incidents.store.current("shop")
    assert reopened is not None and reopened.id == recovered.id and reopened.flaps == 1
    assert (await timeline_of(store, "shop", 1)).incidents == []  # going on again
    app.start()
    await probe(incidents, site, 2)
    [ended] = (await timeline_of(store, "shop", 1)).incidents
    assert ended.id == recovered.id and ended.ended_at >= recovered.ended_at
    assert len((await store.load("shop")).incidents) == 3  # recovered, reopened, recovered
