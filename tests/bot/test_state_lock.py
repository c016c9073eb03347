"""The per-thread lock in Redis: a dead holder frees it within a lease; a live one keeps it."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

import badgateway.bot.storage
from badgateway.bot.state import RedisStore
from tests.lab.fixtures_redis import RedisServer

HOLD_AND_WAIT = """
import asyncio, sys
import badgateway.bot.state, badgateway.bot.storage
badgateway.bot.storage.LOCK_LEASE_S = 1.0
async def main():
    store = badgateway.bot.state.RedisStore(sys.argv[1])
    async with store.lock("bgw:lock:test"):
        print("held", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


def _kill_a_holder(url: str) -> float:
    """Start a process that takes the lock, SIGKILL it while it holds it; when it died."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)
        return time.monotonic()
    finally:
        holder.kill()
        holder.wait()


async def test_a_killed_holder_frees_the_lock_within_its_lease(redis_server: RedisServer) -> None:
    killed = await asyncio.to_thread(_kill_a_holder, redis_server.url)
    store = RedisStore(redis_server.url)
    try:
        async with store.lock("bgw:lock:test", timeout_s=10):
            waited = time.monotonic() - killed
    finally:
        await store.close()
    assert waited < 2.5  # the 1 s lease, not the 10 s wait


async def test_a_live_holder_keeps_the_lock_past_its_lease(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(badgateway.bot.storage, "LOCK_LEASE_S", 0.6)
    store = RedisStore(redis_server.url)
    order: list[str] = []

    async def slow_holder() -> None:
        async with store.lock("bgw:lock:live"):
            order.append("first in")
            await asyncio.sleep(2.0)  # three leases long: renewed, never lost
            order.append("first out")

    try:
        first = asyncio.create_task(slow_holder())
        await asyncio.sleep(0.2)
        async with store.lock("bgw:lock:live", timeout_s=10):
            order.append("second in")
        await first
    finally:
        await store.close()
    assert order == ["first in", "first out", "second in"]
