"""Can the queue do work right now? Redis reachable, and a worker taking jobs.

Asked by `/readyz`, by `/502` (and the other commands that need Redis) before anything is
posted, and by `badgateway status|worker` before they start. Each question is answered at
once: a probe client that does not retry and connects with a short timeout, because the
queue's own clients ride a Redis restart out for about 10 s (bot.queue.tuning), which neither
a health check nor Slack's 3 s can wait for.

Workers report themselves through SAQ every ``worker_info_s`` seconds; SAQ keeps, per queue,
a sorted set of their reports scored by when each expires (``bgw:saq:QUEUE:stats``). A worker is
heartbeating while its report has not expired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import cast
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, saq_key
from badgateway.bot.queue.tuning import QueueTuning, connect_redis
from badgateway.checks.settings import one_line

# What a Redis call raises when the server is gone: redis-py's ConnectionError and
# TimeoutError are RedisErrors; a refused or reset socket may surface as an OSError.
REDIS_DOWN = (RedisError, OSError, TimeoutError)
PROBE_TIMEOUT_S = 1.0
NO_WORKER = "no worker is taking jobs from the default queue; is `badgateway worker` running?"


def redis_where(url: str) -> str:
    """Where Redis is, for a message: host:port (or the socket path), never the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or url
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}"


def redis_down(url: str, exc: BaseException) -> str:
    """The one line that says Redis cannot be reached, and why."""
    reason = one_line(str(exc) or type(exc).__name__)[:200]
    return f"cannot reach Redis at {redis_where(url)} ({reason})"


class QueueHealth:
    """Quick answers about the queue, on a probe client of its own."""

    def __init__(
        self, url: str, tuning: QueueTuning | None = None, timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.redis = connect_redis(
            url, 4, tuning or QueueTuning(), retries=0, connect_timeout_s=timeout_s
        )

    async def unreachable(self) -> str | None:
        """None when Redis answers a PING in time; else the one line that says why not."""
        try:
            await asyncio.wait_for(cast("Awaitable[bool]", self.redis.ping()), self.timeout_s)
        except REDIS_DOWN as exc:
            return redis_down(self.url, exc)
        return None

    async def workers(self, queue: str = DEFAULT_QUEUE) -> int:
        """How many workers of ``queue`` have reported themselves and not yet expired."""
        now_ms = int(time.time() * 1000)
        stats = saq_key(queue, "stats")  # SAQ's key (DiagnosisQueue.namespace("stats"))
        count = await asyncio.wait_for(self.redis.zcount(stats, now_ms, "+inf"), self.timeout_s)
        return int(count)

    async def not_ready(self) -> str | None:
        """None when Redis answers and a default-queue worker is heartbeating; else why not."""
        problem = await self.unreachable()
        if problem:
            return problem
        try:
            if await self.workers() == 0:
                return NO_WORKER
        except REDIS_DOWN as exc:
            return redis_down(self.url, exc)
        return None

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()


class RedisUnreachable(Exception):
    """Redis cannot be reached: the message is the one line to stop with."""


async def require_redis(url: str, tuning: QueueTuning | None = None) -> None:
    """Raise RedisUnreachable (one line) unless Redis answers now."""
    health = QueueHealth(url, tuning)
    try:
        problem = await health.unreachable()
    finally:
        await health.close()
    if problem:
        raise RedisUnreachable(problem)
