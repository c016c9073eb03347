"""Alert webhooks over real HTTP: Alertmanager v4 (payloads recorded from Alertmanager 0.25)
and the generic JSON, with right and wrong bearer tokens, bad and oversize bodies; state in a
real redis-server, Slack the stand-in. tests/bot/alerts/test_alertmanager.py runs the real
Alertmanager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from badgateway.bot.alerts.webhooks import parse_alertmanager
from tests.lab.alerts import (
    ALERTS_TOKEN,
    CHANNEL,
    SHOP,
    Bot,
    lab_settings,
    serve_webhooks,
    until,
)
from tests.lab.fixtures_slack import SlackStandIn

# Recorded from Alertmanager 0.25 (group_by: [site], blackbox_exporter style labels): every
# notification carries the group's every alert, each with its fingerprint.
PROBE_FAILED = {"alertname": "ProbeFailed", "job": "blackbox", "site": "shop"}


def alertmanager(status: str, *alerts: dict[str, Any], site: str | None = "shop") -> dict[str, Any]:
    """A notification for the group ``site`` (None: the alerts without a site label)."""
    return {
        "receiver": "badgateway",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {"site": site} if site else {},
        "commonLabels": {"job": "blackbox", "site": site} if site else {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": f'{{}}:{{site="{site or ""}"}}',
        "truncatedAlerts": 0,
    }


def am_alert(
    status: str,
    labels: dict[str, str],
    summary: str = "shop returns 502",
    fingerprint: str = "15edac4e5a828ef5",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "SiteDown", **labels},
        "annotations": {"summary": summary},
        "startsAt": "2026-12-01T17:48:41.54196995Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T17:50:02.1Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


def probes(*states: str) -> list[dict[str, Any]]:
    """One blackbox alert per state, for the same site: ``probes("firing", "resolved")``."""
    return [
        am_alert(state, {**PROBE_FAILED, "probe": f"p{n}"}, f"probe {n} fails", f"fp{n:014d}")
        for n, state in enumerate(states)
    ]


def updates(slack: SlackStandIn) -> int:
    return len(slack.calls_of("chat.update"))


async def test_a_group_sent_again_is_announced_once(bot: Bot, slack_api: SlackStandIn) -> None:
    status, body = await bot.post("/alerts/alertmanager", alertmanager("firing", *probes("firing")))
    assert status == 202 and body["accepted"] == 1 and body["skipped"] == []
    assert body["alerts"] == [{"alert": "alerts[0]", "site": "shop", "status": "firing"}]
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    root = slack_api.roots()[0]
    assert root.channel == "C0SHOP" and "*shop* is failing" in root.text
    assert "probe 0 fails" in root.text
    await until(lambda: len(bot.carrier.requests) == 1, within_s=5, what="diagnosis")
    assert bot.carrier.requests[0].origin["root_ts"] == root.ts
    # The root is rewritten right after the diagnosis is submitted: counted from then on.
    await until(lambda: updates(slack_api) == 1, within_s=5, what="the root showing it")
    posts, changes = len(slack_api.messages), updates(slack_api)

    # Alertmanager repeats the group (repeat_interval, or another group member changing).
    for _ in range(3):
        status, _ = await bot.post(
            "/alerts/alertmanager", alertmanager("firing", *probes("firing"))
        )
        assert status == 202
    assert (len(slack_api.messages), updates(slack_api)) == (posts, changes)

    # A second alert joins the group: announced once, however often the group comes again.
    for _ in range(3):
        payload = alertmanager("firing", *probes("firing", "firing"))
        status, body = await bot.post("/alerts/alertmanager", payload)
        assert status == 202 and body["accepted"] == 2
    notes = [m.text for m in slack_api.thread(root.ts)]
    assert notes == [":rotating_light: Another alert (alertmanager): probe 1 fails"]
    assert updates(slack_api) == changes + 1
    assert (
        "*Alerts firing:* 2 of 2 — probe 0 fails · probe 1 fails" in slack_api.message(root.ts).text
    )
    assert len(bot.carrier.requests) == 1  # the diagnosis runs once, not per notification


async def test_a_partial_resolve_keeps_the_incident_open(bot: Bot, slack_api: SlackStandIn) -> None:
    status, _ = await bot.post(
        "/alerts/alertmanager", alertmanager("firing", *probes("firing", "firing", "firing"))
    )
    assert status == 202
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    root = slack_api.roots()[0]
    assert "*Alerts firing:* 3 of 3" in slack_api.message(root.ts).text

    # One of the three stops firing: the site is still down.
    for _ in range(2):
        payload = alertmanager("firing", *probes("resolved", "firing", "firing"))
        status, _ = await bot.post("/alerts/alertmanager", payload)
        assert status == 202
    notes = [m.text for m in slack_api.thread(root.ts)]
    assert notes == [
        ":large_green_circle: Alert resolved (alertmanager): probe 0 fails — 2 still firing"
    ]
    assert [i.site for i in await bot.incidents.list_open()] == ["shop"]
    shown = slack_api.message(root.ts).text
    assert "*shop* is failing" in shown
    assert "*Alerts firing:* 2 of 3 — probe 1 fails · probe 2 fails" in shown

    # The last ones resolve: now the incident does.
    for _ in range(2):
        payload = alertmanager("resolved", *probes("resolved", "resolved", "resolved"))
        status, _ = await bot.post("/alerts/alertmanager", payload)
        assert status == 202
    notes = [m.text for m in slack_api.thread(root.ts)]
    assert len(notes) == 2
    assert "resolved (its last alertmanager alert resolved) after" in notes[1]
    assert ":white_check_mark: *shop* resolved" in slack_api.message(root.ts).text
    assert await bot.incidents.list_open() == []


async def test_an_alert_the_bot_cannot_map_is_skipped_not_a_reason_to_refuse(
    bot: Bot, slack_api: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    # group_by: [site] puts the alerts without a site label in one group; a hand-made one
    # with an unknown site joins them here to show both reasons.
    node_down = am_alert("firing", {"alertname": "NodeDown", "instance": "node1:9100"}, "node1")
    nosuch = am_alert("firing", {"site": "nosuch"}, "nosuch is down", "fp-nosuch")
    blackbox = am_alert(
        "firing",
        {"alertname": "ProbeFailed", "instance": "http://127.0.0.1:9/health", "job": "blackbox"},
        "probe of /health fails",
        "fp-blackbox",
    )
    payload = alertmanager("firing", node_down, nosuch, blackbox, site=None)
    status, body = await bot.post("/alerts/alertmanager", payload)
    assert status == 202, body
    assert body["accepted"] == 1
    assert body["alerts"] == [{"alert": "alerts[2]", "site": "shop", "status": "firing"}]
    assert body["skipped"] == [
        {
            "alert": "alerts[0]",
            "reason": "alerts[0]: no 'site' label and no URL in 'url' or 'instance'",
        },
        {
            "alert": "alerts[1]",
            "reason": "alerts[1]: unknown site 'nosuch' and no 'url' to diagnose",
        },
    ]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [
        "alertmanager: skipped alerts[0]: no 'site' label and no URL in 'url' or 'instance'",
        "alertmanager: skipped alerts[1]: unknown site 'nosuch' and no 'url' to diagnose",
    ]
    # The blackbox alert's instance URL is shop's scheme, address and port.
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    root = slack_api.roots()[0]
    assert root.channel == "C0SHOP" and "probe of /health fails" in root.text
    assert [i.site for i in await bot.incidents.list_open()] == ["shop"]


async def test_a_generic_sender_repeating_firing_is_announced_once(
    bot: Bot, slack_api: SlackStandIn
) -> None:
    for _ in range(3):
        status, _ = await bot.post("/alerts", {"site": "shop", "status": "firing", "summary": "x"})
        assert status == 202
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    assert slack_api.thread(slack_api.roots()[0].ts) == []
    status, _ = await bot.post("/alerts", {"site": "shop", "status": "resolved"})
    assert status == 202

    def resolved_note() -> bool:  # posted after the 202, as every webhook's posts are
        thread = slack_api.thread(slack_api.roots()[0].ts)
        return bool(thread) and "resolved (the webhook alert resolved)" in thread[-1].text

    await until(resolved_note, within_s=5, what="the resolved note")
    assert await bot.incidents.list_open() == []


async def test_generic_alert_for_an_unknown_url_goes_to_the_default_channel(
    bot: Bot, slack_api: SlackStandIn
) -> None:
    body = {"url": "http://127.0.0.2:9/health", "status": "firing", "summary": "probe failed"}
    status, reply = await bot.post("/alerts", body)
    assert status == 202, reply
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    root = slack_api.roots()[0]
    assert root.channel == CHANNEL and "*127.0.0.2* is failing" in root.text
    await until(lambda: len(bot.carrier.requests) == 1, within_s=5, what="diagnosis")
    assert bot.carrier.requests[0].context["target"] == "http://127.0.0.2:9/health"

    status, _ = await bot.post(
        "/alerts", {"url": "http://127.0.0.2:9/health", "status": "resolved"}
    )
    assert status == 202
    assert await bot.incidents.list_open() == []


async def _snapshot(redis: Redis) -> dict[str, Any]:
    return {key: await redis.dump(key) for key in sorted(await redis.keys("*"))}


async def test_refused_requests_change_nothing(
    bot: Bot,
    slack_api: SlackStandIn,
    redis: Redis,
) -> None:
    # Something already there, to show it stays exactly as it was.
    status, _ = await bot.post("/alerts", {"site": "shop", "status": "firing", "summary": "x"})
    assert status == 202
    await until(lambda: len(bot.carrier.requests) == 1, within_s=5, what="diagnosis")
    before, calls = await _snapshot(redis), len(slack_api.calls)

    firing = {"site": "shop", "status": "firing", "summary": "down"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/alerts", {"token": None, "body": firing}, 401, "bearer"),
        ("/alerts", {"token": "wrong", "body": firing}, 401, "bearer"),
        ("/alerts", {"token": ALERTS_TOKEN + "x", "body": firing}, 401, "bearer"),
        (
            "/alerts",
            {"token": None, "body": firing, "headers": {"Authorization": ALERTS_TOKEN}},
            401,
            "bearer",
        ),
        ("/alerts/alertmanager", {"token": "", "body": alertmanager("firing")}, 401, "bearer"),
        ("/alerts", {"raw": b"{not json"}, 400, "not JSON"),
        ("/alerts", {"body": ["a", "list"]}, 400, "JSON object"),
        ("/alerts", {"body": {"site": "shop", "status": "burning"}}, 400, "'status' must be"),
        ("/alerts", {"body": {"site": "nosuch", "status": "firing"}}, 400, "unknown site 'nosuch'"),
        ("/alerts", {"body": {"status": "firing"}}, 400, "needs 'site'"),
        ("/alerts", {"body": {"url": "ftp://x/", "status": "firing"}}, 400, "http(s) URL"),
        ("/alerts/alertmanager", {"body": {"version": "3", "alerts": []}}, 400, "version"),
        ("/alerts/alertmanager", {"body": alertmanager("firing")}, 400, "non-empty list"),
        # A malformed alert in a group: none of the group is acted on.
        (
            "/alerts/alertmanager",
            {"body": alertmanager("firing", *probes("firing"), am_alert("burning", {}))},
            400,
            "alerts[1]: 'status' must be",
        ),
        (
            "/alerts",
            {"raw": b'{"site": "shop", "status": "firing", "x": "' + b"a" * 20000 + b'"}'},
            413,
            "larger",
        ),
    ]
    for path, kwargs, expected, reason in cases:
        status, reply = await bot.post(
            path,
            kwargs.get("body"),
            token=kwargs.get("token", ALERTS_TOKEN),
            raw=kwargs.get("raw"),
            headers=kwargs.get("headers"),
        )
        assert status == expected, (path, kwargs, reply)
        assert reason in reply["error"], reply

    # Well-formed, but not one alert the bot can map: nothing to act on, and why — in a 202,
    # because Alertmanager resends a group on any other answer, every group_interval.
    status, reply = await bot.post(
        "/alerts/alertmanager",
        alertmanager("firing", am_alert("firing", {}), am_alert("firing", {}), site=None),
    )
    assert status == 202 and reply["accepted"] == 0 and reply["incidents"] == [], reply
    assert [s["reason"] for s in reply["skipped"]] == [
        f"alerts[{n}]: no 'site' label and no URL in 'url' or 'instance'" for n in (0, 1)
    ], reply

    # An oversize body sent in chunks (no Content-Length) is cut off too.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 1024

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            bot.base + "/alerts", data=chunks(), headers={"Authorization": f"Bearer {ALERTS_TOKEN}"}
        ) as response,
    ):
        assert response.status == 413
    assert await _snapshot(redis) == before
    assert len(slack_api.calls) == calls


async def test_without_alerts_token_webhooks_are_off(
    redis: Redis,
    slack_api: SlackStandIn,
) -> None:
    async for served in serve_webhooks(redis, slack_api, None):
        status, reply = await served.post("/alerts", {"site": "shop", "status": "firing"}, token="")
        assert status == 503 and "ALERTS_TOKEN" in reply["error"]
        assert await redis.keys("*") == [] and slack_api.calls == []


def test_an_alertmanager_start_is_read_when_it_is_a_time() -> None:
    settings = lab_settings(SHOP)
    body = alertmanager(
        "firing",
        am_alert("firing", PROBE_FAILED),
        {**am_alert("firing", PROBE_FAILED, fingerprint="b"), "startsAt": "0001-01-01T00:00:00Z"},
        {**am_alert("firing", PROBE_FAILED, fingerprint="c"), "startsAt": "yesterday"},
    )
    starts = [a.signal.starts_at for a in parse_alertmanager(body, settings).accepted]
    assert starts == [datetime(2026, 12, 1, 17, 48, 41, 541969, tzinfo=UTC).timestamp(), None, None]
