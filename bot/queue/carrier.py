"""QueueCarrier: how the web process hands a diagnosis to the workers through Redis."""

from __future__ import annotations

from bot.config import BotConfig
from bot.pipeline import DiagnosisRequest
from bot.queue.job_kinds import diagnosis_job
from bot.queue.saq_queue import DEFAULT_QUEUE, DiagnosisQueue
from bot.queue.store import DiagnosisStore
from bot.queue.tuning import QueueTuning, connect_redis
from checks.settings import Settings

WEB_MAX_CONNECTIONS = 20  # the web process only enqueues; a few connections serve many users


class QueueCarrier:
    """Implements ``bot.pipeline.Carrier``: ``submit`` enqueues one diagnosis job (keyed by the
    request id, so a request submitted twice while queued or running runs once); workers fan
    it out into step jobs and feed their own sink. Connects on first use and reconnects by
    itself after a Redis restart (each command retries with backoff)."""

    def __init__(
        self, config: BotConfig, settings: Settings, tuning: QueueTuning | None = None
    ) -> None:
        if not config.redis_url:
            raise ValueError("QueueCarrier needs config.redis_url")
        self.config = config
        self.settings = settings
        self.tuning = tuning or QueueTuning.from_env()
        self._queue: DiagnosisQueue | None = None
        self._store: DiagnosisStore | None = None

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
        await queue.enqueue(diagnosis_job(request, self.settings, self.tuning))

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.redis.aclose()
            await self._queue.redis.connection_pool.disconnect()
            self._queue = None
            self._store = None
