"""One step seen from several places (vantage workers): the view at a place, the part it
returns, and the table of places each step shows.

A probe step (reload, dns, firewall) runs at each place as a part (``Parts(queue="probe")``,
on queue ``probe@PLACE``). At a place the target is resolved again with that process's own
resolvers (``Settings.resolvers``, empty: the system's), every address is vetted by the SSRF
guard, and the step probes those addresses: what users there reach, not what the asker's
machine resolved (``run_at``). Its part is JSON (``PlacePart``); ``outcomes`` reads the
parts back for the judgement across places (checks.place_judgement). ``table_lines`` is the
compact table each step's evidence shows: one line per place.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, cast

from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import TargetRefused, check_address
from badgateway.checks.model import Finding, Status, StepResult, Weight
from badgateway.checks.place_names import HERE
from badgateway.checks.readable import ms_text
from badgateway.checks.resolve import ResolveFailed, resolve_host

# The queue a place's parts go to: the part for place NAME on "probe@NAME", which only a
# worker started as ``badgateway worker --vantage NAME`` serves.
QUEUE = "probe"


def place_queue(place: str) -> str:
    """The queue of ``place`` ("probe@eu-west"): the probe steps' parts and the monitor's
    probes from there go on it, and its vantage worker serves it."""
    return f"{QUEUE}@{place}"


StepAtPlace = Callable[[ProbeContext], Awaitable[StepResult]]


def probe_places(ctx: ProbeContext) -> tuple[str, ...]:
    """Where the probe steps run: the context's places; () runs the step whole, here."""
    return ctx.places


class PlacePart(TypedDict):
    """What a part returns from one place (JSON, stored by the queue until assembled)."""

    place: str
    result: dict[str, Any]  # the step's StepResult there, as a dict
    addresses: list[str]  # the vetted addresses probed from there
    answers: list[str]  # what the place's resolvers answered, before vetting
    resolver: str  # whose answers: "system" or the configured resolvers
    resolve_error: str | None  # why there are no answers
    phases: dict[str, int]  # "resolve", "probe": milliseconds


class PlaceRow(TypedDict):
    """One line of a step's table of places (in its details under ``places``)."""

    place: str
    status: str  # a Status value, or "missing"
    summary: str
    addresses: list[str]
    answers: list[str]
    phases: dict[str, int]
    resolve_error: NotRequired[str | None]


class State(StrEnum):
    """How the step went at one place."""

    WORKS = "works"
    FAILS = "fails"
    UNKNOWN = "unknown"  # skipped or could not run to the end: no say either way


@dataclass(frozen=True)
class PlaceView:
    """The target as one place sees it: its own addresses in a context of its own."""

    ctx: ProbeContext
    answers: tuple[str, ...]
    refused: str | None  # the guard refused an address this place resolved
    resolve_ms: int


def _mark_tag(place: str) -> str:
    """The place in its requests' ``_bgw`` mark (marks are short: letters, digits, -, .)."""
    if re.fullmatch(r"[0-9A-Za-z-]{1,20}", place):
        return place
    return "p" + hashlib.sha1(place.encode()).hexdigest()[:8]


async def view_at(ctx: ProbeContext, place: str) -> PlaceView:
    """Resolve the target again with this process's resolvers and vet every address. The
    requests sent from here carry the place in their mark, so two places' requests stay
    apart in the site's logs."""
    started = time.monotonic()
    marked = replace(ctx, mark=f"{ctx.mark}.{_mark_tag(place)}")
    host = ctx.target.host
    try:
        answers = await resolve_host(host, ctx.settings.resolvers, ctx.probe_timeout())
    except ResolveFailed as exc:
        resolve_ms = round((time.monotonic() - started) * 1000)
        failed = replace(marked, addresses=(), resolve_error=str(exc), resolve_kind=exc.kind)
        return PlaceView(failed, (), None, resolve_ms)
    resolve_ms = round((time.monotonic() - started) * 1000)
    for address in answers:
        try:
            check_address(address, ctx.settings.allow_networks, host=host)
        except TargetRefused as exc:
            refused = replace(marked, addresses=(), resolve_error=str(exc), resolve_kind=None)
            return PlaceView(refused, tuple(answers), str(exc), resolve_ms)
    return PlaceView(replace(marked, addresses=tuple(answers)), tuple(answers), None, resolve_ms)


def _refused_result(name: str, place: str, reason: str) -> StepResult:
    """The step at a place whose resolvers answer an address the bot may not probe: users
    there go somewhere else than the site's public address."""
    return StepResult.from_findings(
        name,
        f"not probed from {place}: {reason}",
        [
            Finding(
                "place_address_refused",
                f"{place} resolves the site to an address the bot does not probe: {reason}",
                Status.FAIL,
                weight=Weight.INFERRED,
            )
        ],
    )


