"""Routing and visibility: a site's log step goes to the queue of the host holding its logs
and only a worker on that queue takes it; `badgateway status` shows depth, latency, workers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx

from tests.lab import REPO
from tests.lab.fixtures_redis import QueueLab, step_calls
from tests.lab.process import ManagedProcess, free_port, wait_for_port


async def _status(lab: QueueLab, *args: str) -> str:
    """`badgateway status` as a user runs it."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "badgateway.bot.cli", "status", *args],
        env={**os.environ, "REDIS_URL": lab.redis_server.url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


async def test_log_step_runs_only_on_a_worker_of_its_host(queue_lab: QueueLab) -> None:
    queue_lab.start_worker("central", queues="default")
    # "shop" keeps its logs on web-1 (sites file); a bare URL has no site, so no log host.
    routed = await queue_lab.submit("shop", ["lab_tail"])
    local = await queue_lab.submit(queue_lab.http.url(0), ["lab_tail"])
    await queue_lab.wait_concluded([local.id], within_s=15)

    await asyncio.sleep(1.0)  # time enough for "central" to take it, if it wrongly could
    assert queue_lab.queued("logs@web-1") == 1
    assert not [c for c in queue_lab.calls() if c["id"] == routed.id]

    queue_lab.start_worker("web-1", queues="logs@web-1")
    calls = await queue_lab.wait_concluded([routed.id], within_s=15)
    assert step_calls(calls) == {(routed.id, "lab_tail"): 1, (local.id, "lab_tail"): 1}
    by_id = {c["id"]: c["worker"] for c in calls if c["kind"] == "step"}
    assert by_id == {routed.id: "web-1", local.id: "central"}

    report = json.loads(await _status(queue_lab, "--json"))
    queues = {q["name"]: q for q in report["queues"]}
    assert set(queues) == {"default", "logs@web-1"}
    assert queues["logs@web-1"]["workers"] == 1 and queues["logs@web-1"]["queued"] == 0
    assert set(report["workers"]) == {"central", "web-1"}
    assert report["recent"]["jobs"] >= 4  # two fan-outs, two log steps
    assert report["recent"]["wait_ms_p50"] is not None

    text = await _status(queue_lab)
    print("\n" + text)
    assert "logs@web-1" in text and "enqueue→start p50" in text

    # SAQ's web UI over the same queues.
    port = free_port()
    ui = ManagedProcess(
        [sys.executable, "-m", "badgateway.bot.queue.web", "--port", str(port)],
        queue_lab.directory / "web-ui.log",
        env={**os.environ, "REDIS_URL": queue_lab.redis_server.url},
        cwd=REPO,
    )
    try:
        await asyncio.to_thread(wait_for_port, port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            listed = (await client.get("/api/queues")).json()["queues"]
            page = await client.get("/")
        assert {q["name"] for q in listed} == {"default", "logs@web-1"}
        assert page.status_code == 200
    finally:
        ui.stop()


def _step_call(calls: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    [call] = [c for c in calls if c["kind"] == "step" and c["id"] == request_id]
    return call


async def test_logs_on_several_hosts_are_read_on_each_and_shown_as_one_step(
    queue_lab: QueueLab,
) -> None:
    """Site "split" keeps logs on web-1, on app-1 and on no named host: one part job per
    place, each taken only by a worker there, assembled into one step once all are in."""
    queue_lab.start_worker("central", queues="default")
    queue_lab.start_worker("web-1", queues="logs@web-1")
    request = await queue_lab.submit("split", ["lab_tail"])

    await asyncio.sleep(1.5)  # web-1's and the central part are in; app-1's waits
    assert queue_lab.queued("logs@app-1") == 1
    assert not [c for c in queue_lab.calls() if c["id"] == request.id]

    queue_lab.start_worker("app-1", queues="logs@app-1")
    calls = await queue_lab.wait_concluded([request.id], within_s=15)
    assert step_calls(calls) == {(request.id, "lab_tail"): 1}
    assert step_calls(calls, "verdict") == {(request.id, ""): 1}
    assert _step_call(calls, request.id)["messages"] == [
        "* read by central",
        "app-1 read by app-1",
        "web-1 read by web-1",
    ]


async def test_a_host_whose_worker_is_away_delays_the_step_but_never_withholds_it(
    queue_lab: QueueLab,
) -> None:
    """No worker serves logs@app-1 and web-1's part crashes: after the host wait the step is
    shown with what came and why the rest did not; app-1's late part changes nothing."""
    queue_lab.start_worker("central", queues="default", env={"BADGATEWAY_QUEUE_HOST_WAIT_S": "2"})
    queue_lab.start_worker("web-1", queues="logs@web-1", env={"BADGATEWAY_LAB_PART_CRASH": "web-1"})
    request = await queue_lab.submit("split", ["lab_tail"])
    calls = await queue_lab.wait_concluded([request.id], within_s=15)
    assert step_calls(calls) == {(request.id, "lab_tail"): 1}
    messages = _step_call(calls, request.id)["messages"]
    assert messages[0] == "* read by central"
    assert messages[1].startswith(
        "app-1 missing: no worker on queue logs@app-1 took them within 2 s"
    )
    assert (
        messages[2]
        == "web-1 missing: the check crashed: RuntimeError: the disk of web-1 is on fire"
    )
    assert _step_call(calls, request.id)["status"] == "warn"

    # The late part's job was taken back: app-1's queue does not keep it, and a worker that
    # comes back there has nothing of this diagnosis to do.
    assert queue_lab.queued("logs@app-1") == 0
    queue_lab.start_worker("app-1", queues="logs@app-1")
    await asyncio.sleep(1.5)
    assert queue_lab.calls() == calls
