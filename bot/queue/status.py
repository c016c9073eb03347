"""`badgateway status`: queue depth, job latency, failures and workers, read from Redis.

SAQ keeps per-queue lists (queued, active, scheduled) and per-worker stats; the workers add
recent job timings (``bgw:stats:jobs``: enqueue→start wait and run time of the last 1,000
jobs) and a dead-letter count. Vantage workers are listed by their place (every place
whose queue, ``probe@PLACE``, was ever used, with or without a worker now).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Mapping
from typing import Any

from badgateway.bot.config import BotConfig
from badgateway.bot.queue.health import require_redis
from badgateway.bot.queue.places import place_of
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, DiagnosisQueue
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis

RECENT_S = 900  # latency figures cover the last 15 minutes


def _percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _latency(entries: list[dict[str, Any]]) -> dict[str, Any]:
    waits = [int(e["wait_ms"]) for e in entries if e.get("wait_ms") is not None]
    runs = [int(e["run_ms"]) for e in entries if e.get("run_ms") is not None]
    return {
        "jobs": len(entries),
        "wait_ms_p50": _percentile(waits, 0.5),
        "wait_ms_p95": _percentile(waits, 0.95),
        "run_ms_p50": _percentile(runs, 0.5),
        "run_ms_p95": _percentile(runs, 0.95),
        "run_ms_mean": round(statistics.fmean(runs)) if runs else None,
    }


async def collect_status(config: BotConfig) -> dict[str, Any]:
    """Raises RedisUnreachable (one line) when Redis does not answer."""
    tuning = config.tuning
    await require_redis(str(config.redis_url), tuning)  # at once, not after ~10 s of retries
    redis = connect_redis(str(config.redis_url), 4, tuning)
    try:
        store = DiagnosisStore(redis, tuning.keep_s)
        names = sorted({DEFAULT_QUEUE, *await store.queue_names()})
        recent_cutoff = int((time.time() - RECENT_S) * 1000)
        recent = [e for e in await store.recent_jobs() if int(e.get("at") or 0) >= recent_cutoff]
        queues: list[dict[str, Any]] = []
        workers: dict[str, dict[str, Any]] = {}
        for name in names:
            info = await DiagnosisQueue(redis, name, tuning).info()
            failed = 0
            for worker_id, worker in info["workers"].items():
                stats: Mapping[str, Any] = worker.get("stats") or {}
                failed += int(stats.get("failed") or 0)
                meta = worker.get("metadata") or {}
                seen = workers.setdefault(
                    str(meta.get("name") or worker_id),
                    {
                        "queues": meta.get("queues") or [],
                        "vantage": meta.get("vantage"),
                        "complete": 0,
                        "failed": 0,
                    },
                )
                seen["complete"] += int(stats.get("complete") or 0)
                seen["failed"] += int(stats.get("failed") or 0)
            queue_jobs = [e for e in recent if e.get("queue") == name]
            queues.append(
                {
                    "name": name,
                    "queued": info["queued"],
                    "active": info["active"],
                    "scheduled": info["scheduled"],  # waiting for a retry delay
                    "failed": failed,  # since the workers started
                    "workers": len(info["workers"]),
                    "recent": _latency(queue_jobs),
                }
            )
        places: dict[str, list[str]] = {
            place: [] for place in (place_of(name) for name in names) if place is not None
        }
        for worker_name, seen in workers.items():
            if seen["vantage"]:
                places.setdefault(str(seen["vantage"]), []).append(worker_name)
        return {
            "queues": queues,
            "workers": workers,
            "places": {place: sorted(names) for place, names in sorted(places.items())},
            "dead_letters": await store.dead_letters(),
            "recent": _latency(recent),
            "recent_window_s": RECENT_S,
        }
    finally:
        await redis.aclose()
        await redis.connection_pool.disconnect()


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def render_status(status: dict[str, Any]) -> str:
    lines = [f"{'queue':<24} {'queued':>7} {'active':>7} {'retry':>6} {'failed':>7} {'workers':>8}"]
    for q in status["queues"]:
        lines.append(
            f"{q['name']:<24} {q['queued']:>7} {q['active']:>7} {q['scheduled']:>6}"
            f" {q['failed']:>7} {q['workers']:>8}"
        )
    recent = status["recent"]
    lines.append("")
    lines.append(
        f"last {status['recent_window_s'] // 60} min: {recent['jobs']} jobs;"
        f" enqueue→start p50 {_ms(recent['wait_ms_p50'])}, p95 {_ms(recent['wait_ms_p95'])};"
        f" run p50 {_ms(recent['run_ms_p50'])}, p95 {_ms(recent['run_ms_p95'])}"
    )
    lines.append(f"dead letters (steps shown as failed after all tries): {status['dead_letters']}")
    lines.append("")
    if not status["workers"]:
        lines.append("workers: none seen (start one: badgateway worker --queues default)")
    for name, w in sorted(status["workers"].items()):
        lines.append(
            f"worker {name}: queues {','.join(w['queues'])}; "
            f"{w['complete']} jobs done, {w['failed']} failed"
        )
    for place, names in status.get("places", {}).items():
        served = ", ".join(names) or f"no worker (start one: badgateway worker --vantage {place})"
        lines.append(f"place {place}: {served}")
    return "\n".join(lines)


def show_status(config: BotConfig, as_json: bool) -> int:
    status = asyncio.run(collect_status(config))
    print(json.dumps(status, indent=2) if as_json else render_status(status))
    return 0
