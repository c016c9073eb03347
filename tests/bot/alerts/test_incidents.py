"""Incidents against real servers: a real nginx whose upstream is stopped and started again,
a real redis-server holding the state, and the local Slack Web API stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from badgateway.bot.alerts.chat import AlertChat
from badgateway.bot.alerts.incidents import AlertSignal, Incidents, parse_duration
from badgateway.bot.alerts.monitor import probe_site
from badgateway.bot.alerts.store import OPEN, RECOVERED, RESOLVED
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, MemoryStore
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings, Site
from tests.lab.alerts import (
    CHANNEL,
    App,
    RecordingCarrier,
    another_process,
    bot_config,
    lab_settings,
    make_incidents,
    posted,
    probe,
    shown,
)
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.fixtures_upstreams import Upstream


@pytest.fixture
def shop(app: App, nginx_proxy: Callable[..., Proxy]) -> tuple[Site, App]:
    proxy = nginx_proxy(f"127.0.0.1:{app.port}")
    return Site(
        "shop", proxy.url + "shop", upstreams=(f"127.0.0.1:{app.port}",), channel=CHANNEL
    ), app


def alert_chat(incidents: Incidents, slack: SlackStandIn) -> AlertChat:
    """The alerting side as the Slack app sees it (its thread kind and commands)."""
    client = make_web_client(bot_config(slack))
    return AlertChat(incidents, BotState(MemoryStore()), client, incidents.posts.carrier)


async def press(chat: AlertChat, button: str, user: str, root_ts: str) -> list[str]:
    """Press a verdict button in the alert thread at ``root_ts``; the private answers."""
    answers: list[str] = []

    async def reply(text: str) -> None:
        answers.append(text)

    owner = await chat.owner(CHANNEL, root_ts)
    assert owner is not None, root_ts
    await getattr(owner, button)(user, reply)
    return answers


async def test_k_failures_open_one_alert_and_k_successes_recover(
    redis: Redis,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    site, app = shop
    carrier = RecordingCarrier()
    incidents = make_incidents(redis, slack_api, lab_settings(site), carrier)
    await probe(incidents, site)  # healthy
    assert await incidents.store.current("shop") is None

    app.stop()
    outcome = await probe_site(site, incidents.settings)
    assert not outcome.ok and "502" in outcome.what
    await incidents.observe(site, outcome)  # one blip pages nobody
    assert await incidents.store.current("shop") is None
    await incidents.observe(site, await probe_site(site, incidents.settings))
    assert await incidents.settle() == 1
    roots = slack_api.roots(CHANNEL)
    assert len(roots) == 1
    assert "*shop* is failing since" in roots[0].text and "HTTP 502" in roots[0].text

    incident = await incidents.store.current("shop")
    assert incident is not None and incident.state == OPEN and incident.root_ts == roots[0].ts
    # The diagnosis goes to the alert's thread.
    assert len(carrier.requests) == 1
    origin = carrier.requests[0].origin
    assert origin["root_ts"] == roots[0].ts and origin["incident"] == incident.id
    assert origin["channel"] == CHANNEL and origin["kind"] == "slack"
    assert "Diagnosis:* running" in slack_api.message(roots[0].ts).text

    await probe(incidents, site, 3)  # still failing: no new message
    assert len(slack_api.roots()) == 1 and slack_api.thread(roots[0].ts) == []

    app.start()
    await probe(incidents, site)
    assert (await incidents.store.current("shop")).state == OPEN  # type: ignore[union-attr]
    await probe(incidents, site)
    incident = await incidents.store.current("shop")
    assert incident is not None and incident.state == RECOVERED
    thread = slack_api.thread(roots[0].ts)
    assert len(thread) == 1 and "recovered after" in thread[0].text
    assert ":large_green_circle: *shop* recovered after" in slack_api.message(roots[0].ts).text
    assert await incidents.list_open() == []


async def test_flapping_stays_one_incident(
    redis: Redis,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    site, app = shop
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    app.stop()
    await probe(incidents, site, 2)
    await incidents.settle()
    first = await incidents.store.current("shop")
    app.start()
    await probe(incidents, site, 2)
    app.stop()
    await probe(incidents, site, 2)
    await incidents.settle()
    again = await incidents.store.current("shop")
    assert first is not None and again is not None
    assert again.id == first.id and again.state == OPEN and again.flaps == 1
    assert len(slack_api.roots()) == 1
    texts = [m.text for m in slack_api.thread(first.root_ts or "")]
    assert any("recovered after" in t for t in texts)
    assert any("failing again" in t for t in texts)
    assert "failed again 1×" in slack_api.message(first.root_ts or "").text


async def test_restart_mid_incident_keeps_it(
    redis: Redis,
    redis_url: str,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    site, app = shop
    before = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    app.stop()
    await probe(before, site, 2)
    await before.settle()
    opened = await before.store.current("shop")
    assert opened is not None and opened.root_ts

    # A new process: new connection, new objects, same Redis.
    async with another_process(redis_url, slack_api, lab_settings(site)) as after:
        await probe(after, site, 3)
        await after.settle()
        assert len(slack_api.roots()) == 1
        [still] = await after.list_open()
        assert still.id == opened.id and still.root_ts == opened.root_ts
        app.start()
        await probe(after, site, 2)
        thread = slack_api.thread(opened.root_ts)
        assert [m for m in thread if "recovered after" in m.text]


async def test_mute_silences_a_site_and_shows_in_status(
    redis: Redis,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    site, app = shop
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    await incidents.mute("shop", parse_duration("1h"), "U0ONCALL")
    app.stop()
    await probe(incidents, site, 3)
    await incidents.settle()
    assert slack_api.calls_of("chat.postMessage") == []
    assert await incidents.store.current("shop") is None
    status = await incidents.status_text()
    assert "No open incidents" in status and "shop muted by <@U0ONCALL> until" in status

    assert await incidents.unmute("shop")
    await probe(incidents, site, 2)
    await incidents.settle()
    assert len(slack_api.roots()) == 1


async def test_take_and_resolve_update_the_root(
    redis: Redis,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    site, app = shop
    incidents = make_incidents(redis, slack_api, lab_settings(site), RecordingCarrier())
    app.stop()
    await probe(incidents, site, 2)
    await incidents.settle()
    [incident] = await incidents.list_open()
    assert await incidents.incident_for_thread(CHANNEL, incident.root_ts or "") is not None
    await incidents.take(incident.id, "U0ALICE")
    root = slack_api.message(incident.root_ts or "")
    assert "*Taken by* <@U0ALICE>" in root.text
    status = await incidents.status_text()
    assert "*shop* failing for" in status and "taken by <@U0ALICE>" in status
    assert f"https://slack.com/archives/{CHANNEL}/p" in status

    await incidents.resolve(incident.id, "U0ALICE")
    assert "resolved by <@U0ALICE> after" in slack_api.message(incident.root_ts or "").text
    assert (await incidents.store.get(incident.id)).state == RESOLVED  # type: ignore[union-attr]
    assert await incidents.list_open() == []
    # The site fails on: a new incident, a new thread.
    await probe(incidents, site, 2)
    await incidents.settle()
    assert len(slack_api.roots()) == 2


async def test_storm_of_50_sites_gives_one_grouped_alert(
    redis: Redis,
    slack_api: SlackStandIn,
    nginx_proxy: Callable[..., Proxy],
) -> None:
    dead = Upstream("refused").start()  # nothing listens: every site behind it fails
    proxy = nginx_proxy(dead.address)
    sites = [
        Site(f"site{n:02d}", f"{proxy.url}s{n}", upstreams=(dead.address,), channel=CHANNEL)
        for n in range(50)
    ]
    carrier = RecordingCarrier()
    settings: Settings = lab_settings(*sites)
    incidents = make_incidents(redis, slack_api, settings, carrier)

    async def probe_all() -> None:
        outcomes = await asyncio.gather(*(probe_site(s, settings) for s in sites))
        await asyncio.gather(
            *(incidents.observe(s, o) for s, o in zip(sites, outcomes, strict=True))
        )

    await probe_all()
    await probe_all()
    posted_now = await asyncio.gather(*(incidents.settle() for _ in range(5)))
    assert sum(posted_now) == 50

    roots = slack_api.roots()
    assert len(roots) == 1, [r.text[:80] for r in roots]
    text = shown(roots[0])
    assert "*50 sites failing at once*" in text
    assert f"the same upstream {dead.address} (all)" in text
    assert "the same resolved address 127.0.0.1 (all)" in text
    assert all(f"*site{n:02d}* · " in text for n in range(50))  # every site on the table
    # What they share is also the thread's first reply.
    assert "What they share" in slack_api.thread(roots[0].ts)[0].text
    # Every site is diagnosed, for the grouped alert's table: kept, not posted (its run names
    # no thread; only `/502`s sharing it show it).
    assert len(carrier.requests) == 50
    assert len({r.origin["storm"] for r in carrier.requests}) == 1
    assert not [r for r in carrier.requests if "root_ts" in r.origin]
    assert len({r.origin["incident"] for r in carrier.requests}) == 50
    assert len(await incidents.list_open()) == 50

    # A late failing site joins the storm's thread instead of opening its own.
    late = Site("late", f"{proxy.url}late", upstreams=(dead.address,), channel=CHANNEL)
    incidents.settings = lab_settings(*sites, late)
    await probe(incidents, late, 2)
    await incidents.settle()
    assert len(slack_api.roots()) == 1
    assert any("Also failing: late" in m.text for m in slack_api.thread(roots[0].ts))
    await incidents.posts.drain()  # the table is rewritten at most every 2 s
    assert "*51 sites failing at once*" in shown(slack_api.message(roots[0].ts))
    assert posted(slack_api)[0].startswith(":thunder_cloud_and_rain:")


async def test_slack_commands_and_buttons_act_on_alert_threads(
    redis: Redis,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    site, app = shop
    carrier = RecordingCarrier()
    incidents = make_incidents(redis, slack_api, lab_settings(site), carrier)
    chat = alert_chat(incidents, slack_api)
    assert set(chat.commands()) == {"mute", "unmute"}  # anything else is the Slack app's
    assert "no site named nosuch" in await chat.mute(["mute", "nosuch", "1h"], "U1")
    assert "not a duration" in await chat.mute(["mute", "shop", "soon"], "U1")
    assert "muted until" in await chat.mute(["mute", "shop", "30m"], "U1")
    assert (await incidents.store.muted("shop")) is not None
    assert "alerts again" in await chat.unmute(["unmute", "shop"], "U1")

    app.stop()
    await probe(incidents, site, 2)
    await incidents.settle()
    [root] = slack_api.roots()
    # A thread that is not an alert's is not this kind's (the Slack app looks elsewhere).
    assert await chat.owner(CHANNEL, "1.000001") is None
    assert await press(chat, "take", "U2", root.ts) == []
    assert "*Taken by* <@U2>" in slack_api.message(root.ts).text
    assert await press(chat, "rerun", "U2", root.ts) == []
    assert len(carrier.requests) == 2 and carrier.requests[1].origin["root_ts"] == root.ts
    status = await chat.status_text()
    assert "*shop* failing for" in status
    assert await press(chat, "resolve", "U2", root.ts) == []
    assert "resolved by <@U2>" in slack_api.message(root.ts).text
    assert "No open incidents" in await chat.status_text()


async def test_a_diagnosis_submitted_into_the_thread_becomes_the_latest(
    redis: Redis,
    slack_api: SlackStandIn,
    shop: tuple[Site, App],
) -> None:
    # `/502 SITE` during an alert submits into its thread with ``Incidents.origin`` (the Slack
    # app does, bot.slack.chatops); its verdict makes it the one Escalate posts.
    site, app = shop
    carrier = RecordingCarrier()
    incidents = make_incidents(redis, slack_api, lab_settings(site), carrier)
    app.stop()
    await probe(incidents, site, 2)
    await incidents.settle()
    [first] = carrier.requests
    incident = await incidents.store.current("shop")
    assert incident is not None and incident.diagnosis_id == first.id
    ctx = await prepare(site.url, incidents.settings)
    asked = DiagnosisRequest.new(ctx, origin=Incidents.origin(incident))
    await incidents.diagnosed(
        incident.id,
        "upstream_refused",
        "refused",
        diagnosis_id=asked.id,
        requested_at=asked.created_at,
    )
    latest = await incidents.store.get(incident.id)
    assert latest is not None and latest.diagnosis_id == asked.id
    assert latest.cause == "upstream_refused"
    # The first run finishing late (older than the latest) changes nothing.
    await incidents.diagnosed(
        incident.id, "unknown", "late", diagnosis_id=first.id, requested_at=first.created_at
    )
    latest = await incidents.store.get(incident.id)
    assert latest is not None and latest.diagnosis_id == asked.id
    assert latest.cause == "upstream_refused"
    # Re-run in the thread: the new run is the latest from the start.
    root_ts = str(incident.root_ts)
    assert await press(alert_chat(incidents, slack_api), "rerun", "U2", root_ts) == []
    rerun = carrier.requests[-1]
    latest = await incidents.store.get(incident.id)
    assert latest is not None and latest.diagnosis_id == rerun.id != asked.id


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == parse_duration("15") == 900
    assert parse_duration("1h") == 3600 and parse_duration("2d") == 172800
    for bad in ("", "soon", "-1h", "0m", "31d", "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


async def test_resolved_in_a_grouped_thread_resolves_every_site(
    redis: Redis,
    slack_api: SlackStandIn,
) -> None:
    dead = Upstream("refused").start()
    sites = [
        Site(
            f"api{n}", f"http://127.0.0.1:{dead.port}/", upstreams=(dead.address,), channel=CHANNEL
        )
        for n in range(6)
    ]
    incidents = make_incidents(redis, slack_api, lab_settings(*sites), RecordingCarrier())
    for site in sites:
        await probe(incidents, site, 2)
    await incidents.settle()
    [root] = slack_api.roots()
    assert "*6 sites failing at once*" in shown(root)
    assert "the same failure refused (all)" in shown(root)
    assert await press(alert_chat(incidents, slack_api), "resolve", "U9", root.ts) == []
    assert await incidents.list_open() == []
    await incidents.posts.drain()
    assert "*Now:* 0 failing, 0 recovered, 6 resolved" in shown(slack_api.message(root.ts))


async def test_firing_alerts_outlive_a_restart_and_probes_close_on_any_resolve(
    redis: Redis, redis_url: str, slack_api: SlackStandIn, shop: tuple[Site, App]
) -> None:
    settings = lab_settings(shop[0])
    a, b = AlertSignal("alertmanager:a", True, "a fires"), AlertSignal("alertmanager:b", True, "b")
    first = make_incidents(redis, slack_api, settings, RecordingCarrier())
    opened = await first.alerts_seen(shop[0], "alertmanager", [a, b])
    assert opened is not None and opened.firing == {a.key: "a fires", b.key: "b"}
    await first.flush(force=True)

    # Another process takes the next notification: it knows which alerts fire.
    async with another_process(redis_url, slack_api, settings) as second:
        resolved_a = AlertSignal(a.key, False, a.text)
        still = await second.alerts_seen(shop[0], "alertmanager", [resolved_a, b])
        assert still is not None and still.state == OPEN and list(still.firing) == [b.key]
        # A resolved alert it never saw fire changes nothing while b fires.
        stray = AlertSignal("alertmanager:c", False, "c")
        assert (await second.alerts_seen(shop[0], "alertmanager", [stray])) is not None
        assert [i.id for i in await second.list_open()] == [opened.id]

    # An incident the probes opened tracks no alert: a resolved alert closes it, as before.
    shop[1].stop()
    probed = Site("probed", shop[0].url, channel=CHANNEL)
    incidents = make_incidents(redis, slack_api, lab_settings(probed), RecordingCarrier())
    await probe(incidents, probed, 2)
    assert (await incidents.store.current("probed")) is not None
    resolved = AlertSignal("webhook", False, "")
    closed = await incidents.alerts_seen(probed, "webhook", [resolved])
    assert closed is not None and closed.state == RESOLVED
