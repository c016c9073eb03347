"""The queue under failure, with a real redis-server and real worker processes: a worker
killed mid-step, Redis restarted mid-run (cleanly, or killed with SIGKILL), a worker stopped
with SIGTERM, a step that can never be shown. Each asserts that every step reaches the sink
exactly once."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from tests.lab.fixtures_redis import LAB_TUNING, QueueLab, step_calls


async def test_killed_worker_job_is_finished_by_another_exactly_once(queue_lab: QueueLab) -> None:
    first = queue_lab.start_worker("first")
    request = await queue_lab.submit(queue_lab.http.url(3), ["lab_fetch", "lab_ping"])
    queue_lab.http.wait_for_requests(1, "/sleep/3")  # the slow probe is under way in "first"
    # The quick ping is delivered and marked so before the kill: a kill between a delivery and
    # its mark would deliver that step again (at-least-once; the Slack sink then finds its
    # message and does not post twice, but this lab sink counts every call).
    client = queue_lab.redis_server.client()
    try:
        for _ in range(100):
            if client.sismember(f"bgw:diag:{request.id}:delivered", "lab_ping"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("lab_ping was not delivered")
    finally:
        client.close()
    killed_at = time.monotonic()
    first.kill()
    queue_lab.start_worker("second")

    restarted_at = await asyncio.to_thread(queue_lab.http.wait_for_requests, 2, "/sleep/3", 20)
    calls = await queue_lab.wait_concluded([request.id], within_s=20)
    recovered = time.monotonic() - killed_at
    print(
        f"\nSIGKILL recovery: probe re-started {restarted_at - killed_at:.1f} s after the kill, "
        f"result delivered after {recovered:.1f} s (the probe itself takes 3 s); "
        f"estimate heartbeat+sweep+abort wait+retry delay = {LAB_TUNING.recovery_estimate_s():.1f}"
        " s + up to 1 s scheduling"
    )
    assert step_calls(calls) == {(request.id, "lab_fetch"): 1, (request.id, "lab_ping"): 1}
    assert step_calls(calls, "verdict") == {(request.id, ""): 1}
    fetch = next(c for c in calls if c.get("step") == "lab_fetch")
    assert fetch["worker"] == "second" and fetch["status"] == "ok"
    # Re-started by the heartbeat sweep (without it a dead worker's job is never re-run): the
    # estimate is printed above; a loaded 2-core machine adds seconds of scheduling to it.
    assert restarted_at - killed_at < LAB_TUNING.recovery_estimate_s() + 6


async def test_redis_restart_mid_run_loses_no_diagnosis(queue_lab: QueueLab) -> None:
    queue_lab.start_worker("steady")
    before = [
        await queue_lab.submit(queue_lab.http.url(1.5), ["lab_fetch", "lab_ping"]) for _ in range(5)
    ]
    queue_lab.http.wait_for_requests(5, "/sleep/1.5")
    outage = await asyncio.to_thread(queue_lab.redis_server.restart, 0.5)
    # The same carrier (the web process's) submits again without being told Redis restarted.
    after = [
        await queue_lab.submit(queue_lab.http.url(0), ["lab_fetch", "lab_ping"]) for _ in range(5)
    ]
    ids = [r.id for r in before + after]
    calls = await queue_lab.wait_concluded(ids, within_s=30)
    print(f"\nRedis was down {outage:.1f} s; all {len(ids)} diagnoses concluded")
    counts = step_calls(calls)
    assert {k: v for k, v in counts.items() if k[0] in ids} == {
        (i, s): 1 for i in ids for s in ("lab_fetch", "lab_ping")
    }
    assert all(step_calls(calls, "verdict")[(i, "")] == 1 for i in ids)


async def test_redis_crash_mid_run_loses_no_diagnosis(queue_lab: QueueLab) -> None:
    # Four slots for eight 3 s probes: at the crash four step jobs run and the rest are queued.
    worker = queue_lab.start_worker("steady", concurrency=4)
    before = [
        await queue_lab.submit(queue_lab.http.url(3), ["lab_fetch", "lab_ping"]) for _ in range(8)
    ]
    submitted_at = time.monotonic()
    queue_lab.http.wait_for_requests(4, "/sleep/3")
    # appendfsync everysec: Redis write()s each command to the AOF before it replies (the
    # kernel keeps it when only the process dies), but fsyncs once a second and, on a disk too
    # slow for that, holds the write back up to 2 s; so the last second or two of writes before
    # a crash may be lost. Diagnoses submitted at least 2 s before the crash must all survive.
    await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - submitted_at)))
    running, started = queue_lab.http.in_flight, queue_lab.http.count("/sleep/3")
    assert running >= 1 and started < len(before), "no step job both running and queued"
    client = queue_lab.redis_server.client()
    persistence = cast("dict[str, Any]", client.info("persistence"))
    delayed_fsyncs = int(persistence["aof_delayed_fsync"])
    client.close()
    recorded = queue_lab.calls()  # what the sink had recorded (acknowledged) before the crash
    outage = await asyncio.to_thread(queue_lab.redis_server.crash_restart, 0.5)
    back_at = time.monotonic()
    # The same carrier (the web process's) submits again without being told Redis crashed.
    after = [
        await queue_lab.submit(queue_lab.http.url(0), ["lab_fetch", "lab_ping"]) for _ in range(5)
    ]
    ids = [r.id for r in before + after]
    calls = await queue_lab.wait_concluded(ids, within_s=40)
    concluded = time.monotonic() - back_at
    kept = [c for c in recorded if c in calls]  # all of them unless the disk held writes back
    print(
        f"\nRedis SIGKILLed with {running} probe(s) running and {len(before) - started} of "
        f"{len(before)} fetch jobs not started; down {outage:.1f} s (AOF replayed); "
        f"{len(kept)} of {len(recorded)} sink records written before the crash survived "
        f"(aof_delayed_fsync={delayed_fsyncs}); all {len(ids)} diagnoses concluded "
        f"{concluded:.1f} s after Redis was back"
    )
    counts = step_calls(calls)
    assert {k: v for k, v in counts.items() if k[0] in ids} == {
        (i, s): 1 for i in ids for s in ("lab_fetch", "lab_ping")
    }
    assert all(step_calls(calls, "verdict")[(i, "")] == 1 for i in ids)
    assert worker.process.proc.poll() is None, worker.output()[-3000:]


async def test_sigterm_finishes_held_job_and_takes_no_new_one(queue_lab: QueueLab) -> None:
    leaving = queue_lab.start_worker("leaving")
    held = await queue_lab.submit(queue_lab.http.url(2), ["lab_fetch"])
    queue_lab.http.wait_for_requests(1, "/sleep/2")
    leaving.terminate()
    await asyncio.sleep(0.1)
    later = await queue_lab.submit(queue_lab.http.url(0), ["lab_fetch"])

    code = await asyncio.to_thread(leaving.wait, 15)
    assert code == 0, leaving.output()[-2000:]
    calls = queue_lab.calls()
    assert [(c["kind"], c["worker"]) for c in calls if c["id"] == held.id] == [
        ("step", "leaving"),
        ("verdict", "leaving"),
    ]
    assert not [c for c in calls if c["id"] == later.id], "a stopping worker took a new job"

    queue_lab.start_worker("successor")
    calls = await queue_lab.wait_concluded([later.id], within_s=15)
    assert step_calls(calls) == {(held.id, "lab_fetch"): 1, (later.id, "lab_fetch"): 1}
    assert {c["worker"] for c in calls if c["id"] == later.id} == {"successor"}


async def test_step_that_cannot_be_shown_becomes_a_dead_letter(queue_lab: QueueLab) -> None:
    queue_lab.start_worker("main", env={"BADGATEWAY_LAB_REJECT": "lab_flaky"})
    request = await queue_lab.submit(queue_lab.http.url(0), ["lab_flaky", "lab_ping"])
    calls = await queue_lab.wait_concluded([request.id], within_s=20)

    assert queue_lab.rejected() == [[request.id, "lab_flaky"]] * LAB_TUNING.retries
    assert step_calls(calls) == {(request.id, "lab_flaky"): 1, (request.id, "lab_ping"): 1}
    flaky = next(c for c in calls if c.get("step") == "lab_flaky")
    assert flaky["status"] == "error"
    assert flaky["codes"] == ["step_dead_letter"]
    assert flaky["summary"].startswith(f"step lab_flaky failed after {LAB_TUNING.retries} tries: ")
    assert "invalid_blocks" in flaky["summary"]
    verdict = next(c for c in calls if c["kind"] == "verdict")
    assert sorted(verdict["steps"]) == ["lab_flaky", "lab_ping"]
