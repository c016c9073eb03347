"""The bot in queue mode says when it cannot work, and works again by itself.

The real web app (Bolt over HTTP, in this process, on loopback) with a real redis-server that
the tests stop and start, real `badgateway worker` processes posting into the Slack stand-in,
and the engine's own checks against a loopback HTTP server. No worker: the root says it waits
for one, `/readyz` fails, and a worker that comes finishes the diagnosis in the same thread.
Redis down at start or mid-run: one private line, nothing posted, no traceback, and nothing
lost once it is back. Workers configured differently run side by side without failing each
other's jobs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis
from badgateway.checks.settings import Settings, load_settings
from badgateway.checks.steps import step_names
from tests.lab.alerts import shown
from tests.lab.fixtures_redis import LAB_TUNING
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.queue_web import (
    OPS,
    WAIT_S,
    QueueBot,
    fire_alert,
    fire_grouped_alert,
    lab_sites,
)

STEPS = step_names()


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not logged, [r.getMessage() for r in logged]


async def test_no_worker_root_says_it_waits_then_a_worker_completes_the_thread(
    queue_bot: QueueBot,
) -> None:
    slack = queue_bot.slack
    code, body = await queue_bot.ready()
    assert code == 503 and "is `badgateway worker` running?" in body["reason"], body

    sent = await queue_bot.bot.command(queue_bot.target(), channel=OPS)
    assert sent.status == 200
    await slack.wait_for(lambda: len(slack.roots(OPS)) == 1, 5, "the root")
    root = slack.roots(OPS)[0]
    assert "running" in root.text  # not waiting yet: BADGATEWAY_WORKER_WAIT_S has not passed
    await slack.wait_for(lambda: "waiting for a worker" in root.text, WAIT_S + 5, "waiting")
    shown = json.dumps(root.blocks, ensure_ascii=False)
    assert "Waiting for a worker since <!date^" in shown and "`badgateway worker`" in shown

    await queue_bot.start_worker("late")
    assert await queue_bot.until_ready(200) == {"ok": True}
    await slack.wait_for(lambda: queue_bot.verdicts(root.ts), 20, "the verdict")
    names = [m.text.split(":")[0] for m in slack.thread(root.ts)]
    assert names == [*STEPS, "verdict"], queue_bot.logs()
    await slack.wait_for(lambda: "verdict healthy" in root.text, 5, "the root's verdict")
    assert "Waiting for a worker" not in json.dumps(root.blocks, ensure_ascii=False)
    assert len(slack.roots()) == 1


async def test_redis_down_at_start_and_mid_run_one_line_nothing_lost(
    queue_bot: QueueBot, caplog: pytest.LogCaptureFixture
) -> None:
    slack, redis_server = queue_bot.slack, queue_bot.lab.redis_server
    await queue_bot.start_worker("steady")
    await asyncio.to_thread(redis_server.stop)
    # Redis down from the start of these requests: one private line each, nothing posted.
    for text in (queue_bot.target(), "mute shop 1h", "status"):
        sent = await queue_bot.bot.command(text, channel=OPS)
        answer = sent.json()
        assert sent.status == 200 and sent.elapsed_s < 3, sent
        assert answer["response_type"] == "ephemeral"
        assert "cannot reach Redis at 127.0.0.1:" in answer["text"], answer
        assert "Nothing was run or changed" in answer["text"]
    code, body = await queue_bot.ready()
    assert code == 503 and body["reason"].startswith("cannot reach Redis"), body
    assert not slack.calls_of("chat.postMessage")

    # Back: the same web process works again by itself.
    await asyncio.to_thread(redis_server.start)
    await queue_bot.until_ready(200)
    slow = queue_bot.target(1.5)
    assert (await queue_bot.bot.command(slow, channel=OPS)).status == 200
    await slack.wait_for(lambda: len(slack.roots(OPS)) == 1, 5, "the first root")
    first = slack.roots(OPS)[0]
    await asyncio.to_thread(queue_bot.lab.http.wait_for_requests, 1, "/sleep/1.5")

    # Mid-run: Redis goes while the worker probes; a /502 meanwhile gets the line.
    await asyncio.to_thread(redis_server.stop)
    during = (await queue_bot.bot.command(queue_bot.target(), channel=OPS)).json()
    assert "cannot reach Redis" in during["text"], during
    # The probe answers while Redis is down: the worker must keep its result until it is back.
    http = queue_bot.lab.http
    await slack.wait_for(lambda: http.in_flight == 0, 5, "the slow probe's answer")
    await asyncio.to_thread(redis_server.start)
    back = asyncio.get_running_loop().time()
    assert (await queue_bot.bot.command(queue_bot.target(), channel=OPS)).status == 200

    await slack.wait_for(lambda: len(slack.roots(OPS)) == 2, 5, "the root after the outage")
    roots = slack.roots(OPS)
    for root_ts in [root.ts for root in roots]:
        await slack.wait_for(functools.partial(queue_bot.verdicts, root_ts), 30, "each verdict")
    print(f"\nRedis back: both verdicts in {asyncio.get_running_loop().time() - back:.2f} s")
    for root in roots:  # every step of each diagnosis once, in runbook order
        names = [m.text.split(":")[0] for m in slack.thread(root.ts)]
        assert names == [*STEPS, "verdict"], (names, queue_bot.logs())
    assert first in roots
    _no_tracebacks(caplog)


async def test_workers_with_and_without_monitoring_never_fail_each_other(
    queue_bot: QueueBot, tmp_path: Path
) -> None:
    monitored = lab_sites(tmp_path / "monitored.toml", queue_bot.target())
    plain = await queue_bot.start_worker("plain")  # no site to watch: no monitoring
    watcher = await queue_bot.start_worker("watcher", BADGATEWAY_SITES=str(monitored))
    redis = connect_redis(queue_bot.lab.redis_server.url, 4, LAB_TUNING)
    store = DiagnosisStore(redis, LAB_TUNING.keep_s)

    async def monitor_ticks() -> list[dict[str, Any]]:
        return [e for e in await store.recent_jobs() if e.get("function") == "monitor_tick"]

    try:
        # The cron job runs every 5 s; both workers take diagnoses meanwhile.
        sent = await queue_bot.bot.command(queue_bot.target(), channel=OPS)
        assert sent.status == 200
        deadline = asyncio.get_running_loop().time() + 12
        while not await monitor_ticks():
            assert asyncio.get_running_loop().time() < deadline, queue_bot.logs()
            await asyncio.sleep(0.1)
        ticks = await monitor_ticks()
        assert all(t["status"] == "complete" for t in ticks), ticks
        assert all(t["queue"] == "monitor" for t in ticks), ticks
        root = queue_bot.slack.roots(OPS)[0]
        await queue_bot.slack.wait_for(lambda: queue_bot.verdicts(root.ts), 20, "the verdict")
    finally:
        await redis.aclose()
    for worker in (plain, watcher):
        assert worker.process.proc.poll() is None, worker.output()
        assert "Error processing job" not in worker.output(), worker.output()
        assert "KeyError" not in worker.output(), worker.output()


async def test_worker_outlives_a_long_redis_outage_in_one_line(queue_bot: QueueBot) -> None:
    # Few retries, so that the outage outlasts them within a second (20 by default: ~10 s).
    worker = await queue_bot.start_worker("patient", BADGATEWAY_QUEUE_REDIS_RETRIES="2")
    redis_server, slack = queue_bot.lab.redis_server, queue_bot.slack
    await asyncio.to_thread(redis_server.stop)
    await slack.wait_for(lambda: "cannot reach Redis" in worker.output(), 10, "the worker's line")
    await asyncio.to_thread(redis_server.start)
    await queue_bot.until_ready(200)
    assert (await queue_bot.bot.command(queue_bot.target(), channel=OPS)).status == 200
    await slack.wait_for(lambda: len(slack.roots(OPS)) == 1, 5, "the root")
    root_ts = slack.roots(OPS)[0].ts
    await slack.wait_for(functools.partial(queue_bot.verdicts, root_ts), 20, "the verdict")
    output = worker.output()
    assert worker.process.proc.poll() is None and "Traceback" not in output, output
    outage_lines = [line for line in output.splitlines() if "cannot reach Redis" in line]
    assert len(outage_lines) == 1 and "waiting for it to come back" in outage_lines[0], output


# -- the waiting line, kept in Redis ----------------------------------------------------------


def _waiting_edits(slack: SlackStandIn, ts: str) -> int:
    """How many times the root ``ts`` was edited to say it waits for a worker."""
    return sum(
        1
        for call in slack.calls_of("chat.update")
        if call.params.get("ts") == ts
        and "aiting for a worker" in json.dumps(call.params, ensure_ascii=False)
    )


def _says_waiting(slack: SlackStandIn, ts: str) -> bool:
    shown = slack.message(ts)
    return "aiting for a worker" in shown.text + json.dumps(shown.blocks, ensure_ascii=False)


async def _alerting_web(queue_bot: QueueBot, tmp_path: Path) -> Settings:
    """Settings with a monitored site (so alerts map to it), the fixture's web process
    stopped: each test starts the web processes it needs."""
    await queue_bot.stop_web(queue_bot.bot)
    return load_settings(lab_sites(tmp_path / "alerting.toml", queue_bot.lab.http.url(0) + "/shop"))


async def _roots_of_a_502_and_an_alert(queue_bot: QueueBot) -> tuple[str, str]:
    slack = queue_bot.slack
    await slack.wait_for(lambda: len(slack.roots(OPS)) == 2, 5, "the /502 root and the alert")
    alert = next(m for m in slack.roots(OPS) if "is failing since" in m.text)
    asked = next(m for m in slack.roots(OPS) if m is not alert)
    await slack.wait_for(lambda: "Diagnosis:" in alert.text, 5, "the alert's diagnosis queued")
    return asked.ts, alert.ts


async def _worker_completes_both(
    queue_bot: QueueBot, settings_path: Path, asked_ts: str, alert_ts: str
) -> None:
    """A worker (monitoring, so that alerts' verdicts reach their roots) finishes both."""
    slack = queue_bot.slack
    await queue_bot.start_worker("late", BADGATEWAY_SITES=str(settings_path))
    await slack.wait_for(lambda: queue_bot.verdicts(asked_ts), 20, "the /502 verdict")
    await slack.wait_for(lambda: "Diagnosed:" in slack.message(alert_ts).text, 20, "alert verdict")
    await slack.wait_for(lambda: not _says_waiting(slack, asked_ts), 5, "the /502 line gone")
    assert not _says_waiting(slack, alert_ts)
    names = [m.text.split(":")[0] for m in slack.thread(asked_ts)]
    assert names == [*STEPS, "verdict"], queue_bot.logs()


async def test_waiting_line_survives_a_web_restart_and_reaches_alert_roots(
    queue_bot: QueueBot, tmp_path: Path
) -> None:
    slack = queue_bot.slack
    settings = await _alerting_web(queue_bot, tmp_path)
    wait_s = 3.0  # long enough to restart the web process before it passes
    first = await queue_bot.start_web(settings, wait_s)
    assert (await first.command(queue_bot.target(), channel=OPS)).status == 200
    await fire_alert(first, "shop")
    asked_ts, alert_ts = await _roots_of_a_502_and_an_alert(queue_bot)

    # The web process restarts before anyone noticed: the next one finds both in Redis.
    await queue_bot.stop_web(first)
    assert _waiting_edits(slack, asked_ts) == _waiting_edits(slack, alert_ts) == 0
    await queue_bot.start_web(settings, wait_s)
    await slack.wait_for(lambda: _says_waiting(slack, asked_ts), wait_s + 5, "the /502 line")
    await slack.wait_for(lambda: _says_waiting(slack, alert_ts), 5, "the alert root's line")
    assert "is `badgateway worker` running?" in slack.message(alert_ts).text

    await _worker_completes_both(queue_bot, tmp_path / "alerting.toml", asked_ts, alert_ts)
    # Scanned again and again while it waited: each root was edited once.
    assert _waiting_edits(slack, asked_ts) == _waiting_edits(slack, alert_ts) == 1


async def test_two_web_processes_edit_each_waiting_root_once(
    queue_bot: QueueBot, tmp_path: Path
) -> None:
    slack = queue_bot.slack
    settings = await _alerting_web(queue_bot, tmp_path)
    one, two = await queue_bot.start_web(settings), await queue_bot.start_web(settings)
    assert (await one.command(queue_bot.target(), channel=OPS)).status == 200
    await fire_alert(two, "shop")
    asked_ts, alert_ts = await _roots_of_a_502_and_an_alert(queue_bot)
    await slack.wait_for(lambda: _says_waiting(slack, asked_ts), WAIT_S + 5, "the /502 line")
    await slack.wait_for(lambda: _says_waiting(slack, alert_ts), 5, "the alert root's line")

    await _worker_completes_both(queue_bot, tmp_path / "alerting.toml", asked_ts, alert_ts)
    assert _waiting_edits(slack, asked_ts) == _waiting_edits(slack, alert_ts) == 1


def _storm_sites(path: Path, url: str, names: list[str]) -> Path:
    """The lab's settings with ``names`` as monitored sites (so a grouped alert maps to them)."""
    lab_sites(path)
    text = path.read_text(encoding="utf-8")
    for name in names:
        text += f'\n[[site]]\nname = "{name}"\nurl = "{url}/{name}"\ninterval_s = 3600\n'
    path.write_text(text, encoding="utf-8")
    return path


async def test_storm_table_says_its_sites_wait_for_a_worker_until_one_takes_them(
    queue_bot: QueueBot, tmp_path: Path
) -> None:
    slack = queue_bot.slack
    names = [f"shop{n}" for n in range(5)]
    sites = _storm_sites(tmp_path / "storm.toml", queue_bot.lab.http.url(0), names)
    await queue_bot.stop_web(queue_bot.bot)
    web_bot = await queue_bot.start_web(load_settings(sites))
    await fire_grouped_alert(web_bot, names)
    await slack.wait_for(lambda: len(slack.roots(OPS)) == 1, 5, "the storm's root")
    storm_ts = slack.roots(OPS)[0].ts

    # No worker: after BADGATEWAY_WORKER_WAIT_S the table says so, on every site's row.
    await slack.wait_for(lambda: _says_waiting(slack, storm_ts), WAIT_S + 8, "the table's line")
    await slack.wait_for(
        lambda: "(5 queued)" in shown(slack.message(storm_ts)), 8, "every site waiting"
    )
    table = shown(slack.message(storm_ts))
    assert "is `badgateway worker` running?" in table
    assert all(f"*{name}* · :hourglass: waiting for a worker" in table for name in names), table

    # A worker comes: each site's cause replaces its waiting row, and the line goes.
    await queue_bot.start_worker("late", BADGATEWAY_SITES=str(sites))
    await slack.wait_for(
        lambda: "*Diagnosed:* 5 of 5" in shown(slack.message(storm_ts)), 30, "every cause"
    )
    await slack.wait_for(lambda: not _says_waiting(slack, storm_ts), 5, "the line gone")
    assert len(slack.roots(OPS)) == 1
