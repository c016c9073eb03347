"""How the queue behaves: SAQ's job options, its timers, and the Redis connection pool.

SAQ's defaults lose work (a job whose worker dies is never re-run, timeouts are 10 s, one
try), so every knob is set on purpose. The values (``QueueTuning``) are read with every other
setting in bot.config (``BADGATEWAY_QUEUE_*``, defaults there); tests shorten them.

A job whose worker dies is re-run after about ``heartbeat_s + sweep_s + abort_wait_s +
retry_delay_s`` seconds (5 + 2 + 3 + ≤1 ≈ 11 s with the defaults): its heartbeat goes stale,
the next sweep finds it, gives a live owner ``abort_wait_s`` to let go, and re-queues it.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from badgateway.bot.config import QueueTuning, TuningError

__all__ = ["QueueTuning", "TuningError", "connect_redis"]


def connect_redis(
    url: str,
    max_connections: int,
    tuning: QueueTuning,
    *,
    retries: int | None = None,
    connect_timeout_s: float = 5.0,
) -> Redis:
    """A client whose commands ride out a Redis restart: reconnect and retry with backoff.

    The pool blocks (rather than failing) when all ``max_connections`` are busy, because
    hundreds of jobs share one client and each idle SAQ consumer holds a connection in BLMOVE.
    ``retries=0`` and a short ``connect_timeout_s`` make a probe that answers at once whether
    Redis is there (bot.queue.health) instead of riding the outage out.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=30,
        socket_connect_timeout=connect_timeout_s,
        socket_keepalive=True,
        health_check_interval=30,
        # Retries connection errors and timeouts (redis-py's defaults) with a short backoff.
        retry=Retry(
            ExponentialWithJitterBackoff(cap=0.5, base=0.05),
            tuning.redis_retries if retries is None else retries,
        ),
    )
    return Redis(connection_pool=pool)
