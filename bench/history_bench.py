"""History benchmark: what keeping and comparing snapshots adds to a diagnosis.

One real diagnosis of a loopback site (nginx in front of a small app, its upstream listed),
then the site's app stopped and diagnosed again; then ``HistoryKeeper.compare_and_keep`` of
such diagnoses timed against each store (a state file, a real redis-server) with the history
full (``--keep`` snapshots). Prints milliseconds per compare-and-keep (median of ``--runs``),
the size of one snapshot and of the full state file, and the failing verdict's change lines.

    .venv/bin/python bench/history_bench.py --keep 50 --runs 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from badgateway.bot.config import HistoryRetention
from badgateway.bot.history_store import FileHistory, HistoryKeeper, HistoryStore, RedisHistory
from badgateway.checks.baseline import snapshot_of
from badgateway.checks.model import Diagnosis
from badgateway.checks.runner import diagnose
from tests.lab.diagnosis import lab_settings
from tests.lab.fixtures_proxies import start_nginx
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_upstreams import Upstream


async def timed(store: HistoryStore, healthy: Diagnosis, failing: Diagnosis, runs: int) -> float:
    """Median ms of compare_and_keep of a failing diagnosis, the history full."""
    keeper = HistoryKeeper(store)
    await keeper.compare_and_keep(healthy, "healthy")
    times = []
    for n in range(runs):
        started = time.perf_counter()
        await keeper.compare_and_keep(failing, f"run-{n}")
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def main(keep: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Upstream("ok") as app:
        (Path(tmp) / "nginx").mkdir()
        (Path(tmp) / "redis").mkdir()
        proxy = start_nginx(Path(tmp) / "nginx", app)
        try:
            settings = lab_settings(proxy.url, [proxy.error_log], (app.address,))
            healthy = await diagnose("lab", settings)
            app.stop()
            failing = await diagnose("lab", settings)
        finally:
            proxy.stop()
        retention = HistoryRetention(keep=keep, days=7)
        state = Path(tmp) / "state.json"
        file_ms = await timed(FileHistory(state, retention), healthy, failing, runs)
        redis_server = RedisServer(Path(tmp) / "redis")
        redis_server.start()
        try:
            redis = RedisHistory(Redis.from_url(redis_server.url, decode_responses=True), retention)
            redis_ms = await timed(redis, healthy, failing, runs)
            await redis.aclose()
        finally:
            redis_server.stop()
        compared = await HistoryKeeper(FileHistory(state, retention)).compare_and_keep(failing)
        return {
            "verdicts": [healthy.verdict.cause.value, failing.verdict.cause.value],
            "changes": [c.message for c in compared.verdict.changes],
            "snapshot_bytes": len(json.dumps(snapshot_of(failing).to_dict())),
            "state_file_bytes": state.stat().st_size,
            "keep": keep,
            "runs": runs,
            "compare_and_keep_ms": {"state_file": round(file_ms, 2), "redis": round(redis_ms, 2)},
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=int, default=50)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.keep, args.runs)), indent=2))
