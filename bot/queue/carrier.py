"""QueueCarrier: how the web process hands a diagnosis to the workers through Redis.

A diagnosis that no worker has taken ``worker_wait_s`` after it was queued (no worker
running, all of them busy or gone) is reported to ``on_unclaimed``, which says so where
people look (bot.slack.waiting: the `/502` root). It is watched from this process, so a web
process restarted meanwhile does not report it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from saq.job import Status

from bot.config import BotConfig
from bot.pipeline import DiagnosisRequest
from bot.queue.health import REDIS_DOWN
from bot.queue.job_kinds import diagnosis_job
from bot.queue.saq_queue import DEFAULT_QUEUE, DiagnosisQueue
from bot.queue.store import DiagnosisStore
from bot.queue.tuning import QueueTuning, connect_redis
from checks.settings import Settings

log = logging.getLogger(__name__)

WEB_MAX_CONNECTIONS = 20  # the web process only enqueues; a few connections serve many users

# Called with the request and when it was queued (epoch seconds).
Unclaimed = Callable[[DiagnosisRequest, float], Awaitable[None]]


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
        self._watches: set[asyncio.Task[None]] = set()

    async def _connect(self) -> tuple[DiagnosisQueue, DiagnosisStore]:
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
        if queued is not None and self.on_unclaimed is not None:
            watch = asyncio.create_task(self._watch(job.key, request, time.time()))
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)

    async def unclaimed(self, key: str) -> bool:
        """True while the diagnosis job ``key`` waits in the queue and no worker has tried it."""
        queue, _ = await self._connect()
        job = await queue.job(key)
        return job is not None and job.status is Status.QUEUED and job.attempts == 0

    async def _watch(self, key: str, request: DiagnosisRequest, queued_at: float) -> None:
        await asyncio.sleep(self.config.worker_wait_s)
        if self.on_unclaimed is None:
            return
        try:
            if await self.unclaimed(key):
                log.warning(
                    "diagnosis %s: no worker has taken it in %g s",
                    request.id,
                    self.config.worker_wait_s,
                )
                await self.on_unclaimed(request, queued_at)
        except REDIS_DOWN as exc:  # the job waits in Redis all the same; nothing to undo
            log.warning("diagnosis %s: cannot tell whether a worker took it: %s", request.id, exc)
        except Exception:  # saying so is best effort; the diagnosis goes on regardless
            log.exception("diagnosis %s: could not say it waits for a worker", request.id)

    async def close(self) -> None:
        for watch in list(self._watches):
            watch.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        if self._queue is not None:
            await self._queue.redis.aclose()
            await self._queue.redis.connection_pool.disconnect()
            self._queue = None
            self._store = None
