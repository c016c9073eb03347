"""A site probed from several places: what each place saw, and whether that makes it fail.

A site with places (``Settings.vantages_for(site)``) is probed from each of them, by the
vantage worker serving ``probe@PLACE`` (bot.alerts.monitor). Each place's outcome is kept;
the site counts as failing when it fails from ``Settings.quorum_for(site)`` places (default
two, or the only one), so one flaky place pages nobody. A place that did not answer in time
is unknown: it neither fails nor works. With no place failing enough and none working (every
answer missing), nothing can be said and the site's streak is left as it is (``combine``
returns None).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DOWN = "down"  # the probe from that place failed
FINE = "fine"  # it worked
NO_ANSWER = "no answer"  # no vantage worker answered for that place in time
STATES = (DOWN, FINE, NO_ANSWER)


@dataclass(frozen=True)
class ProbeOutcome:
    """One scheduled probe of a site: did it work, and what it saw (for storms, diagnoses)."""

    ok: bool
    what: str  # "HTTP 502 from http://…", "connection refused to 127.0.0.1:8080"
    facts: dict[str, list[str]] = field(default_factory=dict)
    context: dict[str, Any] | None = None  # ProbeContext.to_dict() when the target resolved
    total_ms: float | None = None  # how long the GET took, when it was made
    # A site probed from places: each place's state (DOWN, FINE, NO_ANSWER); {}: one place.
    places: dict[str, str] = field(default_factory=dict)


def outcome_to_dict(outcome: ProbeOutcome) -> dict[str, Any]:
    """What a vantage worker's probe job returns (JSON, through SAQ's job record)."""
    return {
        "ok": outcome.ok,
        "what": outcome.what,
        "facts": outcome.facts,
        "total_ms": outcome.total_ms,
    }


def outcome_from_dict(doc: Any) -> ProbeOutcome | None:
    """A place's outcome from its job's result; None for anything else (a place that did not
    answer, or answered with something this version cannot read)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("ok"), bool):
        return None
    facts = doc.get("facts")
    total = doc.get("total_ms")
    return ProbeOutcome(
        ok=doc["ok"],
        what=str(doc.get("what") or ""),
        facts=(
            {str(k): [str(v) for v in vs] for k, vs in facts.items() if isinstance(vs, list)}
            if isinstance(facts, Mapping)
            else {}
        ),
        total_ms=float(total) if isinstance(total, int | float) else None,
    )


def states(outcomes: Mapping[str, ProbeOutcome | None]) -> dict[str, str]:
    """Place → DOWN, FINE or NO_ANSWER, in the order the places are listed."""
    return {
        place: NO_ANSWER if outcome is None else FINE if outcome.ok else DOWN
        for place, outcome in outcomes.items()
    }


def _what(outcomes: Mapping[str, ProbeOutcome | None], state: str) -> str:
    """What the places in ``state`` saw: once when they all saw the same, else per place."""
    seen = {p: o.what for p, o in outcomes.items() if o is not None and states({p: o})[p] == state}
    if not seen:
        return ""
    if len(set(seen.values())) == 1:
        return next(iter(seen.values()))
    return "; ".join(f"{place}: {what}" for place, what in seen.items())


def combine(outcomes: Mapping[str, ProbeOutcome | None], quorum: int) -> ProbeOutcome | None:
    """One outcome for the site from its places' (None: that place did not answer): failing
    from at least ``quorum`` places fails; else it works if any place saw it work; else (every
    answer missing, or too few failing and none working) None: nothing to judge."""
    shown = states(outcomes)
    down = [p for p, s in shown.items() if s == DOWN]
    fine = [p for p, s in shown.items() if s == FINE]
    answered = [o for o in outcomes.values() if o is not None]
    totals = [o.total_ms for o in answered if o.total_ms is not None]
    total_ms = statistics.median(totals) if totals else None
    if len(down) >= max(1, quorum):
        facts: dict[str, list[str]] = {}
        for place in down:
            for kind, values in (outcomes[place] or ProbeOutcome(False, "")).facts.items():
                facts.setdefault(kind, [])
                facts[kind] += [v for v in values if v not in facts[kind]]
        what = f"{_what(outcomes, DOWN)} ({where(shown)})"
        return ProbeOutcome(False, what, facts, None, total_ms, places=shown)
    if fine:
        what = f"{_what(outcomes, FINE)} ({where(shown)})"
        return ProbeOutcome(True, what, {}, None, total_ms, places=shown)
    return None


def _names(places: Sequence[str]) -> str:
    return ", ".join(places)


def where(shown: Mapping[str, str]) -> str:
    """From where it fails: "down from eu-west, us-east; fine from ap-south; no answer from
    sa-east" (the states that occur, in that order). Plain text: the caller escapes it."""
    parts = []
    for state in STATES:
        named = [p for p, s in shown.items() if s == state]
        if named:
            parts.append(f"{state} from {_names(named)}")
    return "; ".join(parts)


def changed(before: Mapping[str, str], now: Mapping[str, str]) -> dict[str, list[str]]:
    """The places whose state moved between two rounds, by their new state: {"fine": [...],
    "down": [...]} (a place going quiet, or coming back, is not news; only down ↔ fine)."""
    moved: dict[str, list[str]] = {}
    for place, state in now.items():
        old = before.get(place)
        if state in (DOWN, FINE) and old in (DOWN, FINE) and old != state:
            moved.setdefault(state, []).append(place)
    return moved
