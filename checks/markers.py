"""Deploy and change markers, and when a failure started: what a failing verdict says about
what people did to the site just before it broke.

A ``Marker`` is a note someone recorded against a site at a time ("deployed shop v1.2.3",
by "CI", kind "deploy"). ``with_markers`` puts the markers into a failing diagnosis's
verdict: one recorded no more than ``window_s`` before the first failure is strong evidence
(summary, evidence and a next step: roll it back or check it); older ones are context (the
verdict's ``baseline`` line). It also dates the failure: the last good check → the first
failure, from the kept snapshots. Pure functions; where markers are kept is the bot's
business (bot.history_store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from badgateway.checks.baseline import Snapshot
from badgateway.checks.changes import clock_at
from badgateway.checks.model import Cause, Diagnosis, Finding, Status, Weight

MAX_MARKER_TEXT = 300  # a marker is a line, not a changelog
MAX_MARKER_BY = 80
MARKER_KINDS = ("deploy", "change", "config", "rollback", "maintenance", "note")
STRONG_SHOWN = 3  # markers named in a summary
CONTEXT_SHOWN = 2  # older markers named in the baseline line


class MarkerError(ValueError):
    """A marker that cannot be kept: the message says which field and why, in one line."""


@dataclass(frozen=True)
class Marker:
    """``text`` recorded against ``target`` (a site's name) at ``at`` (ISO UTC)."""

    target: str
    text: str
    at: str
    by: str = ""
    kind: str = "change"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Marker:
        """Raises MarkerError for anything but a stored marker."""
        if not isinstance(d, dict):
            raise MarkerError("not a marker")
        try:
            return checked(
                str(d["target"]),
                str(d["text"]),
                str(d["at"]),
                by=str(d.get("by") or ""),
                kind=str(d.get("kind") or "change"),
            )
        except KeyError as exc:
            raise MarkerError(f"a marker without {exc}") from None

    def line(self, reference: str) -> str:
        """ "deployed shop v1.2.3 by CI at 12:01:05 UTC"."""
        by = f" by {self.by}" if self.by else ""
        return f"{self.text}{by} at {clock_at(self.at, reference)}"


def checked(target: str, text: str, at: str, *, by: str = "", kind: str = "change") -> Marker:
    """A Marker whose fields are within bounds; raises MarkerError naming the first that is
    not (what a person or a CI job sent is checked here, before anything is kept)."""
    text, by = " ".join(text.split()), " ".join(by.split())
    if not text:
        raise MarkerError("'text' must say what was done, e.g. 'deployed shop v1.2.3'")
    if len(text) > MAX_MARKER_TEXT:
        raise MarkerError(f"'text' is longer than {MAX_MARKER_TEXT} characters")
    if len(by) > MAX_MARKER_BY:
        raise MarkerError(f"'by' is longer than {MAX_MARKER_BY} characters")
    if kind not in MARKER_KINDS:
        raise MarkerError(f"'kind' must be one of {', '.join(MARKER_KINDS)}, got {kind[:40]!r}")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise MarkerError(f"'at' is not an ISO 8601 time: {at[:40]!r}") from None
    if moment.tzinfo is None:
        raise MarkerError("'at' must carry its time zone")
    return Marker(target, text, at, by, kind)


def first_failure(last_good: Snapshot | None, recent: Sequence[Snapshot], now_at: str) -> str:
    """When the failure that ``now_at``'s check sees started: the first failing snapshot kept
    after the last good one (``now_at`` itself when none is)."""
    after = [
        s
        for s in recent
        if not s.healthy and _fits(s.taken_at) and (last_good is None or _later(s, last_good))
    ]
    return min((s.taken_at for s in after), key=_moment, default=now_at)


def with_markers(
    diagnosis: Diagnosis,
    markers: Sequence[Marker],
    window_s: float,
    last_good: Snapshot | None = None,
    recent: Sequence[Snapshot] = (),
) -> Diagnosis:
    """``diagnosis`` with the markers before its failure, and the failure's start, in its
    verdict (a healthy one is returned as it is)."""
    verdict = diagnosis.verdict
    if verdict.cause is Cause.HEALTHY:
        return diagnosis
    started = first_failure(last_good, recent, diagnosis.started_at)
    before = sorted(
        (m for m in markers if _fits(m.at) and _moment(m.at) <= _moment(started)),
        key=lambda m: _moment(m.at),
        reverse=True,
    )
    strong = [m for m in before if _seconds(m.at, started) <= window_s][:STRONG_SHOWN]
    older = [m for m in before if m not in strong][:CONTEXT_SHOWN]
    notes = [verdict.baseline] if verdict.baseline else []
    if last_good is not None:
        notes.append(
            f"Last good check {clock_at(last_good.taken_at, started)} → "
            f"first failure {clock_at(started, started)}."
        )
    if older:
        notes.append("Earlier: " + "; ".join(m.line(started) for m in older) + ".")
    lines = [f"{m.line(started)}, {_ago(m.at, started)} before the first failure" for m in strong]
    summary = verdict.summary
    if strong:
        summary += " Just before it started: " + "; ".join(lines) + "."
    evidence = verdict.evidence + [
        Finding(
            "marker",
            line,
            Status.WARN,
            verdict.cause,
            Weight.HINT,
            {"text": m.text, "by": m.by, "kind": m.kind, "at": m.at},
        )
        for m, line in zip(strong, lines, strict=True)
    ]
    steps = [f"Roll back “{m.text}” ({m.line(started)}) or check its change." for m in strong]
    new_verdict = dataclasses.replace(
        verdict,
        summary=summary,
        evidence=evidence,
        next_steps=list(dict.fromkeys(steps + verdict.next_steps)),
        baseline=" ".join(notes),
    )
    return dataclasses.replace(diagnosis, verdict=new_verdict)


def _ago(at: str, started: str) -> str:
    minutes = round(_seconds(at, started) / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.3g} h"


def _seconds(earlier: str, later: str) -> float:
    return (_moment(later) - _moment(earlier)).total_seconds()


def _later(snapshot: Snapshot, base: Snapshot) -> bool:
    return _fits(snapshot.taken_at) and _moment(snapshot.taken_at) > _moment(base.taken_at)


def _fits(iso: str) -> bool:
    try:
        _moment(iso)
    except ValueError:
        return False
    return True


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
