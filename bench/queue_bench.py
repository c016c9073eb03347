"""Queue benchmark: one real redis-server and one real worker process on loopback.

Submits N diagnoses of two lab steps (an HTTP GET that answers after --probe-s seconds and a
TCP connect) and prints throughput, enqueue→start latency (p50/p95, from the workers' job
timings), the peak number of probes in flight, and the worker's memory. Bounded: N is capped
at 2,000 and every process is stopped at the end. Loopback only.

    .venv/bin/python bench/queue_bench.py --diagnoses 300 --concurrency 150 --probe-s 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from badgateway.bot.queue.carrier import QueueCarrier
from badgateway.bot.queue.status import collect_status
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import QueueTuning
from badgateway.checks.settings import load_settings
from tests.lab.fixtures_redis import (
    LAB_QUEUE_ENV,
    QueueLab,
    RedisServer,
    SleepyHTTPServer,
    install_lab_steps,
    step_calls,
    write_lab_sites,
)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    install_lab_steps()
    server = RedisServer(directory)
    server.start()
    http = SleepyHTTPServer()
    sites = directory / "sites.toml"
    write_lab_sites(sites, http.port)
    lab = QueueLab(server, http, directory, sites, load_settings(sites))
    try:
        # Production queue timings (the lab's short heartbeat would dominate the figures).
        env = {name: "" for name in LAB_QUEUE_ENV}
        if args.profile:
            env["BADGATEWAY_PROFILE"] = args.profile
        worker = lab.start_worker("bench", concurrency=args.concurrency, env=env)
        lab.carrier = QueueCarrier(lab.config, lab.settings, QueueTuning())
        url = http.url(args.probe_s)
        t0 = time.monotonic()
        requests = await asyncio.gather(
            *(lab.submit(url, ["lab_fetch", "lab_ping"]) for _ in range(args.diagnoses))
        )
        submitted = time.monotonic() - t0
        calls = await lab.wait_concluded([r.id for r in requests], within_s=300)
        elapsed = time.monotonic() - t0
        status = await collect_status(lab.config)
        # Enqueue→start without a backlog: diagnoses submitted one at a time.
        idle = []
        for _ in range(20):
            request = await lab.submit(url, ["lab_ping"])
            await lab.wait_concluded([request.id], within_s=30)
            idle.append(request.id)
        store = DiagnosisStore(lab.carrier._queue.redis, 60)  # type: ignore[union-attr]
        idle_waits = sorted(
            int(e["wait_ms"])
            for e in await store.recent_jobs()
            if e["key"].split(":")[0] in idle and e.get("wait_ms") is not None
        )
        jobs = args.diagnoses * 3
        figures = {
            "diagnoses": args.diagnoses,
            "jobs": jobs,
            "concurrency": args.concurrency,
            "probe_s": args.probe_s,
            "submit_s": round(submitted, 2),
            "elapsed_s": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed),
            "peak_probes_in_flight": http.peak,
            "burst_enqueue_to_start_ms_p50": status["recent"]["wait_ms_p50"],
            "burst_enqueue_to_start_ms_p95": status["recent"]["wait_ms_p95"],
            "run_ms_p50": status["recent"]["run_ms_p50"],
            "idle_enqueue_to_start_ms_p50": idle_waits[len(idle_waits) // 2],
            "idle_enqueue_to_start_ms_max": idle_waits[-1],
            "worker_rss_mib": round(_rss_mib(worker.pid)),
            "worker_cpu_s": round(_cpu_s(worker.pid), 2),
            "bench_cpu_s": round(time.process_time(), 2),
            "duplicates": sum(1 for n in step_calls(calls).values() if n > 1),
        }
        if lab.carrier is not None:
            await lab.carrier.close()
        return figures
    finally:
        lab.close()
        http.close()
        server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diagnoses", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=150)
    p.add_argument("--probe-s", type=float, default=0.5)
    p.add_argument("--profile", default="", help="write a cProfile of the worker to this file")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.diagnoses = max(1, min(args.diagnoses, 2000))
    with tempfile.TemporaryDirectory(prefix="bgw-bench-") as tmp:
        figures = asyncio.run(bench(args, Path(tmp)))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>30}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
