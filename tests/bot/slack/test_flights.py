"""Single-flight in queue mode: two web processes and a worker sharing one Redis.

`/502` for one site arrives at both web processes at once: one run is submitted for all of
them (the flight is taken under a Redis lock), every asker has a root, and the worker's sink —
a third connection, as on another machine — shows the run's results in every thread, also
in a thread that joins after the run has ended (caught up at once).
"""

from __future__ import annotations

import asyncio
import time

from badgateway.bot.config import BotConfig
from badgateway.bot.slack.diagnosis_threads import DiagnosisThreads
from badgateway.bot.slack.root_updates import RootUpdates
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, RedisStore
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Diagnosis, Finding, Status, StepResult
from badgateway.checks.settings import Settings
from badgateway.checks.target import parse_target
from badgateway.checks.verdict import decide
from tests.lab.alerts import RecordingCarrier
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn

URL = "https://shop.example.com/"


def _result(name: str) -> StepResult:
    return StepResult.from_findings(name, f"{name} saw a 502", [Finding("x", "502", Status.FAIL)])


async def _nothing(_: str) -> None:
    return None


async def test_two_web_processes_share_one_run_through_redis(
    slack_api: SlackStandIn, redis_server: RedisServer
) -> None:
    config = BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url)
    settings = Settings()
    ctx = ProbeContext(parse_target(URL, settings), settings)
    carrier = RecordingCarrier()

    def sink() -> SlackSink:  # no rate limits here: root updates unpaced
        client = make_web_client(config)
        state = BotState(RedisStore(redis_server.url))
        return SlackSink(client, state, RootUpdates.unpaced(client))

    webs = [
        DiagnosisThreads(s.client, s.state, carrier, settings, sink=s) for s in (sink(), sink())
    ]
    worker = sink()
    channels = [f"C0Q{n:03d}" for n in range(6)]
    try:
        await asyncio.gather(
            *(
                webs[n % 2].start(ctx, user=f"U0Q{n:03d}", channel=channel, reply=_nothing)
                for n, channel in enumerate(channels)
            )
        )
        (request,) = carrier.requests  # one run for six askers on two processes
        assert len(slack_api.roots()) == len(channels)

        results = [_result(name) for name in request.steps]
        for result in reversed(results):  # out of order, as concurrent steps finish
            await worker.step_finished(request, result)
        diagnosis = Diagnosis("shop", URL, decide(results), results, 10, "x")
        await worker.diagnosis_finished(request, diagnosis)
        expected = [*request.steps, "verdict"]
        for channel in channels:
            (root,) = slack_api.roots(channel)
            assert [m.text.split(":")[0] for m in slack_api.thread(root.ts)] == expected

        # Within the window, after the run ended: the same run, shown at once.
        await webs[1].start(ctx, user="U0LATE01", channel="C0LATE001", reply=_nothing)
        assert len(carrier.requests) == 1
        (late,) = slack_api.roots("C0LATE001")
        assert [m.text.split(":")[0] for m in slack_api.thread(late.ts)] == expected
        # Every root ends showing the verdict (coalesced updates, the final one lands).
        await asyncio.gather(worker.roots.settle(), *(w.sink.roots.settle() for w in webs))
        assert all("Verdict:" in str(r.blocks) for r in slack_api.roots())
        flight = await worker.state.flight(URL)
        assert flight is not None and flight.finished_at is not None
        assert flight.finished_at <= time.time()
    finally:
        for web in webs:
            await web.sink.aclose()
        await worker.aclose()
