"""A site's recent history as something to look at: the kept checks of the last hours as a
text sparkline of status and of latency, the outages they show (a run of failing checks: its
cause, start, end and length), the facts that changed from one check to the next, the
markers people recorded, the alert incidents that ended (``IncidentRecord``), and the last
good check → first failure of a failure going on.

A check is a diagnosis's snapshot or a scheduled probe's ``ProbePoint``: thin (ok or not,
what it saw, its time), it fills the sparklines and the outages between diagnoses but is
never a baseline and carries no facts to compare. A site probed from several places keeps
one point per place, all at the round's time: they are one check, healthy when every place
was (else its cause names the places that failed), so one place failing all day is one
outage, not one per round.

Pure: built from the snapshots (checks.baseline), probe points and markers a store kept;
``Timeline.to_dict`` is the JSON of `badgateway history --json`, and the renderers
(bot.render.history) draw it for a terminal and for Slack.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from badgateway.checks.baseline import Snapshot
from badgateway.checks.changes import changes_since
from badgateway.checks.markers import Marker
from badgateway.checks.model import Cause, Change

# One glyph per time bucket: the higher, the worse (a bar chart of trouble).
GLYPH_OK, GLYPH_MIXED, GLYPH_FAIL, GLYPH_NONE = "▁", "▅", "█", "·"
LATENCY_GLYPHS = "▁▂▃▄▅▆▇█"
DEFAULT_BUCKETS = 48


class ProbeError(ValueError):
    """A stored probe point this version cannot read."""


@dataclass(frozen=True)
class ProbePoint:
    """One scheduled probe of ``target`` at ``at`` (ISO UTC): did it work, what it saw."""

    target: str
    at: str
    ok: bool
    what: str  # "HTTP 502 Bad Gateway from http://…"
    total_ms: float | None = None
    place: str | None = None  # the place (vantage) it was probed from; None: one place

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> ProbePoint:
        if not isinstance(d, dict):
            raise ProbeError("not a probe point")
        try:
            total = d.get("total_ms")
            place = d.get("place")
            return cls(
                str(d["target"]),
                str(d["at"]),
                bool(d["ok"]),
                str(d.get("what") or ""),
                float(total) if isinstance(total, int | float) else None,
                str(place) if place else None,
            )
        except KeyError as exc:
            raise ProbeError(f"a probe point without {exc}") from None


class IncidentRecordError(ValueError):
    """A stored incident record this version cannot read."""


@dataclass(frozen=True)
class IncidentRecord:
    """An alert incident of ``target`` that ended: kept when it closes (resolved by a person
    or its alerts, or recovered: its probes pass again), so the history shows incidents as the
    alerts saw them, not only the outages its checks show. Times are ISO UTC."""

    id: str
    target: str
    opened_at: str
    ended_at: str
    cause: str  # the diagnosed cause and its summary, else what failed
    # How it ended: "resolved by U1", "the alertmanager alert resolved"…; REOPENED: a
    # recovered incident failed again (its record at recovery no longer says how it ended).
    ended: str

    def duration_s(self) -> float:
        return _seconds(self.opened_at, self.ended_at)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> dict[str, Any]:
        return {**self.to_dict(), "duration_s": round(self.duration_s())}

    @classmethod
    def from_dict(cls, d: Any) -> IncidentRecord:
        if not isinstance(d, dict):
            raise IncidentRecordError("not an incident record")
        try:
            record = cls(*(str(d[name]) for name in _RECORD_FIELDS))
            record.duration_s()  # both times must be times
        except KeyError as exc:
            raise IncidentRecordError(f"an incident record without {exc}") from None
        except (ValueError, TypeError):
            raise IncidentRecordError("an incident record with a time that is not one") from None
        return record


_RECORD_FIELDS = ("id", "target", "opened_at", "ended_at", "cause", "ended")
REOPENED = "reopened"


@dataclass(frozen=True)
class _Check:
    """A snapshot or a probe point, as the sparklines and outages see it."""

    at: str
    healthy: bool
    cause: str
    total_ms: float | None


@dataclass(frozen=True)
class Outage:
    """Consecutive failing checks: ``ended_at`` is the first healthy check after (None:
    still failing at the last check)."""

    cause: str
    started_at: str
    last_failing_at: str
    ended_at: str | None
    checks: int

    def duration_s(self) -> float:
        """From the first failing check to the first healthy one (or the last failing)."""
        return _seconds(self.started_at, self.ended_at or self.last_failing_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "started_at": self.started_at,
            "last_failing_at": self.last_failing_at,
            "ended_at": self.ended_at,
            "checks": self.checks,
            "duration_s": round(self.duration_s()),
        }


@dataclass(frozen=True)
class Timeline:
    """What `history` shows of one site between ``since`` and ``until``."""

    target: str
    since: str
    until: str
    bucket_s: float
    status: str  # one glyph per bucket, oldest first
    latency: str  # one glyph per bucket, scaled to ``latency_max_ms``
    latency_max_ms: int | None
    checks: int
    outages: list[Outage] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    incidents: list[IncidentRecord] = field(default_factory=list)  # oldest first
    last_good_at: str | None = None
    first_failure_at: str | None = None  # set while the last check is failing

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "since": self.since,
            "until": self.until,
            "bucket_s": self.bucket_s,
            "status": self.status,
            "latency": self.latency,
            "latency_max_ms": self.latency_max_ms,
            "checks": self.checks,
            "outages": [o.to_dict() for o in self.outages],
            "changes": [c.to_dict() for c in self.changes],
            "markers": [m.to_dict() for m in self.markers],
            "incidents": [i.to_json() for i in self.incidents],
            "last_good_at": self.last_good_at,
            "first_failure_at": self.first_failure_at,
        }


def timeline(
    target: str,
    snapshots: Sequence[Snapshot],
    markers: Sequence[Marker],
    until: datetime,
    hours: float = 24.0,
    buckets: int = DEFAULT_BUCKETS,
    last_good: Snapshot | None = None,
    probes: Sequence[ProbePoint] = (),
    incidents: Sequence[IncidentRecord] = (),
) -> Timeline:
    """The timeline of ``target`` over the ``hours`` up to ``until`` (aware), in ``buckets``."""
    since = until - timedelta(hours=hours)
    shown = sorted(
        (s for s in snapshots if _within(s.taken_at, since, until)), key=lambda s: _at(s.taken_at)
    )
    checks = sorted(
        [_Check(s.taken_at, s.healthy, s.cause, _total_ms(s)) for s in shown]
        + _probe_checks([p for p in probes if _within(p.at, since, until)]),
        key=lambda c: _at(c.at),
    )
    bucket_s = hours * 3600 / buckets
    grouped: list[list[_Check]] = [[] for _ in range(buckets)]
    for check in checks:
        index = int((_at(check.at) - since).total_seconds() // bucket_s)
        grouped[min(index, buckets - 1)].append(check)
    latencies = [_median_total(group) for group in grouped]
    known = [ms for ms in latencies if ms is not None]
    top = max(known) if known else None
    # By position, not time: a check and the next may share a second.
    last_ok = max((i for i, c in enumerate(checks) if c.healthy), default=-1)
    good_at = checks[last_ok].at if last_ok >= 0 else None
    if good_at is None and last_good is not None:
        good_at = last_good.taken_at
    failing_now = bool(checks) and not checks[-1].healthy
    return Timeline(
        target=target,
        since=since.isoformat(timespec="seconds"),
        until=until.isoformat(timespec="seconds"),
        bucket_s=bucket_s,
        status="".join(_status_glyph(group) for group in grouped),
        latency="".join(_latency_glyph(ms, top) for ms in latencies),
        latency_max_ms=round(top) if top is not None else None,
        checks=len(checks),
        outages=_outages(checks),
        changes=_changes(shown),
        markers=sorted(
            (m for m in markers if _within(m.at, since, until)), key=lambda m: _at(m.at)
        ),
        incidents=_incidents_within(incidents, since, until),
        last_good_at=good_at,
        first_failure_at=checks[last_ok + 1].at if failing_now else None,
    )


def _probe_checks(probes: Sequence[ProbePoint]) -> list[_Check]:
    """One check per probe, or per round of a site probed from places (its points share
    the round's time): healthy when every place was; the cause names each that failed."""
    rounds: dict[str, list[ProbePoint]] = {}
    single: list[ProbePoint] = []
    for point in probes:
        if point.place:
            rounds.setdefault(point.at, []).append(point)
        else:
            single.append(point)
    checks = [
        _Check(p.at, p.ok, "healthy" if p.ok else f"probe: {p.what}", p.total_ms) for p in single
    ]
    for at, points in rounds.items():
        failed = [p for p in points if not p.ok]
        totals = [p.total_ms for p in points if p.total_ms is not None]
        cause = "; ".join(f"probe from {p.place}: {p.what}" for p in failed) or "healthy"
        total = statistics.median(totals) if totals else None
        checks.append(_Check(at, not failed, cause, total))
    return checks


def _incidents_within(
    records: Sequence[IncidentRecord], since: datetime, until: datetime
) -> list[IncidentRecord]:
    """The incidents that ended within the span, each once: an incident that recovered,
    failed again and closed is recorded three times, and its last record is what happened
    (REOPENED: it has not ended)."""
    last = {r.id: r for r in records}
    shown = [r for r in last.values() if r.ended != REOPENED and _within(r.ended_at, since, until)]
    return sorted(shown, key=lambda r: _at(r.opened_at))


@dataclass(frozen=True)
class Started:
    """When a failure reported at some time started, as the kept checks saw it: the last
    healthy check before it, and the first failing check after that one (None: no check
    failed before it was reported; the report's own time is the first failure known)."""

    last_good_at: str
    first_failure_at: str | None


def started_before(
    snapshots: Sequence[Snapshot],
    probes: Sequence[ProbePoint],
    before: datetime,
    last_good: Snapshot | None = None,
) -> Started | None:
    """When a failure reported at ``before`` (aware) started, from the checks kept up to
    then; None when no check before it was healthy (the history cannot say)."""
    checks = sorted(
        [
            _Check(s.taken_at, s.healthy, s.cause, None)
            for s in snapshots
            if _not_after(s.taken_at, before)
        ]
        + _probe_checks([p for p in probes if _not_after(p.at, before)]),
        key=lambda c: _at(c.at),
    )
    last_ok = max((i for i, c in enumerate(checks) if c.healthy), default=-1)
    if last_ok >= 0:
        good_at = checks[last_ok].at
    elif last_good is not None and _not_after(last_good.taken_at, before):
        good_at = last_good.taken_at
    else:
        return None
    after = [c for c in checks if _at(c.at) > _at(good_at)]
    return Started(good_at, after[0].at if after else None)


def _not_after(iso: str, moment: datetime) -> bool:
    try:
        return _at(iso) <= moment
    except (ValueError, TypeError):
        return False


def _status_glyph(group: list[_Check]) -> str:
    if not group:
        return GLYPH_NONE
    healthy = sum(1 for s in group if s.healthy)
    return GLYPH_OK if healthy == len(group) else GLYPH_FAIL if healthy == 0 else GLYPH_MIXED


def _total_ms(snapshot: Snapshot) -> float | None:
    phases = snapshot.context.get("phases_ms")
    if isinstance(phases, dict) and isinstance(phases.get("total"), int | float):
        return float(phases["total"])
    return None


def _median_total(group: list[_Check]) -> float | None:
    totals = [c.total_ms for c in group if c.total_ms is not None]
    return statistics.median(totals) if totals else None


def _latency_glyph(ms: float | None, top: float | None) -> str:
    if ms is None or not top:
        return GLYPH_NONE
    return LATENCY_GLYPHS[min(len(LATENCY_GLYPHS) - 1, int(ms / top * len(LATENCY_GLYPHS)))]


def _outages(checks: list[_Check]) -> list[Outage]:
    found: list[Outage] = []
    run: list[_Check] = []
    for check in [*checks, None]:
        if check is not None and not check.healthy:
            run.append(check)
            continue
        if run:
            # A diagnosis names the cause; probes only say what they saw.
            diagnosed = [c.cause for c in run if not c.cause.startswith(("probe: ", "probe from "))]
            cause = statistics.mode(diagnosed or [c.cause for c in run])
            ended = check.at if check is not None else None
            found.append(Outage(cause, run[0].at, run[-1].at, ended, len(run)))
            run = []
    return found


def _changes(shown: list[Snapshot]) -> list[Change]:
    """Each fact that differs from one kept check to the next, dated by the two."""
    found: list[Change] = []
    for before, after in itertools.pairwise(shown):
        try:
            cause = Cause(after.cause)
        except ValueError:
            cause = Cause.HEALTHY
        found += changes_since(before, [], after, cause)
    return found


def _within(iso: str, since: datetime, until: datetime) -> bool:
    try:
        return since <= _at(iso) <= until
    except (ValueError, TypeError):
        return False


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _seconds(earlier: str, later: str) -> float:
    return (_at(later) - _at(earlier)).total_seconds()
