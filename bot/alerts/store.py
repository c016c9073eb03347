"""Incident state in Redis: what must survive a restart of the bot or a worker.

Everything about an incident lives here, not in a process: the incident itself (JSON, with
the alerts firing for it), the index "site → its current incident", each site's run of
consecutive probe results, mutes, the incidents waiting to be posted (the storm hold) and the
active storm. Several processes (the web process taking webhooks, workers probing) change the
same site, so each change to a site happens under that site's Redis lock. Keys, locks and
records follow bot.storage: ``bgw:alert:incident:{id}``, ``bgw:alert:current:{site}``,
``bgw:alert:lock:site:{site}``, ``bgw:alert:lock:storm``, ``bgw:alert:shown:…`` (where a
site's diagnosis was shown on demand)…
"""

from __future__ import annotations

import contextlib
import inspect
import json
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis

from badgateway.bot import storage

INCIDENT_TTL_S = 30 * 24 * 3600  # closed incidents stay readable for a month

OPEN = "open"
RECOVERED = "recovered"  # probes pass again; reopens (flapping) within the flap window
RESOLVED = "resolved"  # closed by a person or by a resolved alert


@dataclass
class Incident:
    """One site's trouble, from the first alert to its end; shown as one Slack thread."""

    id: str
    site: str
    url: str
    channel: str | None
    root_ts: str | None = None  # the alert's root message (or the storm's, for members)
    own_root: bool = True  # False: the thread belongs to a grouped (storm) alert
    storm_id: str | None = None
    state: str = OPEN
    since: float = field(default_factory=time.time)  # first failure seen
    last_good_at: float | None = None  # the last probe that passed before it, when known
    opened_at: float = field(default_factory=time.time)
    what_failed: str = ""
    source: str = "monitor"  # monitor | alertmanager | webhook
    alerts: int = 1  # alerts and failing probes folded into this incident
    # The alerts firing now, by identity (source and Alertmanager fingerprint, else labels)
    # -> their text. Kept in the incident's record, so every change to it happens with the
    # state change it causes, under the site's lock, in one write; it resolves when empty.
    firing: dict[str, str] = field(default_factory=dict)
    flaps: int = 0  # times it failed again after recovering
    diagnosis: str = "pending"  # pending | diagnosing | diagnosed | not diagnosed
    cause: str | None = None
    cause_summary: str | None = None
    taken_by: str | None = None
    recovered_at: float | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    facts: dict[str, list[str]] = field(default_factory=dict)  # for grouping storms
    context: dict[str, Any] | None = None  # a ProbeContext.to_dict() to diagnose with
    diagnosis_id: str | None = None  # the latest DiagnosisRequest.id run for it
    diagnosis_requested_at: float | None = None  # that request's created_at
    waiting_since: float | None = None  # that diagnosis is queued and no worker has taken it
    # A site probed from places: each place's state at the latest probe (bot.alerts.places:
    # down, fine, no answer); {}: probed from one place, or opened by an alert.
    places: dict[str, str] = field(default_factory=dict)
    places_noted_at: float | None = None  # the last "fine again from …" note (one per window)

    @classmethod
    def new(cls, site: str, url: str, channel: str | None, **kw: Any) -> Incident:
        return cls(id=uuid.uuid4().hex[:12], site=site, url=url, channel=channel, **kw)


@dataclass
class Storm:
    """A grouped alert: many sites failing within a short window share one thread."""

    id: str
    channel: str
    root_ts: str
    opened_at: float
    sites: list[str] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # what the sites have in common


@dataclass(frozen=True)
class Mute:
    site: str
    until: float
    by: str | None


@dataclass(frozen=True)
class Streak:
    """A site's current run of probe results: how many failures (or passes) in a row."""

    failures: int
    successes: int
    first_failure_at: float | None
    last_ok_at: float | None = None  # the latest probe that passed


T = TypeVar("T")


def _key(*parts: str) -> str:
    return storage.key("alert", *parts)


async def _done(result: Awaitable[T] | T) -> T:
    """redis-py types a command as "awaitable or value" (one signature for both clients);
    the asyncio client always returns an awaitable."""
    if inspect.isawaitable(result):
        return await result
    return result


# Takes every pending incident at once, but only when the oldest has waited its hold: all
# the sites that failed during one hold window are posted together (or as one storm).
_TAKE_PENDING = """
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #oldest == 0 or tonumber(oldest[2]) > tonumber(ARGV[1]) then return {} end
local all = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return all
"""


# A storm forming (enough incidents pending, or one posted still taking sites): the pending
# incidents no process has started diagnosing yet, each claimed once (bot.alerts.posting's
# early runs). One round trip whatever the count; claims older than ARGV[3] s are pruned.
_CLAIM_EARLY = """
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  return {}
end
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
local fresh = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('ZADD', KEYS[2], 'NX', now, id) == 1 then table.insert(fresh, id) end
end
return fresh
"""
EARLY_CLAIM_KEPT_S = 3600  # an incident pends for seconds; its claim need not outlive an hour


class IncidentStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._take_pending = redis.register_script(_TAKE_PENDING)
        self._claim_early = redis.register_script(_CLAIM_EARLY)

    async def close(self) -> None:
        await self.redis.aclose()

    def site_lock(self, site: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialise changes to one site across processes (webhooks vs. probes)."""
        return storage.redis_lock(self.redis, _key("lock", "site", site), wait_s=60)

    # -- incidents -------------------------------------------------------------------
    async def save(self, incident: Incident) -> None:
        await self.redis.set(
            _key("incident", incident.id), storage.dump(incident), ex=INCIDENT_TTL_S
        )
        if incident.root_ts and incident.channel and incident.own_root:
            await self.redis.set(
                _key("thread", incident.channel, incident.root_ts),
                incident.id,
                ex=INCIDENT_TTL_S,
            )

    async def get(self, incident_id: str) -> Incident | None:
        text = await self.redis.get(_key("incident", incident_id))
        return storage.load(Incident, text) if text else None

    async def get_many(self, incident_ids: list[str]) -> list[Incident]:
        """The incidents that still exist, in order, in one round trip (a storm's 200)."""
        if not incident_ids:
            return []
        texts = await self.redis.mget([_key("incident", i) for i in incident_ids])
        return [storage.load(Incident, text) for text in texts if text]

    async def current(self, site: str) -> Incident | None:
        """The site's open (or recently recovered) incident, if any."""
        incident_id = await self.redis.get(_key("current", site))
        return await self.get(incident_id) if incident_id else None

    async def set_current(self, incident: Incident, ttl_s: float | None = None) -> None:
        key = _key("current", incident.site)
        if ttl_s is None:
            await self.redis.set(key, incident.id)
        else:
            await self.redis.set(key, incident.id, px=max(1, int(ttl_s * 1000)))
        await _done(self.redis.sadd(_key("active"), incident.id))

    async def clear_current(self, incident: Incident) -> None:
        key = _key("current", incident.site)
        if await self.redis.get(key) == incident.id:
            await self.redis.delete(key)
        await _done(self.redis.srem(_key("active"), incident.id))

    async def active(self) -> list[Incident]:
        """Incidents still tied to their site (open or recovered within the flap window)."""
        found: list[Incident] = []
        for incident_id in sorted(await _done(self.redis.smembers(_key("active")))):
            incident = await self.get(incident_id)
            if (
                incident is None
                or await self.redis.get(_key("current", incident.site)) != incident.id
            ):
                await _done(self.redis.srem(_key("active"), incident_id))  # flap window over
                continue
            found.append(incident)
        return sorted(found, key=lambda i: i.opened_at)

    async def by_thread(self, channel: str, ts: str) -> Incident | None:
        incident_id = await self.redis.get(_key("thread", channel, ts))
        return await self.get(incident_id) if incident_id else None

    # -- probe streaks -----------------------------------------------------------------
    async def record_probe(self, site: str, ok: bool, now: float) -> Streak:
        key = _key("streak", site)
        if ok:
            reset = {"failures": "0", "first_failure_at": "", "last_ok_at": str(now)}
            await _done(self.redis.hset(key, mapping=reset))
            await _done(self.redis.hincrby(key, "successes", 1))
        else:
            await _done(self.redis.hset(key, "successes", "0"))
            if await _done(self.redis.hincrby(key, "failures", 1)) == 1:
                await _done(self.redis.hset(key, "first_failure_at", str(now)))
        raw = await _done(self.redis.hgetall(key))
        await self.redis.expire(key, 7 * 24 * 3600)
        first, last_ok = raw.get("first_failure_at") or "", raw.get("last_ok_at") or ""
        return Streak(
            failures=int(raw.get("failures", 0)),
            successes=int(raw.get("successes", 0)),
            first_failure_at=float(first) if first else None,
            last_ok_at=float(last_ok) if last_ok else None,
        )

    # -- mutes -----------------------------------------------------------------------------
    async def mute(self, site: str, seconds: float, by: str | None, now: float) -> Mute:
        mute = Mute(site, now + seconds, by)
        await self.redis.set(_key("mute", site), storage.dump(mute), px=max(1, int(seconds * 1000)))
        return mute

    async def unmute(self, site: str) -> bool:
        return bool(await self.redis.delete(_key("mute", site)))

    async def muted(self, site: str) -> Mute | None:
        text = await self.redis.get(_key("mute", site))
        if not text:
            return None
        return storage.load(Mute, text)

    async def mutes(self) -> list[Mute]:
        found: list[Mute] = []
        async for key in self.redis.scan_iter(match=_key("mute", "*")):
            mute = await self.muted(key.removeprefix(_key("mute", "")))
            if mute:
                found.append(mute)
        return sorted(found, key=lambda m: m.site)

    # -- the storm hold ----------------------------------------------------------------
    async def add_pending(self, incident_id: str, now: float) -> None:
        await self.redis.zadd(_key("pending"), {incident_id: now}, nx=True)

    async def take_pending(self, older_than: float) -> list[str]:
        taken = await self._take_pending(keys=[_key("pending")], args=[older_than])
        return [str(t) for t in taken]

    async def drop_pending(self, incident_id: str) -> None:
        await self.redis.zrem(_key("pending"), incident_id)

    async def pending_count(self) -> int:
        return int(await self.redis.zcard(_key("pending")))

    async def claim_early(self, threshold: int, now: float) -> list[str]:
        """The pending incidents to diagnose now, before their hold ends, because a storm is
        forming (``threshold`` pending) or under way; each is handed out once."""
        keys = [_key("pending"), _key("early"), _key("storm", "active")]
        claimed = await self._claim_early(keys=keys, args=[now, threshold, EARLY_CLAIM_KEPT_S])
        return [str(c) for c in claimed]

    async def active_storm(self) -> Storm | None:
        storm_id = await self.redis.get(_key("storm", "active"))
        if not storm_id:
            return None
        text = await self.redis.get(_key("storm", storm_id))
        return storage.load(Storm, text) if text else None

    async def save_storm(self, storm: Storm, window_s: float) -> None:
        await self.redis.set(_key("storm", storm.id), storage.dump(storm), ex=INCIDENT_TTL_S)
        await self.redis.set(_key("storm", "active"), storm.id, px=max(1, int(window_s * 1000)))

    async def index_storm_thread(self, storm: Storm) -> None:
        key = _key("storm-thread", storm.channel, storm.root_ts)
        await self.redis.set(key, storm.id, ex=INCIDENT_TTL_S)

    async def storm_by_thread(self, channel: str, ts: str) -> Storm | None:
        storm_id = await self.redis.get(_key("storm-thread", channel, ts))
        return await self.get_storm(storm_id) if storm_id else None

    async def get_storm(self, storm_id: str) -> Storm | None:
        text = await self.redis.get(_key("storm", storm_id))
        return storage.load(Storm, text) if text else None

    def storm_lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        return storage.redis_lock(self.redis, _key("lock", "storm"), wait_s=120)

    # A grouped alert's thread keeps one reply per cause group, updated as the group grows
    # (bot.alerts.posting). Kept apart from the storm's record: the refresher writes them
    # while a flush may be adding sites to the record.
    def storm_refresh_lock(self, storm_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while one process rewrites a storm's root and group replies."""
        return storage.redis_lock(self.redis, _key("lock", "storm-refresh", storm_id), wait_s=60)

    async def claim_storm_slot(self, storm_id: str, interval_s: float) -> float:
        """Take the storm's next update slot (one per ``interval_s``, across processes):
        0 when taken, else the seconds until it is free."""
        key = _key("storm-slot", storm_id)
        if await self.redis.set(key, "1", px=max(1, int(interval_s * 1000)), nx=True):
            return 0.0
        left_ms = int(await self.redis.pttl(key))
        return max(0.01, left_ms / 1000) if left_ms > 0 else 0.01

    async def storm_groups(self, storm_id: str) -> dict[str, tuple[str, str]]:
        """cause -> (the group reply's ts, the text it shows now)."""
        raw = await _done(self.redis.hgetall(_key("storm-groups", storm_id)))
        groups: dict[str, tuple[str, str]] = {}
        for cause, text in raw.items():
            ts, _, shown = str(text).partition(" ")
            groups[str(cause)] = (ts, shown)
        return groups

    async def save_storm_group(self, storm_id: str, cause: str, ts: str, shown: str) -> None:
        key = _key("storm-groups", storm_id)
        await _done(self.redis.hset(key, cause, f"{ts} {shown}"))
        await self.redis.expire(key, INCIDENT_TTL_S)

    # A storm member's diagnosis is kept here, not posted: `show SITE` posts it on demand.
    async def save_diagnosis(self, incident_id: str, doc: dict[str, Any]) -> None:
        key = _key("diagnosis", incident_id)
        await self.redis.set(key, json.dumps(doc), ex=INCIDENT_TTL_S)

    async def diagnosis(self, incident_id: str) -> dict[str, Any] | None:
        text = await self.redis.get(_key("diagnosis", incident_id))
        if not text:
            return None
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else None

    # Where `show SITE` (or the grouped root's menu) posted a site's diagnosis, so that it is
    # posted once however often it is asked for: "{channel} {ts}" per (thread, diagnosis).
    def shown_lock(self, thread: str, shown: str) -> contextlib.AbstractAsyncContextManager[None]:
        return storage.redis_lock(self.redis, _key("lock", "shown", thread, shown), wait_s=60)

    async def shown_at(self, thread: str, shown: str) -> tuple[str, str] | None:
        """(channel, ts) of the message that shows ``shown`` for ``thread``, if posted."""
        text = await self.redis.get(_key("shown", thread, shown))
        channel, _, ts = str(text or "").partition(" ")
        return (channel, ts) if channel and ts else None

    async def save_shown(self, thread: str, shown: str, channel: str, ts: str) -> None:
        await self.redis.set(_key("shown", thread, shown), f"{channel} {ts}", ex=INCIDENT_TTL_S)
