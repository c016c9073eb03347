"""What a diagnosis leaves in Redis while its step jobs run, and the rules that make a job
safe to run twice (SAQ delivers at least once).

Per diagnosis id:
  bgw:diag:{id}:results     hash step -> StepResult JSON (first stored result wins)
  bgw:diag:{id}:parts:{step} hash place -> part JSON, for a step read on several machines
                            (first stored part wins; a place that gave none has "missing")
  bgw:diag:{id}:delivered   set of steps the sink has been given
  bgw:diag:{id}:concluding  a lease: one finisher at a time computes the verdict
  bgw:diag:{id}:concluded   set once the sink has the verdict (which waits until every
                            step is delivered, so the verdict is the last reply)
Plus ``bgw:queues`` (every queue name seen, for `status`), ``bgw:stats:jobs`` (recent job
timings) and ``bgw:stats:dead_letters``. Keys are built by bot.storage.key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any, cast

from redis.asyncio import Redis

from badgateway.bot import storage
from badgateway.checks.model import StepResult

JOB_STATS_KEPT = 1000


def _key(diagnosis_id: str, part: str) -> str:
    return storage.key("diag", diagnosis_id, part)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class DiagnosisStore:
    def __init__(self, redis: Redis, keep_s: int) -> None:
        self.redis = redis
        self.keep_s = keep_s

    async def progress(self, diagnosis_id: str, step: str) -> tuple[bool, StepResult | None]:
        """Whether the step was delivered already, and its stored result (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(_key(diagnosis_id, "delivered"), step)
            pipe.hget(_key(diagnosis_id, "results"), step)
            delivered, raw = await pipe.execute()
        return bool(delivered), StepResult.from_dict(json.loads(raw)) if raw else None

    async def result(self, diagnosis_id: str, step: str) -> StepResult | None:
        raw = await cast(
            "Awaitable[bytes | None]", self.redis.hget(_key(diagnosis_id, "results"), step)
        )
        return StepResult.from_dict(json.loads(raw)) if raw is not None else None

    async def keep_first(self, diagnosis_id: str, result: StepResult) -> StepResult:
        """Store ``result`` unless one is stored already; return the one that is stored.

        Two runs of the same step job (a sweep re-ran a live job) then show the same result.
        """
        key = _key(diagnosis_id, "results")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, result.name, json.dumps(result.to_dict()))
            pipe.expire(key, self.keep_s)
            pipe.hget(key, result.name)
            *_, raw = await pipe.execute()
        return StepResult.from_dict(json.loads(raw)) if raw else result

    async def replace(self, diagnosis_id: str, result: StepResult) -> None:
        """Overwrite a step's result: a dead letter replaces a result that could not be shown."""
        key = _key(diagnosis_id, "results")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, result.name, json.dumps(result.to_dict()))
            pipe.expire(key, self.keep_s)
            await pipe.execute()

    async def keep_parts(
        self, diagnosis_id: str, step: str, parts: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Store a step's parts, each unless its place has one already; return every part
        stored so far (one transaction, so the job that brings the last part knows it)."""
        key = _key(diagnosis_id, f"parts:{step}")
        async with self.redis.pipeline(transaction=True) as pipe:
            for place, part in parts.items():
                pipe.hsetnx(key, place, json.dumps(part))
            pipe.expire(key, self.keep_s)
            pipe.hgetall(key)
            *_, raw = await pipe.execute()
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def parts(self, diagnosis_id: str, step: str) -> dict[str, dict[str, Any]]:
        raw = await cast(
            "Awaitable[dict[bytes, bytes]]", self.redis.hgetall(_key(diagnosis_id, f"parts:{step}"))
        )
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def results(self, diagnosis_id: str) -> dict[str, StepResult]:
        raw = await cast(
            "Awaitable[dict[bytes, bytes]]", self.redis.hgetall(_key(diagnosis_id, "results"))
        )
        return {_text(k): StepResult.from_dict(json.loads(v)) for k, v in raw.items()}

    async def mark_delivered(self, diagnosis_id: str, step: str) -> tuple[bool, set[str]]:
        """Record the delivery; return whether the diagnosis is concluded and all delivered
        steps (one round trip, so that the last step job knows it is the last)."""
        key = _key(diagnosis_id, "delivered")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, step)
            pipe.expire(key, self.keep_s)
            pipe.exists(_key(diagnosis_id, "concluded"))
            pipe.smembers(key)
            _, _, concluded, members = await pipe.execute()
        return bool(concluded), {_text(m) for m in members}

    async def conclusion_state(self, diagnosis_id: str) -> tuple[bool, set[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(_key(diagnosis_id, "concluded"))
            pipe.smembers(_key(diagnosis_id, "delivered"))
            concluded, members = await pipe.execute()
        return bool(concluded), {_text(m) for m in members}

    async def concluded(self, diagnosis_id: str) -> bool:
        return bool(await self.redis.exists(_key(diagnosis_id, "concluded")))

    async def claim_conclusion(self, diagnosis_id: str, lease_s: float) -> bool:
        """At most one finisher per lease; if it dies, the lease runs out and a retry takes over."""
        return await storage.claim(self.redis, _key(diagnosis_id, "concluding"), lease_s)

    async def mark_concluded(self, diagnosis_id: str) -> None:
        await self.redis.set(_key(diagnosis_id, "concluded"), "1", ex=self.keep_s)

    async def release_conclusion(self, diagnosis_id: str) -> None:
        await self.redis.delete(_key(diagnosis_id, "concluding"))

    async def note_queues(self, *names: str) -> None:
        await cast("Awaitable[int]", self.redis.sadd(storage.key("queues"), *names))

    async def queue_names(self) -> list[str]:
        members = await cast("Awaitable[set[bytes]]", self.redis.smembers(storage.key("queues")))
        return sorted(_text(n) for n in members)

    async def record_job(self, entry: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(storage.key("stats", "jobs"), json.dumps(entry))
            pipe.ltrim(storage.key("stats", "jobs"), 0, JOB_STATS_KEPT - 1)
            await pipe.execute()

    async def recent_jobs(self) -> list[dict[str, Any]]:
        entries = await cast(
            "Awaitable[list[bytes]]", self.redis.lrange(storage.key("stats", "jobs"), 0, -1)
        )
        return [json.loads(e) for e in entries]

    async def count_dead_letter(self) -> None:
        await self.redis.incr(storage.key("stats", "dead_letters"))

    async def dead_letters(self) -> int:
        return int(await self.redis.get(storage.key("stats", "dead_letters")) or 0)


def now_ms() -> int:
    return int(time.time() * 1000)
