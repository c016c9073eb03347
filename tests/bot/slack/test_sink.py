"""SlackSink on its own, as queue workers use it: results arrive out of order, twice, and from
two workers at once; every step shows once, in runbook order, and repeats update in place."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from badgateway.bot.config import BotConfig
from badgateway.bot.flights import remember_request
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.render.slack_blocks import ordered_names
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, DiagnosisThread, MemoryStore
from badgateway.checks.model import Cause, Diagnosis, Finding, Status, StepResult
from badgateway.checks.verdict import decide
from tests.lab.fixtures_slack import SlackStandIn

STEPS = ["reload", "dns", "firewall", "logs", "host"]


async def _thread(slack: SlackStandIn, state: BotState) -> tuple[DiagnosisRequest, str]:
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack.base_url))
    root = await client.chat_postMessage(channel="C1", text="root")
    request = DiagnosisRequest(
        id="diag1",
        context={"target": "https://shop.example.com/"},
        steps=list(STEPS),
        origin={"kind": "slack", "channel": "C1", "root_ts": root["ts"], "user": "U1"},
        created_at=time.time(),
    )
    incident = DiagnosisThread(
        "C1", root["ts"], "shop", "https://shop.example.com/", "U1", time.time(), current="diag1"
    )
    await state.save_thread(incident)
    await remember_request(state, request)
    return request, str(root["ts"])


def _result(name: str, status: Status = Status.OK, summary: str = "fine") -> StepResult:
    cause = Cause.UPSTREAM_REFUSED if status is Status.FAIL else None
    return StepResult.from_findings(name, summary, [Finding(f"{name}_x", summary, status, cause)])


def _sink(slack: SlackStandIn, state: BotState) -> SlackSink:
    config = BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack.base_url)
    return SlackSink(make_web_client(config), state)


async def test_out_of_order_twice_and_from_two_workers(slack_api: SlackStandIn) -> None:
    state = BotState(MemoryStore())
    request, root_ts = await _thread(slack_api, state)
    worker_a, worker_b = _sink(slack_api, state), _sink(slack_api, state)
    results = {n: _result(n) for n in STEPS}
    results["logs"] = _result("logs", Status.FAIL, "connect() failed (111: Connection refused)")

    # host and dns first: nothing may be posted before reload.
    await worker_a.step_finished(request, results["host"])
    await worker_b.step_finished(request, results["dns"])
    assert slack_api.thread(root_ts) == []
    # The rest, concurrently from two workers, each delivered twice (at-least-once).
    deliveries: list[Any] = []
    for name in ("logs", "reload", "firewall", "logs", "reload"):
        deliveries += [
            worker_a.step_finished(request, results[name]),
            worker_b.step_finished(request, results[name]),
        ]
    await asyncio.gather(*deliveries)
    thread = slack_api.thread(root_ts)
    assert [m.text.split(":")[0] for m in thread] == ordered_names(STEPS)
    assert sum(m.updates for m in thread) == 0  # the same result again changes nothing
    # Delivered again with other content (a job re-run): its reply is updated in place.
    await worker_a.step_finished(request, _result("dns", Status.WARN, "slow resolver"))
    dns = next(m for m in slack_api.thread(root_ts) if m.text.startswith("dns"))
    assert dns.updates == 1 and "slow resolver" in str(dns.blocks)
    assert len(slack_api.thread(root_ts)) == len(STEPS)

    diagnosis = Diagnosis(
        "shop",
        "https://shop.example.com/",
        decide(results.values()),
        list(results.values()),
        10,
        "x",
    )
    await asyncio.gather(
        worker_a.diagnosis_finished(request, diagnosis),
        worker_b.diagnosis_finished(request, diagnosis),
    )
    thread = slack_api.thread(root_ts)
    assert [m.text.split(":")[0] for m in thread] == [*ordered_names(STEPS), "verdict"]
    await asyncio.gather(worker_a.roots.settle(), worker_b.roots.settle())
    root = slack_api.message(root_ts)
    assert "upstream_refused" in str(root.blocks) and "❌" in str(root.blocks)
    incident = await state.thread("C1", root_ts)
    assert incident is not None and incident.cause == "upstream_refused"


async def test_a_lost_step_still_gets_its_reply_at_the_end(slack_api: SlackStandIn) -> None:
    state = BotState(MemoryStore())
    request, root_ts = await _thread(slack_api, state)
    sink = _sink(slack_api, state)
    results = [_result(n) for n in STEPS]
    for r in results[1:]:  # reload's step_finished never came
        await sink.step_finished(request, r)
    assert slack_api.thread(root_ts) == []  # all held behind reload
    diagnosis = Diagnosis("shop", "https://shop.example.com/", decide(results), results, 10, "x")
    await sink.diagnosis_finished(request, diagnosis)
    assert [m.text.split(":")[0] for m in slack_api.thread(root_ts)] == [
        *ordered_names(STEPS),
        "verdict",
    ]


async def test_a_post_whose_ts_was_never_recorded_is_found_not_repeated(
    slack_api: SlackStandIn,
) -> None:
    """A worker killed after Slack took the reply but before the ts was stored: the intent it
    left makes the next try look the message up instead of posting it a second time."""
    from badgateway.bot.slack.sink import INTENT_SUFFIX
    from badgateway.bot.slack_client import post_once

    state = BotState(MemoryStore())
    request, root_ts = await _thread(slack_api, state)
    sink = _sink(slack_api, state)
    reload_result = _result("reload")
    # What the dead worker got done: the intent, the post itself, and the result stored.
    await state.record_posted(request.id, "C1", root_ts, "reload" + INTENT_SUFFIX, "")
    await post_once(
        make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_api_url=slack_api.base_url)),
        channel="C1",
        thread_ts=root_ts,
        key=f"{request.id}:reload",
        message={"text": "reload: fine", "blocks": []},
    )
    await sink.step_finished(request, reload_result)  # the job, run again elsewhere
    replies = [m for m in slack_api.thread(root_ts) if m.text.startswith("reload")]
    assert len(replies) == 1
    assert (await state.posted(request.id, "C1", root_ts))["reload"] == replies[0].ts
