"""Many diagnoses at once: one worker process keeps hundreds of probes in flight (asyncio),
never more than its concurrency setting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from badgateway.checks.settings import load_settings
from tests.lab.fixtures_redis import QueueLab, step_calls, write_lab_sites

DIAGNOSES = 300
CONCURRENCY = 150
HELD_AT_MOST_S = 30.0  # the probes are answered when the test says; this only bounds a failure


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_one_worker_keeps_hundreds_in_flight_within_its_limit(queue_lab: QueueLab) -> None:
    # The probes are held until every slot holds one: whether the limit is reached then does
    # not depend on how fast a loaded machine starts jobs (2 s probes did: 200 job starts in
    # 2 s were needed for 100 in flight). A probe's timeout and the budget outlast the hold.
    held = {"timeout_s": HELD_AT_MOST_S + 5, "budget_s": HELD_AT_MOST_S + 10}
    write_lab_sites(queue_lab.sites_path, queue_lab.http.port, **held)
    queue_lab.settings = load_settings(queue_lab.sites_path)
    # The production heartbeat (5 s): the lab's 1 s is tuned for fast recovery tests, and
    # 150 jobs beating four times a second would measure the heartbeat, not the queue.
    worker = queue_lab.start_worker(
        "busy", concurrency=CONCURRENCY, env={"BADGATEWAY_QUEUE_HEARTBEAT_S": "5"}
    )
    http = queue_lab.http
    url = http.held_url(HELD_AT_MOST_S)
    t0 = time.monotonic()
    requests = await asyncio.gather(
        *(queue_lab.submit(url, ["lab_fetch", "lab_ping"]) for _ in range(DIAGNOSES))
    )
    ids = [r.id for r in requests]
    deadline = t0 + HELD_AT_MOST_S - 5
    while http.in_flight < CONCURRENCY:  # every slot: fan-outs and pings end, fetches stay
        assert time.monotonic() < deadline, f"only {http.in_flight} probes in flight"
        await asyncio.sleep(0.05)
    filled = time.monotonic() - t0
    # Full, with as many fetches again queued: a worker past its limit would take more now.
    seen = http.count()
    await asyncio.sleep(1.0)  # an observation window: the absence of more has no event
    assert (http.in_flight, http.count()) == (CONCURRENCY, seen)
    http.release()
    calls = await queue_lab.wait_concluded(ids, within_s=60)
    elapsed = time.monotonic() - t0
    print(
        f"\n{DIAGNOSES} diagnoses ({DIAGNOSES * 3} jobs) with one worker (concurrency "
        f"{CONCURRENCY}): all {CONCURRENCY} slots probing after {filled:.1f} s, all concluded "
        f"in {elapsed:.1f} s, worker RSS {_rss_mib(worker.pid):.0f} MiB"
    )
    assert http.peak == CONCURRENCY, "more jobs ran at once than the concurrency setting allows"
    assert step_calls(calls) == {(i, s): 1 for i in ids for s in ("lab_fetch", "lab_ping")}
    assert len(step_calls(calls, "verdict")) == DIAGNOSES
    # How fast is a figure (bench/queue_bench.py), not a timed assertion: the limit reached
    # and never passed is what proves the work overlaps.
