"""Alert webhooks over real HTTP: Alertmanager v4 and the generic JSON, with right and wrong
bearer tokens, bad and oversize bodies; state in a real redis-server, Slack the stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.lab.alerts import (
    ALERTS_TOKEN,
    CHANNEL,
    Bot,
    serve_webhooks,
    until,
)
from tests.lab.fixtures_slack import SlackStandIn


def alertmanager(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SiteDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "badgateway",
        "groupLabels": {"alertname": "SiteDown"},
        "commonLabels": {"alertname": "SiteDown"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "alerts": list(alerts),
    }


def am_alert(
    status: str, labels: dict[str, str], summary: str = "shop returns 502"
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "SiteDown", **labels},
        "annotations": {"summary": summary},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.invalid/graph",
        "fingerprint": "abc123",
    }


async def test_alertmanager_alerts_for_one_site_share_one_thread(
    bot: Bot, slack_api: SlackStandIn
) -> None:
    status, body = await bot.post(
        "/alerts/alertmanager", alertmanager("firing", am_alert("firing", {"site": "shop"}))
    )
    assert status == 202 and body["accepted"] == 1
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    root = slack_api.roots()[0]
    assert root.channel == "C0SHOP" and "*shop* is failing" in root.text
    assert "shop returns 502" in root.text

    for n in range(3):
        payload = alertmanager("firing", am_alert("firing", {"site": "shop"}, f"still down <{n}>"))
        status, _ = await bot.post("/alerts/alertmanager", payload)
        assert status == 202
    assert len(slack_api.roots()) == 1
    notes = [m.text for m in slack_api.thread(root.ts)]
    assert len(notes) == 3 and all("Another alert (alertmanager)" in t for t in notes)
    assert "still down &lt;2&gt;" in notes[2]  # escaped for mrkdwn
    assert "4 alerts" in slack_api.message(root.ts).text
    await until(lambda: len(bot.carrier.requests) == 1, within_s=5, what="diagnosis")
    assert bot.carrier.requests[0].origin["root_ts"] == root.ts

    status, _ = await bot.post(
        "/alerts/alertmanager", alertmanager("resolved", am_alert("resolved", {"site": "shop"}))
    )
    assert status == 202
    assert "resolved (the alertmanager alert resolved) after" in slack_api.thread(root.ts)[-1].text
    assert ":white_check_mark: *shop* resolved" in slack_api.message(root.ts).text
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
        # One bad alert in a group: none of the group is acted on.
        (
            "/alerts/alertmanager",
            {
                "body": alertmanager(
                    "firing", am_alert("firing", {"site": "shop"}), am_alert("firing", {})
                )
            },
            400,
            "alerts[1]: no 'site' label",
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