async def run_at(
    ctx: ProbeContext,
    place: str,
    name: str,
    probe: StepAtPlace,
    *,
    connects: bool = True,
    phases: Callable[[StepResult], dict[str, int]] | None = None,
) -> dict[str, Any]:
    """The step ``name`` at ``place`` (run by the worker there): its own view, its probes.
    ``connects``: the step connects to the site's addresses, so an address the guard
    refuses stops it (a step that only asks resolvers runs anyway, and says so).
    ``phases``: the step's own timings worth a place in the table (connect, first byte)."""
    view = await view_at(ctx, place)
    started = time.monotonic()
    if view.refused is not None and connects:
        result = _refused_result(name, place, view.refused)
    else:
        result = await probe(view.ctx)
        if view.refused is not None:
            refused = _refused_result(name, place, view.refused).findings
            result = StepResult.from_findings(
                name, result.summary, [*refused, *result.findings], details=result.details
            )
    part: PlacePart = {
        "place": place,
        "result": result.to_dict(),
        "addresses": list(view.ctx.addresses),
        "answers": list(view.answers),
        "resolver": ", ".join(ctx.settings.resolvers) or "system",
        "resolve_error": view.ctx.resolve_error,
        "phases": {
            "resolve": view.resolve_ms,
            **(phases(result) if phases else {}),
            "probe": round((time.monotonic() - started) * 1000),
        },
    }
    return dict(part)


@dataclass(frozen=True)
class Outcome:
    """One place's part, read back."""

    place: str
    result: StepResult
    part: PlacePart

    @property
    def state(self) -> State:
        if any(f.severity is Status.FAIL for f in self.result.findings):
            return State.FAILS
        if self.result.status in (Status.OK, Status.WARN):
            return State.WORKS
        return State.UNKNOWN

    @property
    def addresses(self) -> list[str]:
        return list(self.part.get("answers") or self.part.get("addresses") or [])

    def saw(self) -> str:
        """What the place saw, in a few words: "198.51.100.9: all 4 attempts failed: …"."""
        shown = ", ".join(self.addresses) or "no address"
        return f"{shown}: {self.result.summary}"


def outcomes(parts: Mapping[str, dict[str, Any]]) -> list[Outcome]:
    """The parts in place order (``here`` first: the asker's view leads)."""
    found = []
    for place in sorted(parts, key=lambda p: (p != HERE, p)):
        part = cast(PlacePart, parts[place])
        found.append(Outcome(place, StepResult.from_dict(part["result"]), part))
    return found


def listed(places: Iterable[str]) -> str:
    """Places as a person reads them: "eu-west, us-east"."""
    return ", ".join(places)


def table(found: list[Outcome], missing: Mapping[str, str]) -> list[PlaceRow]:
    """The rows of a step's table of places (its details' ``places``), missing ones last."""
    rows: list[PlaceRow] = [
        {
            "place": o.place,
            "status": o.result.status.value,
            "summary": o.result.summary,
            "addresses": list(o.part.get("addresses") or []),
            "answers": list(o.part.get("answers") or []),
            "phases": dict(o.part.get("phases") or {}),
            "resolve_error": o.part.get("resolve_error"),
        }
        for o in found
    ]
    rows += [
        {
            "place": place,
            "status": "missing",
            "summary": reason,
            "addresses": [],
            "answers": [],
            "phases": {},
        }
        for place, reason in sorted(missing.items())
    ]
    return rows


def table_lines(details: Mapping[str, Any]) -> list[str]:
    """The table of places, one line each: "us-east · fail · resolve 3 ms · probe 40 ms ·
    DNS 198.51.100.9 · all 4 attempts failed: 4x connection refused"; none without places."""
    lines = []
    for row in cast(list[PlaceRow], details.get("places") or []):
        phases = row.get("phases") or {}
        timing = " · ".join(f"{name} {ms_text(ms)}" for name, ms in phases.items())
        answers = row.get("answers") or []
        dns = f"DNS {', '.join(answers)}" if answers else (row.get("resolve_error") or "")
        probed = row.get("addresses") or []
        extra = f"probed {', '.join(probed)}" if probed and probed != answers else ""
        cells = [row.get("place") or "?", row.get("status") or "?", timing, dns, extra]
        cells.append(row.get("summary") or "")
        lines.append(" · ".join(c for c in cells if c))
    return lines


def failing_places(results: Iterable[StepResult]) -> tuple[str, ...]:
    """The places a diagnosis's probe steps failed from, by their tables of places (for
    monitoring's quorum and for saying where it fails); () when they ran from one place."""
    failing = {
        row["place"]
        for result in results
        for row in cast(list[PlaceRow], result.details.get("places") or [])
        if row.get("status") in (Status.FAIL.value, Status.ERROR.value)
    }
    return tuple(sorted(failing))
