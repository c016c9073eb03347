"""What the Slack side remembers between requests and across processes.

A `/502` thread is a ``DiagnosisThread``: its channel and root message, the target, who asked,
who took it and who resolved it, and which diagnosis is the current one. (An alert's thread
is a different record: bot.alerts.store.Incident.) Each diagnosis keeps
its step results and the ts of every message posted for it, so that a step delivered twice
(queues deliver at least once) updates its message instead of posting another. Events already
handled are remembered by ``event_id``, and a lock per thread keeps two workers from racing on
the same messages.

One diagnosis may be shown in many threads (single-flight: everyone who asks about a site while
it is being diagnosed, or shortly after, shares that run). A site's run is its ``Flight``; the
threads that show a diagnosis are its sharers, and what was posted is kept per thread.

Keys (bot.storage's scheme): ``bgw:thread:{channel}:{root_ts}``, ``bgw:threads:open``,
``bgw:slack:diag:{id}:{results,request,diagnosis,sharers}``,
``bgw:slack:diag:{id}:ts:{channel}:{root_ts}`` (what was posted in one thread),
``bgw:flight:{url}`` (a site's current run), ``bgw:asked:{channel}:{ts}`` (the note in an
alert's thread), ``bgw:event:{event_id}``, ``bgw:lock:thread:{channel}:{root_ts}`` and
``bgw:lock:flight:{url}`` (the queue's own ``bgw:diag:*`` keys are separate).

Two stores with one protocol: ``MemoryStore`` (one process: the shell, in-process serve) and
``RedisStore`` (web and workers on several machines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis

from badgateway.bot import storage
from badgateway.checks.model import StepResult

THREAD_TTL_S = 30 * 24 * 3600.0
DIAGNOSIS_TTL_S = 7 * 24 * 3600.0
ROOT_TTL_S = 24 * 3600.0  # what a root shows is kept this long after its last update
EVENT_TTL_S = 3600.0  # Slack retries an event for a few minutes at most
VERDICT_FIELD = "_verdict"  # the verdict's ts lives beside the steps' ts
# How long a running flight is trusted without news: a run whose carrier died does not keep
# every later request waiting on it for ever.
FLIGHT_RUNNING_TTL_S = 300.0
FLIGHT_DONE_TTL_S = 3600.0  # a finished flight is kept this long; the window decides its use


class StateStore(Protocol):
    """The few storage operations the bot needs; values are strings or JSON documents."""

    async def get_json(self, key: str) -> Any | None: ...

    async def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None: ...

    async def hash_get_all(self, key: str) -> dict[str, str]: ...

    async def hash_set(
        self, key: str, field: str, value: str, ttl_s: float | None = None
    ) -> None: ...

    async def hash_replace_then_read(
        self, key: str, field: str, value: str, ttl_s: float | None, read_key: str
    ) -> tuple[str | None, dict[str, str]]:
        """Set a hash field as ``hash_set`` does; return the value it replaced and the hash at
        ``read_key`` as it is after the set (one round trip)."""
        ...

    async def claim(self, key: str, ttl_s: float) -> bool:
        """Set ``key`` only if absent (SET NX EX); True when this caller set it."""
        ...

    async def set_add(self, key: str, member: str) -> None: ...

    async def set_remove(self, key: str, member: str) -> None: ...

    async def set_members(self, key: str) -> set[str]: ...

    def lock(
        self, key: str, timeout_s: float = 120.0
    ) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def close(self) -> None: ...


class MemoryStore:
    """A StateStore for one process."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[Any, float | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _alive(self, key: str) -> Any | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires < time.monotonic():
            del self._values[key]
            return None
        return value

    def _put(self, key: str, value: Any, ttl_s: float | None) -> None:
        self._values[key] = (value, time.monotonic() + ttl_s if ttl_s else None)

    async def get_json(self, key: str) -> Any | None:
        raw = self._alive(key)
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        self._put(key, json.dumps(value), ttl_s)  # stored as text, like Redis: no shared objects

    async def hash_get_all(self, key: str) -> dict[str, str]:
        return dict(self._alive(key) or {})

    async def hash_set(self, key: str, field: str, value: str, ttl_s: float | None = None) -> None:
        current = dict(self._alive(key) or {})
        current[field] = value
        self._put(key, current, ttl_s)

    async def hash_replace_then_read(
        self, key: str, field: str, value: str, ttl_s: float | None, read_key: str
    ) -> tuple[str | None, dict[str, str]]:
        previous = (self._alive(key) or {}).get(field)
        await self.hash_set(key, field, value, ttl_s)
        return previous, await self.hash_get_all(read_key)

    async def claim(self, key: str, ttl_s: float) -> bool:
        if self._alive(key) is not None:
            return False
        self._put(key, "1", ttl_s)
        return True

    async def set_add(self, key: str, member: str) -> None:
        self._put(key, set(self._alive(key) or set()) | {member}, None)

    async def set_remove(self, key: str, member: str) -> None:
        self._put(key, set(self._alive(key) or set()) - {member}, None)

    async def set_members(self, key: str) -> set[str]:
        return set(self._alive(key) or set())

    @contextlib.asynccontextmanager
    async def lock(self, key: str, timeout_s: float = 120.0) -> AsyncIterator[None]:
        async with self._locks.setdefault(key, asyncio.Lock()):
            yield

    async def close(self) -> None:
        return None


