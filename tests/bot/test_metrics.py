"""`/metrics`: real web and worker processes on a real Redis, a `/502` as Slack sends it, then
a scrape over HTTP parsed with Prometheus' own text parser."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from badgateway.bot import metrics
from tests.lab.bot_processes import BotProcesses
from tests.lab.fixtures_redis import LAB_QUEUE_ENV, RedisServer
from tests.lab.fixtures_slack import BOT_USER_ID, BotUnderTest, SlackStandIn, loopback_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the scrape by (name, labels), through Prometheus' parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def slack_answered(slack_api: SlackStandIn) -> dict[str, int]:
    """The calls the stand-in answered with ``ok``, by method."""
    return {
        method: len(slack_api.calls_of(method, ok_only=True))
        for method in ("chat.postMessage", "chat.update")
    }


def slack_counted(samples: Samples, method: str) -> float:
    """The bot's own count of its ``ok`` calls of ``method``."""
    return total(samples, "badgateway_slack_calls_total", method=method, outcome="ok")


async def test_metrics_after_a_diagnosis_through_the_queue(
    slack_api: SlackStandIn, failing_site: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    bot = BotProcesses(
        slack_api,
        tmp_path,
        sites={"shop": failing_site, "probed": "http://127.0.0.1:1/"},
        env={**LAB_QUEUE_ENV, "REDIS_URL": redis_server.url, "BADGATEWAY_METRICS_PUSH_S": "0.2"},
        intervals={"probed": 1},  # monitored every second: nothing listens on port 1
    )
    try:
        await bot.start_web()
        await bot.start_worker("w1")
        status, before = await bot.get(f"{bot.base}{metrics.METRICS_PATH}")
        assert status == 200
        assert total(parse(before), "badgateway_diagnoses_total") == 0
        slack_api.fail("chat.postMessage", status=429, retry_after=1)  # the root: one 429

        assert await bot.slash("shop") == 200
        await slack_api.wait_for(
            lambda: any(m.thread_ts for m in slack_api.messages if "Verdict" in str(m.blocks)),
            30,
            "the verdict in the thread",
        )

        # The root is rewritten with the verdict after the verdict's reply: wait for it too.
        await slack_api.wait_for(
            lambda: slack_api.calls_of("chat.update", ok_only=True), 30, "the root's update"
        )

        # The worker pushes its figures every few seconds: scrape until its push has the
        # verdict, a probe of the monitored site and every Slack call the stand-in answered.
        deadline = time.monotonic() + 10
        while True:
            status, text = await bot.get(f"{bot.base}{metrics.METRICS_PATH}")
            assert status == 200
            samples = parse(text)
            pushed = total(samples, "badgateway_diagnoses_total", process="w1")
            probed = total(samples, "badgateway_monitor_probes_total", site="probed")
            answered = slack_answered(slack_api)
            counted = {m: slack_counted(samples, m) for m in answered}
            if (pushed and probed and counted == answered) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        bot.stop()

    # One diagnosis, concluded by the worker, triggered by `/502`.
    assert total(samples, "badgateway_diagnoses_total", process="w1", trigger="slash") == 1
    assert total(samples, "badgateway_diagnoses_total", process="web") == 0
    # Each step ran once on the worker, with its duration in the histogram.
    for step in ("reload", "dns", "firewall", "logs", "host"):
        assert total(samples, "badgateway_step_duration_seconds_count", step=step) == 1, step
    # The diagnose job and its five step jobs waited in the queue, and nothing waits now.
    assert total(samples, "badgateway_job_wait_seconds_count", queue="default") >= 6
    assert total(samples, "badgateway_queue_depth", queue="default") == 0
    assert ("badgateway_open_incidents", frozenset()) in samples
    # Slack: every call the stand-in answered is counted once, by method and outcome (the
    # root was refused once with 429 and posted on the retry; which process posts the
    # thread's replies depends on who gets there first, so they are counted together).
    # (auth.test is not compared: Bolt checks the token with a client of its own.)
    answered = slack_answered(slack_api)
    counted = {m: slack_counted(samples, m) for m in answered}
    assert counted == answered and answered["chat.postMessage"] == 7
    assert total(samples, "badgateway_slack_rate_limited_total", method="chat.postMessage") == 1
    assert total(samples, "badgateway_slack_retries_total", reason="rate_limited") == 1
    # The monitored site was probed, and failed.
    assert total(samples, "badgateway_monitor_probes_total", site="probed", result="failed") >= 1


def diagnoses(trigger: str) -> float:
    """This process's concluded diagnoses with that trigger, whatever their cause."""
    return sum(
        s.value
        for family in metrics.REGISTRY.collect()
        if family.name == "badgateway_diagnoses"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["trigger"] == trigger
    )


async def test_each_trigger_is_counted_in_process(
    slack_bot: Callable[..., Any], failing_site: str
) -> None:
    """No Redis: the web process runs diagnoses itself and counts them by what started them."""
    before = {t: diagnoses(t) for t in metrics.TRIGGERS}
    bot: BotUnderTest = await slack_bot(loopback_settings())
    slack = bot.slack

    def verdicts(root_ts: str) -> list[Any]:
        return [m for m in slack.thread(root_ts) if m.text.startswith("verdict:")]

    assert (await bot.command(failing_site)).status == 200
    await slack.wait_for(lambda: slack.roots() and verdicts(slack.roots()[0].ts), what="verdict")
    root_ts = slack.roots()[0].ts
    mention = bot.signer.app_mention(f"<@{BOT_USER_ID}> rerun dns", thread_ts=root_ts)
    assert (await bot.send(mention)).status == 200
    await slack.wait_for(lambda: len(verdicts(root_ts)) == 2, what="the mention's verdict")
    press = bot.signer.block_action(
        "bgw_rerun", root_ts, message_ts=verdicts(root_ts)[-1].ts, thread_ts=root_ts
    )
    assert (await bot.send(press)).status == 200
    await slack.wait_for(lambda: len(verdicts(root_ts)) == 3, what="the button's verdict")
    await bot.settle()

    counted = {t: diagnoses(t) - before[t] for t in metrics.TRIGGERS}
    assert counted == {"slash": 1, "mention": 1, "rerun": 1, "alert": 0, "monitor": 0}
    # The page of this process's own /metrics shows them (no Redis: no queue, no incidents).
    text = metrics.render(metrics.Snapshot()).decode()
    samples = parse(text)
    assert total(samples, "badgateway_diagnoses_total", process="web", trigger="mention") >= 1
    assert not any(name == "badgateway_open_incidents" for name, _ in samples)
