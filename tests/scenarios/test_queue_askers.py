"""Many channels ask about one site at once, in queue mode, with two real workers, under
Slack's limits (issue 11: "50 `/502` from 50 channels … every thread complete, one run, no
duplicate post, no 429 ignored").

The web process (tests.lab.queue_web) and two `badgateway worker` processes, all keeping
Slack's real pace, against the stand-in enforcing Slack's documented limits. The sink timeout
is cut to 4 s so that each worker hands deliveries on to `bgw.deliver` jobs (bot.queue.delivery)
— the path the fifty channels take — and the two workers post into the same threads' turns.
Twelve channels keep it to seconds; `python -m bench --parts askers` measures the fifty.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bot.queue.delivery import DELIVER_JOB
from bot.queue.store import DiagnosisStore
from bot.queue.tuning import connect_redis
from checks.steps import step_names
from tests.lab.fixtures_redis import LAB_TUNING
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.queue_web import QueueBot
from tests.lab.slack_limits import SlackLimits

pytestmark = pytest.mark.slack_limits  # Slack's real pace, against its real limits

CHANNELS = [f"C0QA{n:05d}" for n in range(12)]
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


async def test_many_channels_two_workers_every_thread_complete_and_no_429_ignored(
    queue_bot: QueueBot,
) -> None:
    slack = queue_bot.slack
    for name in ("qa1", "qa2"):
        await queue_bot.start_worker(
            name,
            BADGATEWAY_QUEUE_SINK_TIMEOUT_S=SINK_TIMEOUT_S,
            BADGATEWAY_SLACK_RATE_SCALE="1",  # Slack's real pace: the lab's workers are unpaced
        )
    slack.limits = limits = SlackLimits()
    started = time.monotonic()
    target = queue_bot.target()
    sent = await asyncio.gather(
        *(queue_bot.bot.command(target, channel=c, user=f"U0{c[-5:]}") for c in CHANNELS)
    )
    assert all(s.status == 200 for s in sent)
    await slack.wait_for(lambda: _complete(slack), WITHIN_S, "every thread complete")
    complete_s = time.monotonic() - started
    await slack.wait_for(lambda: _roots_final(slack), WITHIN_S, "every root shows its verdict")
    final_s = time.monotonic() - started

    # One run for everyone, each reply once in each thread.
    keys = [
        (m.channel, str(metadata["event_payload"]["key"]))
        for m in slack.messages
        if m.thread_ts and (metadata := m.metadata)
    ]
    assert len({key.split(":")[0] for _, key in keys}) == 1, keys
    assert len(keys) == len(set(keys)) == len(CHANNELS) * (len(step_names()) + 1)
    unhonoured = [json.loads(call)[0] for call in limits.unhonoured_calls]
    assert limits.unhonoured == 0, (unhonoured, queue_bot.logs())

    redis = connect_redis(queue_bot.lab.redis_server.url, 4, LAB_TUNING)
    try:
        jobs = await DiagnosisStore(redis, LAB_TUNING.keep_s).recent_jobs()
    finally:
        await redis.aclose()
    deliveries = [j for j in jobs if j["function"] == DELIVER_JOB]
    assert deliveries, "every thread was served within one job: the test proves nothing"
    logs = queue_bot.logs()
    assert "cannot reach Redis" not in logs, logs
    print(
        f"\n{len(CHANNELS)} threads complete in {complete_s:.1f} s, roots final in "
        f"{final_s:.1f} s; {len(jobs)} jobs ({len(deliveries)} {DELIVER_JOB}), "
        f"{len(slack.calls_of('chat.postMessage'))} posts, "
        f"{len(slack.calls_of('chat.update'))} updates, {limits.refused} answered 429"
    )
