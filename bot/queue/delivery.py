"""Deliveries to many threads, handed out as jobs of their own (``bgw.deliver``).

A step's result shared by many threads may take longer to post than one job's timeout (posts
are paced to Slack's limits). The sink (bot.slack.sink) delivers for a bounded time, then
hands the threads still to go to ``DeliveryQueue.hand_out``: one ``bgw.deliver`` job for the
batch, on a queue of its own (``DELIVERY_QUEUE``) that only workers posting to Slack take from
(a worker with another sink would fail a function it does not have). Such a job does the same,
so every job is bounded and each thread carries on where it stopped.

The job's key names the diagnosis, the part, the round and the threads, so that a step job
run twice (at-least-once) hands the same batch out once while it is queued or running.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from saq.job import Job

from badgateway.bot.queue.jobs import heartbeat
from badgateway.bot.queue.saq_queue import DiagnosisQueue
from badgateway.bot.queue.tuning import QueueTuning, connect_redis
from badgateway.bot.queue.worker import FeatureJobs

DELIVER_JOB = "bgw.deliver"
DELIVERY_QUEUE = "deliver"
DELIVERY_MAX_CONNECTIONS = 4  # a worker's sink only enqueues here
DELIVERY_JOB_TTL_S = 3600

Deliver = Callable[[dict[str, Any]], Awaitable[None]]


def delivery_key(delivery: dict[str, Any]) -> str:
    threads = json.dumps(sorted(delivery["threads"]))
    digest = hashlib.sha1(threads.encode(), usedforsecurity=False).hexdigest()[:12]
    part = delivery["part"] + (":again" if delivery.get("redelivered") else "")
    return f"{delivery['diagnosis_id']}:{part}:deliver{delivery['round']}:{digest}"


class DeliveryQueue:
    """Where a worker's sink hands out the rest of a delivery; connects on first use."""

    def __init__(self, redis_url: str, tuning: QueueTuning) -> None:
        self.redis_url = redis_url
        self.tuning = tuning
        self._queue: DiagnosisQueue | None = None
        self._connecting = asyncio.Lock()

    @property
    def hand_out_after_s(self) -> float:
        """How long one job begins posts before it hands the rest on: a quarter of its sink
        timeout, so that the posts it has begun (one per thread, each waiting out a 429's
        Retry-After if Slack answers one) and the hand-out itself fit in the rest."""
        return self.tuning.sink_timeout_s / 4

    async def hand_out(self, delivery: dict[str, Any]) -> None:
        queue = await self._connect()
        await queue.enqueue(
            Job(
                function=DELIVER_JOB,
                kwargs={"delivery": delivery},
                key=delivery_key(delivery),
                timeout=math.ceil(self.tuning.sink_timeout_s) + 5,
                heartbeat=self.tuning.heartbeat_s,
                retries=self.tuning.retries,
                retry_delay=self.tuning.retry_delay_s,
                retry_backoff=self.tuning.retry_delay_cap_s,
                ttl=DELIVERY_JOB_TTL_S,
            )
        )

    async def _connect(self) -> DiagnosisQueue:
        async with self._connecting:
            if self._queue is None:
                redis = connect_redis(self.redis_url, DELIVERY_MAX_CONNECTIONS, self.tuning)
                queue = DiagnosisQueue(redis, DELIVERY_QUEUE, self.tuning)
                await queue.connect()
                self._queue = queue
            return self._queue

    def jobs(self, deliver: Deliver) -> FeatureJobs:
        """The ``bgw.deliver`` job for a worker whose sink is ``deliver``'s."""

        async def deliver_job(ctx: dict[str, Any], *, delivery: dict[str, Any]) -> dict[str, Any]:
            async with heartbeat(ctx["job"], self.tuning.beat_every_s):
                await asyncio.wait_for(deliver(delivery), self.tuning.sink_timeout_s)
            return {"threads": len(delivery["threads"])}

        async def startup(ctx: dict[str, Any]) -> None:
            return None

        return FeatureJobs(DELIVERY_QUEUE, [(DELIVER_JOB, deliver_job)], [], startup)

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.redis.aclose()
            await self._queue.redis.connection_pool.disconnect()
            self._queue = None
