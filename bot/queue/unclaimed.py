"""Queued diagnoses that no worker has taken yet, kept in Redis so that any web process notices.

Every diagnosis the carrier queues (from the web process, or an alert's from a monitoring
worker) is recorded here with when it was queued. Each web process scans the record: an entry
older than ``wait_s`` whose job is still untouched in the queue is offered to ``on_unclaimed``
(bot.slack.waiting for `/502` roots, the alerting side for alert roots), which claims each root
it edits, so two web processes, or one restarted in between, mark a root once. An entry whose
job a worker has taken (or which is gone from the queue) is dropped; the line on the roots goes
with the first result, as any redraw does.

Keys (bot.storage's scheme): ``bgw:unclaimed`` (sorted set: request id by when it was queued)
and ``bgw:unclaimed:requests`` (hash: request id -> the request as JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from redis.asyncio import Redis
from saq.job import Status

from badgateway.bot import storage
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.health import REDIS_DOWN
from badgateway.bot.queue.saq_queue import DiagnosisQueue

log = logging.getLogger(__name__)


def queued_key() -> str:  # built when used: the prefix is set when a process starts
    return storage.key("unclaimed")


def requests_key() -> str:
    return storage.key("unclaimed", "requests")


SCAN_EVERY_MAX_S = 2.0  # a root says it waits at most this long after ``wait_s``

# Called with the request and when it was queued (epoch seconds).
Unclaimed = Callable[[DiagnosisRequest, float], Awaitable[None]]


async def record_queued(redis: Redis, request: DiagnosisRequest, queued_at: float) -> None:
    """Note a diagnosis just queued, for whichever web process scans (``UnclaimedWatch``)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(queued_key(), {request.id: queued_at})
        pipe.hset(requests_key(), request.id, json.dumps(request.to_dict()))
        await pipe.execute()


class UnclaimedWatch:
    """Scans ``bgw:unclaimed`` every ``scan_s`` and reports what waits too long (see above)."""

    def __init__(
        self, redis: Redis, queue: DiagnosisQueue, wait_s: float, on_unclaimed: Unclaimed
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.wait_s = wait_s
        self.on_unclaimed = on_unclaimed
        self.scan_s = min(max(wait_s / 4, 0.1), SCAN_EVERY_MAX_S)
        self._unreachable = False  # said once per outage, not once per scan
        self._logged: set[str] = set()  # requests this process has logged as waiting

    async def run(self) -> None:
        """Scan until cancelled."""
        while True:
            try:
                await self.scan()
                self._unreachable = False
            except REDIS_DOWN as exc:  # the entries wait in Redis; the next scan finds them
                if not self._unreachable:
                    log.warning("cannot look for diagnoses no worker took: %s", exc)
                self._unreachable = True
            except Exception:  # saying so is best effort; the diagnoses go on regardless
                log.exception("looking for diagnoses no worker took failed")
            await asyncio.sleep(self.scan_s)

    async def scan(self) -> int:
        """One pass; returns how many diagnoses were reported as waiting."""
        due = await self.redis.zrangebyscore(
            queued_key(), "-inf", time.time() - self.wait_s, withscores=True
        )
        reported = 0
        for raw_id, queued_at in due:
            request_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            job = await self.queue.job(request_id)
            if job is None or job.status is not Status.QUEUED or job.attempts > 0:
                await self.forget(request_id)  # a worker took it (or it is gone)
                continue
            text = await cast(
                "Awaitable[bytes | str | None]", self.redis.hget(requests_key(), request_id)
            )
            if text is None:
                await self.forget(request_id)
                continue
            request = DiagnosisRequest.from_dict(json.loads(text))
            if request_id not in self._logged:
                self._logged.add(request_id)
                log.warning("diagnosis %s: no worker has taken it in %g s", request_id, self.wait_s)
            # Kept in the record while it waits: a thread sharing the run later, or a web
            # process started later, still gets the line (each root is claimed once).
            await self.on_unclaimed(request, float(queued_at))
            reported += 1
        return reported

    async def forget(self, request_id: str) -> None:
        self._logged.discard(request_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queued_key(), request_id)
            pipe.hdel(requests_key(), request_id)
            await pipe.execute()
