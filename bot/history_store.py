"""Where the snapshots of targets are kept (checks.baseline), and the keeper that compares a
finished diagnosis with them (checks.changes) and then keeps its snapshot.

Per target: the last healthy snapshot (kept however long ago it was: it is what a failure is
compared with) and the recent ones, oldest first, healthy or not, bounded by ``Retention``
(how many, how many days), which date a change more closely; and the markers people
recorded against it (checks.markers: "deployed shop v1.2.3 by CI"), bounded alike; and the
scheduled probes' thin results (checks.timeline.ProbePoint), at most ``PROBES_KEPT``, for
the timeline only; and the alert incidents that ended (checks.timeline.IncidentRecord),
bounded like the markers. Three stores of one shape: in Redis for the bot's processes (keys
``bgw:history:TARGET``, ``bgw:baseline:TARGET``, ``bgw:markers:TARGET``, ``bgw:probes:TARGET``,
``bgw:incidents:TARGET``), a
state file for `badgateway diagnose` from a shell, and memory (`serve` without Redis, tests).

A diagnosis delivered twice (queues deliver at least once) keeps one snapshot, and a
snapshot that cannot be read or kept costs the comparison, never the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis

from badgateway.bot.config import HistoryRetention
from badgateway.bot.storage import claim, key
from badgateway.checks.baseline import Snapshot, SnapshotError, snapshot_of, target_of
from badgateway.checks.changes import with_changes
from badgateway.checks.markers import Marker, with_markers
from badgateway.checks.model import Diagnosis
from badgateway.checks.settings import Settings, Site
from badgateway.checks.timeline import IncidentRecord, ProbePoint, Timeline, timeline

log = logging.getLogger(__name__)

STATE_FILE_VERSION = 1
_RUN_CLAIM_S = 3600.0  # a queue delivers a verdict again within minutes, not hours
# Comparing and keeping must not hold a verdict up: past this, it is shown uncompared.
HISTORY_BUDGET_S = 2.0
# Probe points kept per site: a day and a bit at one probe a minute, 100 bytes each.
PROBES_KEPT = 1500


@dataclass(frozen=True)
class History:
    """What is kept of one target."""

    last_good: Snapshot | None = None
    recent: list[Snapshot] = field(default_factory=list)  # oldest first
    markers: list[Marker] = field(default_factory=list)  # oldest first
    probes: list[ProbePoint] = field(default_factory=list)  # oldest first
    incidents: list[IncidentRecord] = field(default_factory=list)  # oldest first


class HistoryStore(Protocol):
    retention: HistoryRetention

    async def load(self, target: str) -> History: ...

    async def keep(self, snapshot: Snapshot) -> None: ...

    async def mark(self, marker: Marker) -> None: ...

    async def probed(self, point: ProbePoint) -> None: ...

    async def ended(self, record: IncidentRecord) -> None: ...


def kept(history: History, snapshot: Snapshot, retention: HistoryRetention) -> History:
    """``history`` with ``snapshot`` added (once: a run delivered again replaces itself, in
    its place), trimmed to ``retention``."""
    recent = [snapshot if _same_run(s, snapshot) else s for s in history.recent]
    if not any(_same_run(s, snapshot) for s in history.recent):
        recent.append(snapshot)
    recent = _within_days(recent, retention.days)
    last_good = history.last_good
    if snapshot.healthy:
        last_good = snapshot
    return dataclasses.replace(history, last_good=last_good, recent=recent[-retention.keep :])


def marked(history: History, marker: Marker, retention: HistoryRetention) -> History:
    """``history`` with ``marker`` added, its markers trimmed to ``retention``."""
    markers = _within_days([*history.markers, marker], retention.days)
    return dataclasses.replace(history, markers=markers[-retention.keep :])


def with_probe(history: History, point: ProbePoint, retention: HistoryRetention) -> History:
    """``history`` with a probe's ``point`` added, its points trimmed."""
    probes = _within_days([*history.probes, point], retention.days)
    return dataclasses.replace(history, probes=probes[-PROBES_KEPT:])


