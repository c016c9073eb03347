"""How the queue behaves: SAQ's job options, its timers, and the Redis connection pool.

SAQ's defaults lose work (a job whose worker dies is never re-run, timeouts are 10 s, one
try), so every knob is set here on purpose. Production values are the defaults below; tests
shorten them through the environment (``BADGATEWAY_QUEUE_*``).

A job whose worker dies is re-run after about ``heartbeat_s + sweep_s + abort_wait_s +
retry_delay_s`` seconds (5 + 2 + 3 + ≤1 ≈ 11 s with the defaults): its heartbeat goes stale,
the next sweep finds it, gives a live owner ``abort_wait_s`` to let go, and re-queues it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from checks.settings import Settings


class TuningError(ValueError):
    """A BADGATEWAY_QUEUE_* variable is not a usable number; the message names it."""


@dataclass(frozen=True)
class QueueTuning:
    heartbeat_s: int = 5  # a running job that has not beaten for this long is stuck
    sweep_s: float = 2.0  # how often (cluster-wide) stuck jobs are looked for
    abort_wait_s: float = 3.0  # how long a sweep lets a live owner acknowledge the abort
    retries: int = 3  # tries per job, the first included ("failed after 3 tries")
    retry_delay_s: float = 1.0  # first retry delay; doubles, with jitter, up to the cap
    retry_delay_cap_s: float = 10.0
    job_margin_s: float = 15.0  # job timeout = diagnosis budget + this (sink calls, Redis)
    sink_timeout_s: float = 10.0  # one sink call (a Slack post with its retries)
    dequeue_timeout_s: float = 1.0  # how quickly an idle worker notices a stop
    worker_info_s: int = 5  # how often a worker reports itself (seen by `status`)
    keep_s: int = 86_400  # how long a diagnosis's results stay in Redis
    redis_retries: int = 20  # per command, while Redis restarts (≈ 10 s with the backoff)
    host_wait_s: float = 30.0  # how long logs on a host wait for a worker there to read them

    @property
    def beat_every_s(self) -> float:
        """Beat several times per heartbeat window so one slow beat does not look like death."""
        return max(0.2, self.heartbeat_s / 4)

    def job_timeout_s(self, settings: Settings) -> int:
        return math.ceil(settings.diagnosis_budget_s + self.job_margin_s)

    def recovery_estimate_s(self) -> float:
        """Upper bound from a worker's death to its job starting again elsewhere."""
        return self.heartbeat_s + self.sweep_s + self.abort_wait_s + self.retry_delay_s

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueueTuning:
        values = os.environ if env is None else env
        base = cls()

        def number(name: str, default: float, *, whole: bool = False) -> float:
            key = f"BADGATEWAY_QUEUE_{name}"
            text = values.get(key, "").strip()
            if not text:
                return default
            try:
                value = int(text) if whole else float(text)
            except ValueError:
                raise TuningError(f"{key} must be a {'whole ' if whole else ''}number") from None
            if value <= 0:
                raise TuningError(f"{key} must be greater than 0, got {text!r}")
            return value

        return cls(
            heartbeat_s=int(number("HEARTBEAT_S", base.heartbeat_s, whole=True)),
            sweep_s=number("SWEEP_S", base.sweep_s),
            abort_wait_s=number("ABORT_WAIT_S", base.abort_wait_s),
            retries=int(number("RETRIES", base.retries, whole=True)),
            retry_delay_s=number("RETRY_DELAY_S", base.retry_delay_s),
            retry_delay_cap_s=number("RETRY_DELAY_CAP_S", base.retry_delay_cap_s),
            job_margin_s=number("JOB_MARGIN_S", base.job_margin_s),
            sink_timeout_s=number("SINK_TIMEOUT_S", base.sink_timeout_s),
            dequeue_timeout_s=number("DEQUEUE_TIMEOUT_S", base.dequeue_timeout_s),
            worker_info_s=int(number("WORKER_INFO_S", base.worker_info_s, whole=True)),
            keep_s=int(number("KEEP_S", base.keep_s, whole=True)),
            redis_retries=int(number("REDIS_RETRIES", base.redis_retries, whole=True)),
            host_wait_s=number("HOST_WAIT_S", base.host_wait_s),
        )


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
