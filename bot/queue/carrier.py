"""QueueCarrier: how the web process hands a diagnosis to the workers through Redis.

Every diagnosis queued is recorded in Redis (bot.queue.unclaimed); a carrier given
``on_unclaimed`` (the web process's) watches that record once ``watch`` is called, and reports
a diagnosis no worker has taken ``worker_wait_s`` after it was queued (no worker running, all
of them busy or gone), wherever it was queued from, so that it is said where people look
(bot.slack.waiting: the `/502` root; the alert's root). A web process restarted meanwhile, or
another replica, finds it all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from badgateway.bot.config import BotConfig
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.job_kinds import diagnosis_job
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, DiagnosisQueue
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import QueueTuning, connect_redis
from badgateway.bot.queue.unclaimed import Unclaimed, UnclaimedWatch, record_queued
from badgateway.checks.settings import Settings

log = logging.getLogger(__name__)

WEB_MAX_CONNECTIONS = 20  # the web process only enqueues; a few connections serve many users

__all__ = ["QueueCarrier", "Unclaimed"]


class QueueCarrier:
    """Implements ``bot.pipeline.Carrier``: ``submit`` enqueues one diagnosis job (keyed by the
    request id, so a request submitted twice while queued or running runs once); workers fan
    it out into step jobs and feed their own sink. Connects on first use and reconnects by
    itself after a Redis restart (each command retries with backoff)."""

    def __init__(
        self,
        config: BotConfig,
        settings: Settings,
        tuning: QueueTuning | None = None,
        *,
        on_unclaimed: Unclaimed | None = None,
    ) -> None:
        if not config.redis_url:
            raise ValueError("QueueCarrier needs config.redis_url")
        self.config = config
        self.settings = settings
        self.tuning = tuning or config.tuning
        self.on_unclaimed = on_unclaimed
        self._queue: DiagnosisQueue | None = None
        self._store: DiagnosisStore | None = None
        self._watch: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()  # the watch and a first submit may connect together

    async def _connect(self) -> tuple[DiagnosisQueue, DiagnosisStore]:
        async with self._connecting:
            return await self._connect_once()

    async def _connect_once(self) -> tuple[DiagnosisQueue, DiagnosisStore]:
        if self._queue is None or self._store is None:
            redis = connect_redis(str(self.config.redis_url), WEB_MAX_CONNECTIONS, self.tuning)
            self._queue = DiagnosisQueue(redis, DEFAULT_QUEUE, self.tuning)
            await self._queue.connect()
            self._store = DiagnosisStore(redis, self.tuning.keep_s)
            await self._store.note_queues(DEFAULT_QUEUE)
        return self._queue, self._store

    async def submit(self, request: DiagnosisRequest) -> None:
        queue, _ = await self._connect()
        job = diagnosis_job(request, self.settings, self.tuning)
        queued = await queue.enqueue(job)
        if queued is not None:
            await record_queued(queue.redis, request, time.time())

    def watch(self) -> None:
        """Start reporting diagnoses no worker takes to ``on_unclaimed`` (needs a running
        loop; once per process is enough, more is harmless)."""
        if self.on_unclaimed is not None and self._watch is None:
            self._watch = asyncio.create_task(self._watch_unclaimed(self.on_unclaimed))

    async def _watch_unclaimed(self, on_unclaimed: Unclaimed) -> None:
        queue, _ = await self._connect()
        await UnclaimedWatch(queue.redis, queue, self.config.worker_wait_s, on_unclaimed).run()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        if self._queue is not None:
            await self._queue.redis.aclose()
            await self._queue.redis.connection_pool.disconnect()
            self._queue = None
            self._store = None
