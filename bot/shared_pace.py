"""Rate limits kept in Redis, so that every process of one install paces to the same budget.

Slack's posting limits are the workspace's, not a process's: the web process and each worker
pacing to the whole limit on their own post, together, several times faster than Slack allows
(bot.slack_client, issue 11). Here a limit is a schedule in Redis that every process reserves
its turns from, with one atomic Lua script per change: GCRA (the generic cell rate algorithm),
which keeps one number per limit — its "theoretical arrival time" (TAT): the Redis clock
(``TIME``, the same for every process) at which the limit is back to a full burst, minus its
burst. A call may go at ``TAT - tolerance``; taking a turn moves the TAT on by one interval.

``reserve`` hands out turns in order, also ones in the future (the caller sleeps until its
turn): the busy limit — the workspace's — is a queue, served in the order asked, with no
polling. A second limit, the ``gate`` (a channel's), is checked at the turn's time and charged
then, when the call will really be made, but never queued on: a channel that is not free by
the workspace's turn gets no turn (the caller waits for the channel and asks again), so that
one busy channel never holds up the workspace's queue for the others.

``refund`` gives a reserved turn back (its caller gave up waiting for it), ``hold`` keeps a
limit shut until a time (Slack's Retry-After). A hold moves the TAT on, so that no turn asked
for after it falls inside it; turns handed out before it (their callers asleep until them)
are not recalled — ``hold(..., marked=True)`` also leaves a marker (``<key>:held``: when the
hold ends, expiring then) that such a caller reads once it wakes (``held_until``), and asks
again if its turn's time (``Turn.at``) was before the hold's end. Keys are given by the
caller (bot.storage). This module knows nothing of Slack; bot.slack_client uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1]: the queued limit; KEYS[2] (optional): the gate. ARGV: interval and tolerance (s) of
# each. Returns {"turn", s, at}: the turn is in s seconds (at: then, on the Redis clock),
# reserved; or {"gate", s}: the gate is
# not free at the queue's turn, nothing reserved, ask again in s seconds. Numbers go out as
# strings: Redis would cut a Lua number to an integer.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function tat(key)
  local value = tonumber(redis.call('GET', key) or '0')
  if value < now then return now end
  return value
end
local function store(key, value)
  local ms = math.ceil((value - now) * 1000)
  if ms > 0 then redis.call('SET', key, string.format('%.6f', value), 'PX', ms) end
end
local queue_interval, queue_tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local queue_tat = tat(KEYS[1])
local at = math.max(now, queue_tat - queue_tolerance)
if KEYS[2] then
  local gate_interval, gate_tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
  local gate_tat = tat(KEYS[2])
  local gate_at = gate_tat - gate_tolerance
  if gate_at > at then
    return {'gate', string.format('%.6f', gate_at - now)}
  end
  store(KEYS[2], math.max(gate_tat, at) + gate_interval)
end
store(KEYS[1], math.max(queue_tat, at) + queue_interval)
return {'turn', string.format('%.6f', at - now), string.format('%.6f', at)}
"""

# KEYS: the limits a turn was reserved from; ARGV: their intervals. Each TAT goes back by one.
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  local value = tonumber(redis.call('GET', key) or '0') - tonumber(ARGV[i])
  local ms = math.ceil((value - now) * 1000)
  if ms > 0 then
    redis.call('SET', key, string.format('%.6f', value), 'PX', ms)
  else
    redis.call('DEL', key)
  end
end
return 1
"""

# KEYS[1]: a limit; KEYS[2] (optional): its hold's marker; ARGV: seconds it stays shut, its
# tolerance. No turn before then; the marker (if any) holds when the hold ends (Redis clock).
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local value = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'),
                       now + tonumber(ARGV[1]) + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.6f', value), 'PX', math.ceil((value - now) * 1000))
if KEYS[2] then
  local ends = now + tonumber(ARGV[1])
  if ends > tonumber(redis.call('GET', KEYS[2]) or '0') and ends > now then
    redis.call('SET', KEYS[2], string.format('%.6f', ends), 'PX', math.ceil((ends - now) * 1000))
  end
end
return 1
"""


@dataclass(frozen=True)
class Rate:
    """``per_minute`` calls, ``burst`` of them at once."""

    per_minute: float
    burst: int

    @property
    def interval_s(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance_s(self) -> float:
        """How far ahead of its steady pace a limit may run: the burst, less the one call."""
        return max(0, self.burst - 1) * self.interval_s


@dataclass(frozen=True)
class Limit:
    """One limit: its key in Redis and its rate."""

    key: str
    rate: Rate


@dataclass(frozen=True)
class Turn:
    """The answer to ``reserve``: reserved, in ``wait_s``; or not (the gate is busy), and
    worth asking again in ``wait_s``."""

    reserved: bool
    wait_s: float
    at: float = 0.0  # the turn's time on the Redis clock (reserved only)


class SharedLimits:
    """The scripts over one Redis connection (pool)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._refund = redis.register_script(_REFUND)
        self._hold = redis.register_script(_HOLD)

    async def reserve(self, queue: Limit, gate: Limit | None = None) -> Turn:
        """A turn from ``queue`` (in order, maybe in the future), if ``gate`` is free then."""
        keys = [queue.key] if gate is None else [queue.key, gate.key]
        args = [queue.rate.interval_s, queue.rate.tolerance_s]
        if gate is not None:
            args += [gate.rate.interval_s, gate.rate.tolerance_s]
        kind, wait_s, *at = await self._reserve(keys=keys, args=args)
        return Turn(
            reserved=_text(kind) == "turn",
            wait_s=max(0.0, float(_text(wait_s))),
            at=float(_text(at[0])) if at else 0.0,
        )

    async def refund(self, *limits: Limit) -> None:
        """Give back a turn reserved from ``limits`` and not used."""
        await self._refund(keys=[m.key for m in limits], args=[m.rate.interval_s for m in limits])

    async def hold(self, limit: Limit, for_s: float, *, marked: bool = False) -> None:
        """No turn from ``limit`` for ``for_s`` seconds (then its steady pace, no burst).
        ``marked``: also for the turns handed out already (see ``held_until``)."""
        keys = [limit.key, held_key(limit)] if marked else [limit.key]
        await self._hold(keys=keys, args=[max(0.0, for_s), limit.rate.tolerance_s])

    async def held_until(self, limit: Limit) -> float:
        """When a marked hold on ``limit`` ends, on the Redis clock (0: none now)."""
        ends = await self._redis.get(held_key(limit))
        return 0.0 if ends is None else float(_text(ends))


def held_key(limit: Limit) -> str:
    """The marker of a hold on ``limit`` (in the limit's own key space)."""
    return f"{limit.key}:held"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