def with_incident(history: History, record: IncidentRecord, retention: HistoryRetention) -> History:
    """``history`` with an ended incident's ``record`` added, its records trimmed."""
    records = _within_days([*history.incidents, record], retention.days)
    return dataclasses.replace(history, incidents=records[-retention.keep :])


def _same_run(kept: Snapshot, new: Snapshot) -> bool:
    return kept.run == new.run if new.run else kept == new


Read = TypeVar("Read")


def _readable(raw: Any, read: Callable[[Any], Read], text: bool = False) -> list[Read]:
    """What ``read`` can read of a stored list (``text``: of JSON texts): an item of another
    version, or not JSON, is left out (SnapshotError, MarkerError, ProbeError: ValueErrors)."""
    found = []
    for item in raw if isinstance(raw, list) else []:
        with contextlib.suppress(ValueError):
            found.append(read(json.loads(item) if text else item))
    return found


def _history(raw: Any) -> History:
    if not isinstance(raw, dict):
        return History()
    try:
        last_good = Snapshot.from_dict(raw["last_good"]) if raw.get("last_good") else None
    except SnapshotError:
        last_good = None
    return History(
        last_good,
        _readable(raw.get("recent"), Snapshot.from_dict),
        _readable(raw.get("markers"), Marker.from_dict),
        _readable(raw.get("probes"), ProbePoint.from_dict),
        _readable(raw.get("incidents"), IncidentRecord.from_dict),
    )


def _raw(history: History) -> dict[str, Any]:
    return {
        "last_good": history.last_good.to_dict() if history.last_good else None,
        "recent": [s.to_dict() for s in history.recent],
        "markers": [m.to_dict() for m in history.markers],
        "probes": [p.to_dict() for p in history.probes],
        "incidents": [i.to_dict() for i in history.incidents],
    }


class MemoryHistory:
    """A HistoryStore in this process's memory."""

    def __init__(self, retention: HistoryRetention | None = None) -> None:
        self.retention = retention or HistoryRetention()
        self.targets: dict[str, History] = {}

    async def load(self, target: str) -> History:
        return self.targets.get(target, History())

    async def keep(self, snapshot: Snapshot) -> None:
        history = self.targets.get(snapshot.target, History())
        self.targets[snapshot.target] = kept(history, snapshot, self.retention)

    async def mark(self, marker: Marker) -> None:
        history = self.targets.get(marker.target, History())
        self.targets[marker.target] = marked(history, marker, self.retention)

    async def probed(self, point: ProbePoint) -> None:
        history = self.targets.get(point.target, History())
        self.targets[point.target] = with_probe(history, point, self.retention)

    async def ended(self, record: IncidentRecord) -> None:
        history = self.targets.get(record.target, History())
        self.targets[record.target] = with_incident(history, record, self.retention)


