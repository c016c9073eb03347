"""SAQ's Redis queue with two changes the diagnosis jobs need.

* ``sweep`` handles stuck jobs concurrently and waits a configurable time for a live owner to
  acknowledge the abort (SAQ walks them one by one, up to 5 s each, so a dead worker holding
  50 jobs would take minutes to recover); it locks with milliseconds so a sweep interval
  below one second works in tests. Otherwise it does what SAQ's does: abort, then retry or,
  after the last try, finish ABORTED.
* ``finish`` reports a job that ended for good unsuccessfully (its last try failed, timed out,
  or its worker died) to ``on_final_failure``: the dead-letter hook that shows
  "step logs failed after 3 tries: …" in the thread instead of silence.

And its keys live under the bot's prefix like every other key (``bgw:saq:default:queued``,
``bgw:saq:job:default:KEY``, ``bgw:saq:abort:KEY``; SAQ's own are ``saq:…``), so that two
installs with different ``BADGATEWAY_REDIS_PREFIX`` can share one Redis: ``namespace`` and
``job_id`` are SAQ's hooks for that, and a job's abort marker (``Job.abort_id``, which SAQ
builds from a constant) comes from ``BotJob``, the class every job of these queues has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis
from saq.job import TERMINAL_STATUSES, Job, Status
from saq.queue.redis import PubSubMultiplexer, RedisQueue
from saq.utils import now

from badgateway.bot import storage
from badgateway.bot.queue.tuning import QueueTuning

log = logging.getLogger(__name__)

SWEPT_ERROR = "swept: its worker stopped sending heartbeats"
DEFAULT_QUEUE = "default"

FinalFailureHook = Callable[[Job], Awaitable[None]]


def saq_key(*parts: str) -> str:
    """A key of SAQ's under the bot's prefix: ``saq_key(queue, "stats")``."""
    return storage.key("saq", *parts)


class BotJob(Job):
    """A SAQ job whose abort marker is under the bot's prefix (SAQ's is ``saq:abort:KEY``)."""

    @property
    def abort_id(self) -> str:
        return saq_key("abort", self.key)


def _as_bot_job(job: Job) -> Job:
    # The same object, not a copy: SAQ and its callers go on holding the job they passed in.
    # BotJob adds no field, so only the class (and with it abort_id) changes.
    job.__class__ = BotJob
    return job


class DiagnosisQueue(RedisQueue):
    def __init__(
        self,
        redis: Redis,
        name: str,
        tuning: QueueTuning,
        on_final_failure: FinalFailureHook | None = None,
    ) -> None:
        super().__init__(redis, name=name, swept_error_message=SWEPT_ERROR)
        # SAQ's multiplexer listens on its own "saq:job:NAME*": listen where job_id publishes.
        self._pubsub = PubSubMultiplexer(redis.pubsub(), prefix=saq_key("job", name))
        self.tuning = tuning
        self.on_final_failure = on_final_failure
        self.accepting = True  # cleared on SIGTERM: take no new job

    def namespace(self, key: str) -> str:
        return saq_key(self.name, key)

    def job_id(self, job_key: str) -> str:
        return saq_key("job", self.name, job_key)

    def job_key_from_id(self, job_id: str) -> str:
        return job_id[len(self.job_id("")) :]

    def deserialize(
        self, payload: dict[str, Any] | str | bytes | None, status: Status | str | None = None
    ) -> Job | None:
        job = super().deserialize(payload, status)
        return None if job is None else _as_bot_job(job)

    async def _enqueue(self, job: Job) -> Job | None:
        return await super()._enqueue(_as_bot_job(job))

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 - SAQ's signature
        poll_interval: float = 0.0,
    ) -> Job | None:
        if not self.accepting:
            return None
        job = await super().dequeue(timeout, poll_interval)
        if job is not None and not self.accepting:
            # A BLMOVE that was already waiting when the worker began to stop: put the job
            # back at the head of the queue, untouched, for another worker.
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.lrem(self._active, 1, job.id).lpush(self._queued, job.id).execute()
            log.info("handed back %s while stopping", job.key)
            return None
        return job

    async def finish(
        self,
        job: Job,
        status: Status,
        *,
        result: Any = None,
        error: str | None = None,
        **kwargs: Any,
    ) -> None:
        await super().finish(job, status, result=result, error=error, **kwargs)
        # ABORTED while retryable is a sweep in progress (it re-queues right after), not an end.
        final = status is Status.FAILED or (status is Status.ABORTED and not job.retryable)
        if final and self.on_final_failure is not None:
            try:
                await asyncio.wait_for(self.on_final_failure(job), self.tuning.sink_timeout_s + 5)
            except Exception:  # the dead letter is best effort; the job is finished anyway
                log.exception("could not record the dead letter for job %s", job.key)

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        if not await storage.claim(self.redis, self._sweep, float(lock)):
            return []  # another worker swept within this interval
        job_ids = await cast("Awaitable[list[bytes]]", self.redis.lrange(self._active, 0, -1))
        if not job_ids:
            return []
        payloads = await self.redis.mget(job_ids)
        pairs = zip(job_ids, payloads, strict=True)
        outcomes = await asyncio.gather(
            *(self._sweep_one(job_id, payload) for job_id, payload in pairs),
            return_exceptions=True,
        )
        await self._forget_cleared_suspects(job_ids)
        swept: list[str] = []
        for job_id, outcome in zip(job_ids, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("sweeping %s failed: %s", job_id, outcome)
            elif outcome:
                swept.append(job_id.decode() if isinstance(job_id, bytes) else job_id)
        return swept

    @property
    def _suspects(self) -> str:
        return storage.key("sweep_suspects", self.name)

    async def _queued_too_long(self, job_id: bytes) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._suspects, job_id.decode(), str(now()))
            pipe.hget(self._suspects, job_id.decode())
            _, first_seen = await pipe.execute()
        return now() - int(first_seen) > self.tuning.heartbeat_s * 1000

    async def _forget_cleared_suspects(self, active_ids: list[bytes]) -> None:
        suspects = set(await cast("Awaitable[list[bytes]]", self.redis.hkeys(self._suspects)))
        cleared = suspects - set(active_ids)
        if cleared:
            await cast(
                "Awaitable[int]", self.redis.hdel(self._suspects, *(c.decode() for c in cleared))
            )

    async def _sweep_one(self, job_id: bytes, payload: bytes | None) -> bool:
        job = self.deserialize(payload)
        if job is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrem(self._active, 0, job_id.decode())
                pipe.zrem(self._incomplete, job_id)
                await pipe.execute()
            log.info("swept missing job %s", job_id)
            return True
        if job.status is Status.ACTIVE and not job.stuck:
            return False
        if job.status is Status.ACTIVE:
            # Read again before judging: the payload was read for every active job at once,
            # and a busy sweeper (its own jobs running) may judge it seconds later.
            fresh = await self.job(job.key)
            if fresh is None or fresh.status is not Status.ACTIVE or not fresh.stuck:
                return False
            job = fresh
        if job.status is Status.QUEUED and not await self._queued_too_long(job_id):
            # BLMOVE moved it to active and its worker marks it ACTIVE a moment later (a busy
            # worker may take a while): only a job seen so for a heartbeat window is stuck.
            return False
        why = "taken, never started" if job.status is Status.QUEUED else "no heartbeat"
        log.warning("sweeping stuck job %s (%s): %s", job.key, job.function, why)
        await self.abort(job, error=self.swept_error_message)
        deadline = time.monotonic() + self.tuning.abort_wait_s
        while time.monotonic() < deadline:  # a live owner acknowledges within its abort timer
            stored = await self.job(job.key)
            if stored is None or stored.status in TERMINAL_STATUSES:
                break
            await asyncio.sleep(0.1)
        stored = await self.job(job.key)
        if stored is not None:
            job.replace(stored)
        if job.retryable:
            await self.retry(job, error=self.swept_error_message)
        else:
            await self.finish(job, Status.ABORTED, error=self.swept_error_message)
        return True


class QueueHub:
    """One SAQ queue object per queue name, all on one Redis client (one connection pool)."""

    def __init__(
        self, redis: Redis, tuning: QueueTuning, on_final_failure: FinalFailureHook | None = None
    ) -> None:
        self.redis = redis
        self.tuning = tuning
        self.on_final_failure = on_final_failure
        self._queues: dict[str, DiagnosisQueue] = {}

    def get(self, name: str) -> DiagnosisQueue:
        queue = self._queues.get(name)
        if queue is None:
            queue = DiagnosisQueue(self.redis, name, self.tuning, self.on_final_failure)
            self._queues[name] = queue
        return queue

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()
