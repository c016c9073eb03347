"""bot.queue.health against a real redis-server and real workers: where Redis is (never its
password), whether it answers, and whether a worker heartbeats, each answered at once."""

from __future__ import annotations

import asyncio
import time

from badgateway.bot.queue.health import NO_WORKER, QueueHealth, redis_where
from tests.lab.fixtures_redis import LAB_TUNING, QueueLab
from tests.lab.process import free_port


def test_where_redis_is_never_shows_its_password() -> None:
    assert redis_where("redis://:s3cret@cache.internal:6380/2") == "cache.internal:6380"
    assert redis_where("rediss://user:s3cret@cache.internal/0") == "cache.internal:6379"
    assert redis_where("unix:///run/redis/redis.sock") == "/run/redis/redis.sock"


async def test_unreachable_redis_is_one_line_at_once() -> None:
    health = QueueHealth(f"redis://127.0.0.1:{free_port()}/0", LAB_TUNING)
    try:
        started = time.monotonic()
        problem = await health.unreachable()
        assert problem is not None and problem.startswith("cannot reach Redis at 127.0.0.1:")
        assert "\n" not in problem and await health.not_ready() == problem
        assert time.monotonic() - started < 2  # not the queue clients' ~10 s of retries
    finally:
        await health.close()


async def test_ready_once_a_worker_heartbeats_and_not_after_it_stops(queue_lab: QueueLab) -> None:
    health = QueueHealth(queue_lab.redis_server.url, LAB_TUNING)
    try:
        assert await health.unreachable() is None
        assert await health.not_ready() == NO_WORKER
        worker = await asyncio.to_thread(queue_lab.start_worker, "beating")
        assert await health.workers() == 1 and await health.not_ready() is None
        worker.kill()  # no goodbye: its last report expires (worker_info_s + 1 s in the lab)
        deadline = time.monotonic() + LAB_TUNING.worker_info_s + 5
        while await health.not_ready() is None:
            assert time.monotonic() < deadline, "a dead worker still counts as ready"
            await asyncio.sleep(0.1)
        assert await health.not_ready() == NO_WORKER
    finally:
        await health.close()
