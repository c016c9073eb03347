"""A run shared by many threads reaches every one of them, in queue mode, under Slack's limits
(issue 11: "50 `/502` from 50 channels … every thread complete, one run, no duplicate post,
no 429 ignored").

Real web process (tests.lab.queue_web) and two `badgateway worker` processes, a real
redis-server, and the Slack stand-in enforcing Slack's documented limits. Every process keeps
Slack's pace (about 280 posts a minute for the workspace, one a second per channel), so
posting one run's replies into many threads takes longer than one job may: the sink timeout is
cut to 4 s here (rather than asking from fifty channels) so that twelve threads are already
more than a job can serve. Every thread still gets each reply once, in runbook order, every
root ends showing its verdict, no job is retried for running out of time (the rest of a
delivery goes on in `bgw.deliver` jobs, taken by either worker), and no call Slack refused is
repeated before its Retry-After — by the process it refused or by another one taking the
thread over. The three processes keep one pace between them (in Redis), so Slack refuses
next to nothing. `python -m bench --parts askers` measures the fifty channels.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from badgateway.bot.queue.delivery import DELIVER_JOB
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis
from badgateway.checks.steps import step_names
from tests.lab.fixtures_redis import LAB_TUNING
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.queue_web import QueueBot
from tests.lab.slack_limits import SlackLimits

pytestmark = pytest.mark.slack_limits  # Slack's real pace, against its real limits

CHANNELS = [f"C0FAN{n:04d}" for n in range(12)]
WORKERS = ("fan1", "fan2")
SINK_TIMEOUT_S = "4"  # a job begins posts for a quarter of it, then hands the rest on
WITHIN_S = 90.0


def _names(slack: SlackStandIn, root_ts: str) -> list[str]:
    return [m.text.split(":")[0] for m in slack.thread(root_ts)]


def _complete(slack: SlackStandIn) -> bool:
    roots = [r for c in CHANNELS for r in slack.roots(c)]
    expected = [*step_names(), "verdict"]
    return len(roots) == len(CHANNELS) and all(_names(slack, r.ts) == expected for r in roots)


def _roots_final(slack: SlackStandIn) -> bool:
    return all("Verdict:" in str(r.blocks) for c in CHANNELS for r in slack.roots(c))


async def test_a_run_shared_by_more_threads_than_a_job_can_serve_reaches_each_once(
    queue_bot: QueueBot,
) -> None:
    slack = queue_bot.slack
    for name in WORKERS:
        await queue_bot.start_worker(
            name,
            BADGATEWAY_QUEUE_SINK_TIMEOUT_S=SINK_TIMEOUT_S,
            BADGATEWAY_SLACK_RATE_SCALE="1",  # Slack's real pace: the lab's workers are unpaced
        )
    slack.limits = limits = SlackLimits()
    started = time.monotonic()
    target = queue_bot.target()
    sent = await asyncio.gather(
        *(queue_bot.bot.command(target, channel=c, user=f"U0{c[-4:]}") for c in CHANNELS)
    )
    assert all(s.status == 200 for s in sent)
    await slack.wait_for(lambda: _complete(slack), WITHIN_S, "every thread complete")
    took = time.monotonic() - started
    await slack.wait_for(lambda: _roots_final(slack), WITHIN_S, "every root shows its verdict")
    final = time.monotonic() - started

    # One run for everyone: every reply's key starts with the same diagnosis id; none twice.
    keys = [
        (m.channel, str(metadata["event_payload"]["key"]))
        for m in slack.messages
        if m.thread_ts and (metadata := m.metadata)
    ]
    assert len({key.split(":")[0] for _, key in keys}) == 1, keys
    assert len(keys) == len(set(keys)) == len(CHANNELS) * (len(step_names()) + 1)
    unhonoured = [json.loads(call)[0] for call in limits.unhonoured_calls]
    assert limits.unhonoured == 0, unhonoured
    # One pace for the three processes, kept in Redis (bot.shared_pace): Slack refuses (next
    # to) nothing. Each process pacing on its own to the workspace's limits drew 30-50 here.
    assert limits.refused <= 3, limits.refused

    redis = connect_redis(queue_bot.lab.redis_server.url, 4, LAB_TUNING)
    try:
        jobs = await DiagnosisStore(redis, LAB_TUNING.keep_s).recent_jobs()
    finally:
        await redis.aclose()
    deliveries = [j for j in jobs if j["function"] == DELIVER_JOB]
    assert deliveries, "the threads were all served within one job: the test proves nothing"
    # No try ran out of time. (A try may still be re-run for another reason: on a loaded
    # machine the lab's 1 s heartbeat can make a sweep think a slow-starting job is stuck.)
    retried = [j for j in jobs if j["status"] != "complete"]
    timed_out = [j for j in retried if "did not finish" in str(j.get("why"))]
    assert not timed_out, (timed_out, queue_bot.logs())
    assert all(j["key"] in {k["key"] for k in jobs if k["status"] == "complete"} for j in retried)
    assert "cannot reach Redis" not in queue_bot.logs()  # Redis was up all along
    print(
        f"\n{len(CHANNELS)} threads complete in {took:.1f} s, roots final in {final:.1f} s; "
        f"{len(jobs)} jobs ({len(deliveries)} {DELIVER_JOB}, {len(retried)} re-run), "
        f"{len(slack.calls_of('chat.postMessage'))} posts, "
        f"{len(slack.calls_of('chat.update'))} updates, {limits.refused} answered 429"
    )
