"""How the bot keeps records in Redis: one key scheme, one lock, one way to write a record.

Every key is the install's prefix (``BADGATEWAY_REDIS_PREFIX``, default ``bgw``), ``:`` and its
parts joined by ``:`` (``key("diag", id, "results")`` is ``bgw:diag:ID:results``), so the
diagnosis threads (bot.state), the job queue (bot.queue.store, and SAQ's own keys through
bot.queue.saq_queue) and the alerts (bot.alerts.store) share one namespace: one ``SCAN bgw:*``
finds all of it, and two installs with different prefixes can share one Redis. A process sets
its prefix once, when it is assembled (``use_prefix``), before it builds any key.

``redis_lock`` serialises changes across processes: a short lease that its holder renews while
it works, so a holder that dies frees the lock within ``LOCK_LEASE_S`` while a live one slowed
down by Slack's rate limits keeps it as long as it needs. ``claim`` is the one-shot kind: a
key set only if absent, with an expiry (an event seen once, one finisher per lease).

Records are dataclasses written as JSON of their fields (``dump``/``load``); a field that a
newer version wrote and this one does not know is dropped when read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, fields
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

DEFAULT_PREFIX = "bgw"
LOCK_LEASE_S = 10.0
_prefix = DEFAULT_PREFIX + ":"  # this process's; see use_prefix

Record = TypeVar("Record")


def use_prefix(name: str) -> None:
    """Put every key this process builds from now on under ``name:`` (bot.config checks it)."""
    global _prefix
    _prefix = name + ":"


def prefix() -> str:
    """This process's key prefix with its ``:``, e.g. ``bgw:`` (``SCAN prefix()*``)."""
    return _prefix


def key(*parts: str) -> str:
    """``bgw:a:b:c`` from ``key("a", "b", "c")``: the one place keys are built."""
    return _prefix + ":".join(parts)


async def claim(redis: Redis, name: str, ttl_s: float) -> bool:
    """Set ``name`` only if absent (SET NX PX); True when this caller set it."""
    return bool(await redis.set(name, "1", nx=True, px=max(1, int(ttl_s * 1000))))


@contextlib.asynccontextmanager
async def redis_lock(redis: Redis, name: str, *, wait_s: float) -> AsyncIterator[None]:
    """Hold the lock ``name`` (waiting up to ``wait_s`` for it) as a lease renewed while held."""
    # Read at call time: tests shorten the lease.
    lock = redis.lock(name, timeout=LOCK_LEASE_S, blocking_timeout=wait_s)
    async with lock:
        keeper = asyncio.create_task(_renew(lock, LOCK_LEASE_S))
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def _renew(lock: Lock, lease_s: float) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        await lock.reacquire()  # the lease runs lease_s from now again


def as_record(value: Any) -> dict[str, Any]:
    """A dataclass's fields as a JSON-ready dict."""
    return asdict(value)


def from_record(cls: type[Record], raw: dict[str, Any]) -> Record:
    """The dataclass ``cls`` from its fields, ignoring fields it does not have."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in raw.items() if k in known})


def dump(value: Any) -> str:
    return json.dumps(as_record(value))


def load(cls: type[Record], text: str | bytes) -> Record:
    return from_record(cls, json.loads(text))