def default_state_file() -> Path:
    """$XDG_STATE_HOME/badgateway/state.json, else ~/.local/state/badgateway/state.json."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "badgateway" / "state.json"


class FileHistory:
    """A HistoryStore in a JSON file, written whole and atomically (a new file renamed over
    the old), so an interrupted run leaves the previous state. A file that cannot be read
    (corrupt, another program's) is reported once through ``warn`` and then replaced."""

    def __init__(
        self,
        path: Path,
        retention: HistoryRetention | None = None,
        warn: Callable[[str], None] = log.warning,
    ) -> None:
        self.path = path
        self.retention = retention or HistoryRetention()
        self.warn = warn
        self._warned = False

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            return self._unreadable(f"cannot be read ({exc})")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._unreadable(f"is not JSON ({exc.msg}, line {exc.lineno})")
        if not isinstance(document, dict) or document.get("version") != STATE_FILE_VERSION:
            return self._unreadable("is not a badgateway state file of version 1")
        targets = document.get("targets")
        return targets if isinstance(targets, dict) else {}

    def _unreadable(self, why: str) -> dict[str, Any]:
        if not self._warned:
            self._warned = True
            self.warn(f"state file {self.path} {why}: starting a new one")
        return {}

    async def load(self, target: str) -> History:
        return _history(self._read().get(target))

    async def keep(self, snapshot: Snapshot) -> None:
        targets = self._read()
        history = kept(_history(targets.get(snapshot.target)), snapshot, self.retention)
        targets[snapshot.target] = _raw(history)
        self._write({"version": STATE_FILE_VERSION, "targets": targets})

    async def mark(self, marker: Marker) -> None:
        targets = self._read()
        history = marked(_history(targets.get(marker.target)), marker, self.retention)
        targets[marker.target] = _raw(history)
        self._write({"version": STATE_FILE_VERSION, "targets": targets})

    async def probed(self, point: ProbePoint) -> None:
        targets = self._read()
        history = with_probe(_history(targets.get(point.target)), point, self.retention)
        targets[point.target] = _raw(history)
        self._write({"version": STATE_FILE_VERSION, "targets": targets})

    async def ended(self, record: IncidentRecord) -> None:
        targets = self._read()
        history = with_incident(_history(targets.get(record.target)), record, self.retention)
        targets[record.target] = _raw(history)
        self._write({"version": STATE_FILE_VERSION, "targets": targets})

    def _write(self, document: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


class RedisHistory:
    """A HistoryStore in Redis, shared by the web process and the workers. Keeping is a few
    atomic commands and no lock (a hundred diagnoses of one site may conclude at once): the
    snapshot pushed onto the site's list, the list trimmed to ``keep``, the baseline set
    when it is healthy; a run is claimed first, so one delivered twice is kept once."""

    def __init__(self, redis: Redis, retention: HistoryRetention | None = None) -> None:
        self.redis = redis
        self.retention = retention or HistoryRetention()

    async def load(self, target: str) -> History:
        # One round trip, not five: every verdict reads it (a storm's 200 at once).
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key("baseline", target))
            for kind in ("history", "markers", "probes", "incidents"):
                pipe.lrange(key(kind, target), 0, -1)
            raw_good, recent, markers, probes, incidents = await pipe.execute()
        last_good = None
        if raw_good:
            with contextlib.suppress(ValueError):
                last_good = Snapshot.from_dict(json.loads(raw_good))
        days = self.retention.days
        return History(
            last_good,
            _within_days(_readable(recent, Snapshot.from_dict, text=True), days),
            _within_days(_readable(markers, Marker.from_dict, text=True), days),
            _within_days(_readable(probes, ProbePoint.from_dict, text=True), days),
            _within_days(_readable(incidents, IncidentRecord.from_dict, text=True), days),
        )

    async def keep(self, snapshot: Snapshot) -> None:
        target, text = snapshot.target, json.dumps(snapshot.to_dict())
        run = snapshot.run or hashlib.sha256(text.encode()).hexdigest()
        if not await claim(self.redis, key("history", target, "run", run), _RUN_CLAIM_S):
            return  # this run is kept already: its verdict was delivered again
        recent_key = key("history", target)
        # Nothing older than the retention is kept; a configured site's baseline is kept
        # however old, an ad-hoc URL's (anyone may `/502` any URL) only as long.
        expiry_s = self._expiry_s()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(recent_key, text)
            pipe.ltrim(recent_key, -self.retention.keep, -1)
            pipe.expire(recent_key, expiry_s)
            if snapshot.healthy:
                good_expiry_s = expiry_s if "://" in target else None
                pipe.set(key("baseline", target), text, ex=good_expiry_s)
            await pipe.execute()

    def _expiry_s(self) -> int:
        return max(1, math.ceil(self.retention.days * 86400))

    async def mark(self, marker: Marker) -> None:
        """Pushed, trimmed to ``keep`` and expiring with the retention, in one transaction."""
        await self._push(key("markers", marker.target), marker.to_dict(), self.retention.keep)

    async def probed(self, point: ProbePoint) -> None:
        await self._push(key("probes", point.target), point.to_dict(), PROBES_KEPT)

    async def ended(self, record: IncidentRecord) -> None:
        """Pushed, trimmed to ``keep`` and expiring with the retention, like a marker."""
        await self._push(key("incidents", record.target), record.to_dict(), self.retention.keep)

    async def _push(self, list_key: str, item: dict[str, Any], keep: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(list_key, json.dumps(item))
            pipe.ltrim(list_key, -keep, -1)
            pipe.expire(list_key, self._expiry_s())
            await pipe.execute()

    async def aclose(self) -> None:
        await self.redis.aclose()


Kept = TypeVar("Kept", Snapshot, Marker, ProbePoint, IncidentRecord)


def _time_of(item: Snapshot | Marker | ProbePoint | IncidentRecord) -> datetime:
    if isinstance(item, Snapshot):
        return datetime.fromisoformat(item.taken_at)
    if isinstance(item, IncidentRecord):
        return datetime.fromisoformat(item.ended_at)
    return datetime.fromisoformat(item.at)


def _within_days(recent: list[Kept], days: float) -> list[Kept]:
    """The snapshots (or markers) no more than ``days`` older than the newest."""
    try:
        newest = max(_time_of(s) for s in recent)
        return [s for s in recent if _time_of(s) >= newest - timedelta(days=days)]
    except (ValueError, TypeError):  # none, or a time that is not one: keep by count only
        return recent


def marked_site(given: str, settings: Settings) -> Site | None:
    """The configured site a marker names, by its name or its URL (None: no such site).
    Markers are kept for configured sites only: a deploy is recorded against a site."""
    named = settings.site_named(given)
    if named is not None:
        return named
    wanted = given.strip().rstrip("/")
    return next((s for s in settings.sites if s.url.rstrip("/") == wanted), None)


async def timeline_of(
    store: HistoryStore, target: str, hours: float, now: datetime | None = None
) -> Timeline:
    """What `history` shows of ``target``: its kept checks and markers of the last ``hours``."""
    history = await store.load(target)
    until = now or datetime.now(UTC)
    return timeline(
        target,
        history.recent,
        history.markers,
        until,
        hours,
        last_good=history.last_good,
        probes=history.probes,
        incidents=history.incidents,
    )


def redis_history(url: str, retention: HistoryRetention | None = None) -> RedisHistory:
    """A RedisHistory on its own connection to ``url`` (made when first used)."""
    return RedisHistory(Redis.from_url(url, decode_responses=True), retention)


class HistoryKeeper:
    """Compares a finished diagnosis with its target's history, then keeps its snapshot."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    async def compare_and_keep(self, diagnosis: Diagnosis, run: str = "") -> Diagnosis:
        """``diagnosis`` with what changed in its verdict (as it is, when the history cannot
        be read); its snapshot kept (logged and skipped when it cannot be). ``run``: the
        request's id, so that a run delivered twice is kept once."""
        compared = diagnosis
        try:
            async with asyncio.timeout(HISTORY_BUDGET_S):
                history = await self.store.load(target_of(diagnosis))
            compared = with_changes(diagnosis, history.last_good, history.recent)
            window_s = self.store.retention.marker_window_hours * 3600
            compared = with_markers(
                compared, history.markers, window_s, history.last_good, history.recent
            )
        except Exception:
            log.warning("history of %s not read", diagnosis.url, exc_info=True)
        try:
            async with asyncio.timeout(HISTORY_BUDGET_S):
                await self.store.keep(snapshot_of(diagnosis, run))
        except Exception:
            log.warning("snapshot of %s not kept", diagnosis.url, exc_info=True)
        return compared

    async def aclose(self) -> None:
        await close_store(self.store)


async def close_store(store: HistoryStore | None) -> None:
    """Close ``store``'s connection, when it has one (RedisHistory)."""
    closer = getattr(store, "aclose", None)
    if closer is not None:
        await closer()
