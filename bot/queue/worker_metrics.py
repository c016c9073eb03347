"""Workers' metrics through Redis, and the queue's depth, for the web process's `/metrics`.

A worker pushes its registry (bot.metrics) every ``BADGATEWAY_METRICS_PUSH_S`` to
``<prefix>:metrics:worker:<name>`` with a lease of ``PUSH_TTL_S``, and once more as it stops;
the web process reads every live worker's when it is scraped (bot.metrics says why this way
round). Reading is best effort: Redis out of reach makes a scrape show only the web process's
own metrics, never fail it (the scrape is how one sees that something is wrong).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from badgateway.bot import metrics, storage
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, saq_key
from badgateway.bot.queue.store import DiagnosisStore

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 2.0


def _key(worker: str) -> str:
    return storage.key("metrics", "worker", worker)


async def push(redis: Redis, worker: str) -> None:
    await redis.set(_key(worker), metrics.exposition(), ex=metrics.PUSH_TTL_S)


async def push_while(redis: Redis, worker: str, every_s: float, stopping: asyncio.Event) -> None:
    """Push every ``every_s`` until ``stopping`` is set, then once more."""
    while not stopping.is_set():
        try:
            async with asyncio.timeout(max(every_s, READ_TIMEOUT_S)):
                await push(redis, worker)
        except (RedisError, OSError, TimeoutError) as exc:  # Redis away: a later push gets in
            log.debug("could not push metrics: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        async with asyncio.timeout(READ_TIMEOUT_S):
            await push(redis, worker)  # the jobs it finished while stopping count too


async def workers(redis: Redis) -> dict[str, str]:
    """Each live worker's last push, by worker name."""
    prefix = _key("")
    found: dict[str, str] = {}
    keys = [k async for k in redis.scan_iter(match=prefix + "*", count=200)]
    if not keys:
        return found
    values = await redis.mget(keys)
    for raw_key, value in zip(keys, values, strict=True):
        name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        if value is not None:
            found[name[len(prefix) :]] = value.decode() if isinstance(value, bytes) else value
    return found


async def queue_depth(redis: Redis) -> dict[str, int]:
    """Jobs waiting for a worker in each queue the bot has used."""
    names = sorted({DEFAULT_QUEUE, *await DiagnosisStore(redis, 0).queue_names()})
    counts = [await cast("Awaitable[int]", redis.llen(saq_key(name, "queued"))) for name in names]
    return dict(zip(names, counts, strict=True))


async def read(redis: Redis, snapshot: metrics.Snapshot) -> None:
    """Fill ``snapshot`` with the workers' pushes and the queue's depth, as far as Redis
    answers within ``READ_TIMEOUT_S``."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            snapshot.workers = await workers(redis)
            snapshot.queue_depth = await queue_depth(redis)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("/metrics without the workers' figures: %s", exc)
