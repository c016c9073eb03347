"""Many diagnoses at once: one worker process keeps hundreds of probes in flight (asyncio),
never more than its concurrency setting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.lab.fixtures_redis import QueueLab, step_calls

DIAGNOSES = 300
CONCURRENCY = 150
PROBE_S = 2.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_one_worker_keeps_hundreds_in_flight_within_its_limit(queue_lab: QueueLab) -> None:
    # The production heartbeat (5 s): the lab's 1 s is tuned for fast recovery tests, and
    # 150 jobs beating four times a second would measure the heartbeat, not the queue.
    worker = queue_lab.start_worker(
        "busy", concurrency=CONCURRENCY, env={"BADGATEWAY_QUEUE_HEARTBEAT_S": "5"}
    )
    url = queue_lab.http.url(PROBE_S)
    t0 = time.monotonic()
    requests = await asyncio.gather(
        *(queue_lab.submit(url, ["lab_fetch", "lab_ping"]) for _ in range(DIAGNOSES))
    )
    ids = [r.id for r in requests]
    calls = await queue_lab.wait_concluded(ids, within_s=60)
    elapsed = time.monotonic() - t0
    peak = queue_lab.http.peak
    jobs = DIAGNOSES * 3  # one fan-out job and two step jobs each
    print(
        f"\n{DIAGNOSES} diagnoses ({jobs} jobs, {PROBE_S} s probes) in {elapsed:.1f} s with one "
        f"worker (concurrency {CONCURRENCY}): peak {peak} probes in flight, "
        f"{jobs / elapsed:.0f} jobs/s, worker RSS {_rss_mib(worker.pid):.0f} MiB"
    )
    assert peak <= CONCURRENCY, "more jobs ran at once than the concurrency setting allows"
    assert peak >= 100, "the worker did not keep hundreds of probes in flight"
    assert step_calls(calls) == {(i, s): 1 for i in ids for s in ("lab_fetch", "lab_ping")}
    assert len(step_calls(calls, "verdict")) == DIAGNOSES
    # How fast is a figure (printed above, and in bench/queue_bench.py), not a timed assertion:
    # the peak in flight is what proves the work overlaps.