class RedisStore:
    """A StateStore in Redis (redis.asyncio), shared by the web process and the workers."""

    def __init__(self, url: str) -> None:
        self.redis = redis.from_url(url, decode_responses=True)

    async def get_json(self, key: str) -> Any | None:
        raw = await self.redis.get(key)
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        await self.redis.set(key, json.dumps(value), px=int(ttl_s * 1000) if ttl_s else None)

    async def hash_get_all(self, key: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(key))  # type: ignore[misc]

    async def hash_set(self, key: str, field: str, value: str, ttl_s: float | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, value)
            if ttl_s:
                pipe.pexpire(key, int(ttl_s * 1000))
            await pipe.execute()

    async def hash_replace_then_read(
        self, key: str, field: str, value: str, ttl_s: float | None, read_key: str
    ) -> tuple[str | None, dict[str, str]]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, field)
            pipe.hset(key, field, value)
            if ttl_s:
                pipe.pexpire(key, int(ttl_s * 1000))
            pipe.hgetall(read_key)
            previous, *_, read = await pipe.execute()
        return previous, dict(read)

    async def claim(self, key: str, ttl_s: float) -> bool:
        return await storage.claim(self.redis, key, ttl_s)

    async def set_add(self, key: str, member: str) -> None:
        await self.redis.sadd(key, member)  # type: ignore[misc]

    async def set_remove(self, key: str, member: str) -> None:
        await self.redis.srem(key, member)  # type: ignore[misc]

    async def set_members(self, key: str) -> set[str]:
        return set(await self.redis.smembers(key))  # type: ignore[misc]

    def lock(
        self, key: str, timeout_s: float = 120.0
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait up to ``timeout_s`` for the lock (bot.storage.redis_lock: a renewed lease)."""
        return storage.redis_lock(self.redis, key, wait_s=timeout_s)

    async def close(self) -> None:
        await self.redis.aclose()


def _posted_key(diagnosis_id: str, channel: str, root_ts: str) -> str:
    return storage.key("slack", "diag", diagnosis_id, "ts", channel, root_ts)


def _threads_of(sharers: dict[str, str]) -> list[tuple[str, str]]:
    """The threads (channel, root_ts) a diagnosis' sharers hash names."""
    return [(channel, root_ts) for channel, _, root_ts in (k.partition(":") for k in sharers)]


def open_store(redis_url: str | None) -> StateStore:
    return RedisStore(redis_url) if redis_url else MemoryStore()


@dataclass
class DiagnosisThread:
    """One `/502` thread."""

    channel: str
    root_ts: str
    target: str
    url: str
    requester: str
    created_at: float
    link: str = ""  # the permalink of the alert's thread, when the site has an open alert
    current: str = ""  # id of the diagnosis the root message shows
    cause: str | None = None  # the current diagnosis' verdict, once known
    runs: int = 1  # 1 + the number of re-runs in this thread
    taken_by: str | None = None
    taken_at: float | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None

    @property
    def key(self) -> str:
        return thread_key(self.channel, self.root_ts)

    def to_dict(self) -> dict[str, Any]:
        return storage.as_record(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiagnosisThread:
        return storage.from_record(cls, d)


def thread_key(channel: str, root_ts: str) -> str:
    return f"{channel}:{root_ts}"


@dataclass
class Flight:
    """A site's diagnosis that later requests share: which one, since when, done when."""

    diagnosis_id: str
    started_at: float
    finished_at: float | None = None

    def shareable(self, now: float, window_s: float) -> bool:
        """Running, or finished no longer than ``window_s`` ago."""
        return self.finished_at is None or now - self.finished_at <= window_s

    def to_dict(self) -> dict[str, Any]:
        return storage.as_record(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Flight:
        return storage.from_record(cls, d)


class BotState:
    """The bot's records on top of a StateStore."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    # `/502` threads -------------------------------------------------------------------------
    async def thread(self, channel: str, root_ts: str) -> DiagnosisThread | None:
        raw = await self.store.get_json(storage.key("thread", channel, root_ts))
        return DiagnosisThread.from_dict(raw) if raw else None

    async def save_thread(self, thread: DiagnosisThread) -> None:
        await self.store.set_json(
            storage.key("thread", thread.channel, thread.root_ts), thread.to_dict(), THREAD_TTL_S
        )
        if thread.resolved_at is None:
            await self.store.set_add(storage.key("threads", "open"), thread.key)
        else:
            await self.store.set_remove(storage.key("threads", "open"), thread.key)

    async def open_threads(self) -> list[DiagnosisThread]:
        found: list[DiagnosisThread] = []
        for key in await self.store.set_members(storage.key("threads", "open")):
            channel, _, root_ts = key.partition(":")
            thread = await self.thread(channel, root_ts)
            if thread is None:  # expired
                await self.store.set_remove(storage.key("threads", "open"), key)
            elif thread.resolved_at is None:
                found.append(thread)
        return sorted(found, key=lambda i: i.created_at)

    def thread_lock(
        self, channel: str, root_ts: str, wait_s: float = 120.0
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while a thread's messages are posted or updated, by whichever process."""
        return self.store.lock(storage.key("lock", "thread", channel, root_ts), wait_s)

    # Diagnoses -----------------------------------------------------------------------------
    async def results(self, diagnosis_id: str) -> dict[str, StepResult]:
        raw = await self.store.hash_get_all(storage.key("slack", "diag", diagnosis_id, "results"))
        return {name: StepResult.from_dict(json.loads(text)) for name, text in raw.items()}

    async def record_result(self, diagnosis_id: str, result: StepResult) -> None:
        await self.store.hash_set(
            storage.key("slack", "diag", diagnosis_id, "results"),
            result.name,
            json.dumps(result.to_dict()),
            DIAGNOSIS_TTL_S,
        )

    async def posted(self, diagnosis_id: str, channel: str, root_ts: str) -> dict[str, str]:
        """Message ts per step name (and VERDICT_FIELD for the verdict) in one thread."""
        return await self.store.hash_get_all(_posted_key(diagnosis_id, channel, root_ts))

    async def record_result_then_sharers(
        self, diagnosis_id: str, result: StepResult
    ) -> tuple[StepResult | None, list[tuple[str, str]]]:
        """``record_result``, then ``sharers`` read after it (a thread joining now is among
        them or reads the result itself), in one round trip; also the result it replaced."""
        previous, sharers = await self.store.hash_replace_then_read(
            storage.key("slack", "diag", diagnosis_id, "results"),
            result.name,
            json.dumps(result.to_dict()),
            DIAGNOSIS_TTL_S,
            storage.key("slack", "diag", diagnosis_id, "sharers"),
        )
        replaced = None if previous is None else StepResult.from_dict(json.loads(previous))
        return replaced, _threads_of(sharers)

    async def record_posted(
        self, diagnosis_id: str, channel: str, root_ts: str, part: str, ts: str
    ) -> None:
        await self.store.hash_set(
            _posted_key(diagnosis_id, channel, root_ts), part, ts, DIAGNOSIS_TTL_S
        )

    def root_turn(
        self, channel: str, root_ts: str, wait_s: float
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while a root message is updated, by whichever process (bot.slack.root_updates:
        the web process and each worker keep the same roots up to date)."""
        return self.store.lock(storage.key("lock", "root", channel, root_ts), wait_s)

    async def root_shows(self, channel: str, root_ts: str) -> str | None:
        """The digest of what the root shows, as the last process to update it left it."""
        found = await self.store.get_json(storage.key("slack", "root", channel, root_ts))
        return None if found is None else str(found)

    async def record_root_shows(self, channel: str, root_ts: str, digest: str) -> None:
        key = storage.key("slack", "root", channel, root_ts)
        await self.store.set_json(key, digest, ROOT_TTL_S)

    async def sharers(self, diagnosis_id: str) -> list[tuple[str, str]]:
        """The threads (channel, root_ts) that show this diagnosis, in no particular order."""
        raw = await self.store.hash_get_all(storage.key("slack", "diag", diagnosis_id, "sharers"))
        return _threads_of(raw)

    async def add_sharer(self, diagnosis_id: str, channel: str, root_ts: str) -> None:
        await self.store.hash_set(
            storage.key("slack", "diag", diagnosis_id, "sharers"),
            thread_key(channel, root_ts),
            "1",
            DIAGNOSIS_TTL_S,
        )

    # Flights (single-flight per site) -------------------------------------------------------
    def flight_lock(self, url: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while a request joins or starts the site's flight, by whichever process."""
        return self.store.lock(storage.key("lock", "flight", url), timeout_s=30.0)

    async def flight(self, url: str) -> Flight | None:
        raw = await self.store.get_json(storage.key("flight", url))
        return Flight.from_dict(raw) if isinstance(raw, dict) else None

    async def save_flight(self, url: str, flight: Flight) -> None:
        ttl = FLIGHT_RUNNING_TTL_S if flight.finished_at is None else FLIGHT_DONE_TTL_S
        await self.store.set_json(storage.key("flight", url), flight.to_dict(), ttl)

    async def land_flight(self, url: str, diagnosis_id: str) -> None:
        """The diagnosis is over: the window for sharing it starts now (if it is the site's)."""
        async with self.flight_lock(url):
            flight = await self.flight(url)
            if flight is not None and flight.diagnosis_id == diagnosis_id:
                flight.finished_at = flight.finished_at or time.time()
                await self.save_flight(url, flight)

    # The note in an alert's thread ----------------------------------------------------------
    def asked_lock(self, channel: str, ts: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self.store.lock(storage.key("lock", "asked", channel, ts), timeout_s=30.0)

    async def asked(self, channel: str, ts: str) -> dict[str, Any] | None:
        raw = await self.store.get_json(storage.key("asked", channel, ts))
        return raw if isinstance(raw, dict) else None

    async def record_asked(self, channel: str, ts: str, doc: dict[str, Any], ttl_s: float) -> None:
        await self.store.set_json(storage.key("asked", channel, ts), doc, ttl_s)

    async def diagnosis_doc(self, diagnosis_id: str) -> dict[str, Any] | None:
        raw = await self.store.get_json(storage.key("slack", "diag", diagnosis_id, "diagnosis"))
        return raw if isinstance(raw, dict) else None

    async def record_diagnosis(self, diagnosis_id: str, doc: dict[str, Any]) -> None:
        await self.store.set_json(
            storage.key("slack", "diag", diagnosis_id, "diagnosis"), doc, DIAGNOSIS_TTL_S
        )

    async def request_doc(self, diagnosis_id: str) -> dict[str, Any]:
        """The steps a diagnosis runs and the results it keeps from before (partial rerun)."""
        raw = await self.store.get_json(storage.key("slack", "diag", diagnosis_id, "request"))
        return raw if isinstance(raw, dict) else {}

    async def record_request(self, diagnosis_id: str, doc: dict[str, Any]) -> None:
        await self.store.set_json(
            storage.key("slack", "diag", diagnosis_id, "request"), doc, DIAGNOSIS_TTL_S
        )

    # Events --------------------------------------------------------------------------------
    async def first_time(self, event_id: str) -> bool:
        """True the first time an event id is seen; Slack's retries of it get False."""
        return await self.store.claim(storage.key("event", event_id), EVENT_TTL_S)
