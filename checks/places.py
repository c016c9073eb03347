"""One step seen from several places (vantage workers), and the judgement across them.

A probe step (reload, dns, firewall) runs at each place as a part (``Parts(queue="probe")``,
on queue ``probe@PLACE``). At a place the target is resolved again with that process's own
resolvers (``Settings.resolvers``, empty: the system's), every address is vetted by the SSRF
guard, and the step probes those addresses: what users there reach, not what the asker's
machine resolved (``run_at``). Its part is JSON (``PlacePart``).

``judge`` reads the parts together: every place fails → the step's findings as from one
place, saying from where; some fail and some work → a ``regional`` finding naming both, the
failing places' own cause findings kept as context only; every place works while the
asker's view fails (the place ``here``, or a person's ``/502``) → ``client_side``. A place
that sent nothing is a warning, and the verdict comes from the others. ``table_lines`` is
the compact table each step's evidence shows: one line per place.
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
from badgateway.checks.dns_client import address_order
from badgateway.checks.guard import TargetRefused, check_address
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.readable import ms_text
from badgateway.checks.resolve import ResolveFailed, resolve_host

# The asker's own view: ``badgateway diagnose --from …`` probes from the terminal as well,
# under this name; when it alone fails, the failure is on the asker's side.
HERE = "here"

# The queue a place's parts go to: the part for place NAME on "probe@NAME", which only a
# worker started as ``badgateway worker --vantage NAME`` serves.
QUEUE = "probe"

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
    return ", ".join(places)


def answers_split(found: list[Outcome]) -> str | None:
    """Places whose resolvers answer other addresses than the rest, in one line ("us-east
    resolves 198.51.100.9, the other places 203.0.113.7"; without a majority, each group:
    "eu-west resolves …; us-east resolves …"); None when they all agree."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for outcome in found:
        if outcome.addresses:
            key = tuple(sorted(set(outcome.addresses), key=address_order))
            groups.setdefault(key, []).append(outcome.place)
    if len(groups) < 2:
        return None
    ordered = sorted(groups.items(), key=lambda item: (len(item[1]), item[1]))
    if len(ordered) == 2 and len(ordered[0][1]) < len(ordered[1][1]):
        (odd, few), (usual, _many) = ordered
        verb = "resolves" if len(few) == 1 else "resolve"
        return f"{listed(few)} {verb} {listed(odd)}, the other places {listed(usual)}"
    return "; ".join(f"{listed(p)} resolve{'s' * (len(p) == 1)} {listed(a)}" for a, p in ordered)


def _from(places: list[str]) -> str:
    return f"from {listed(places)}"


def _as_context(finding: Finding) -> Finding:
    """A failing place's cause finding, kept to show what it saw but not as the verdict's
    evidence: across places, the cause is that it differs between them (``cause_at_place``
    keeps what it was, for when the site works from no place at all: checks.verdict)."""
    if finding.cause is None:
        return finding
    data = {**finding.data, "cause_at_place": finding.cause.value}
    return replace(finding, cause=None, data=data)


def _merged(found: list[Outcome], demoted: set[str]) -> list[Finding]:
    """Every place's findings, one per distinct message, saying from which places."""
    places_of: dict[tuple[str, str], list[str]] = {}
    first: dict[tuple[str, str], Finding] = {}
    for outcome in found:
        for finding in outcome.result.findings:
            if outcome.place in demoted:
                finding = _as_context(finding)
            key = (finding.code, finding.message)
            places_of.setdefault(key, []).append(outcome.place)
            first.setdefault(key, finding)
    merged = []
    for key, finding in first.items():
        where = places_of[key]
        merged.append(
            replace(
                finding,
                message=f"{finding.message} ({_from(where)})",
                data={**finding.data, "places": where},
            )
        )
    # Problems first, as one place's findings read.
    return sorted(merged, key=lambda f: -f.severity.rank)


def _missing_findings(missing: Mapping[str, str]) -> list[Finding]:
    return [
        Finding(
            "place_missing",
            f"no result from {place}: {reason}",
            Status.WARN,
            data={"place": place, "reason": reason},
        )
        for place, reason in sorted(missing.items())
    ]


def _observed(failing: list[Outcome]) -> Weight:
    """OBSERVED when a failing place's own probes saw something definite (a refused or
    dropped connect, another DNS answer, a server error); INFERRED for vaguer failures."""
    for outcome in failing:
        for finding in outcome.result.findings:
            if finding.severity is Status.FAIL and (
                finding.cause is not None or finding.weight >= Weight.INFERRED
            ):
                return Weight.OBSERVED
    return Weight.INFERRED


def _each(found: list[Outcome]) -> str:
    """The places' summaries: one when they say the same, else each with its place."""
    said = {o.result.summary for o in found}
    if len(said) == 1:
        return f"{_from([o.place for o in found])}: {said.pop()}"
    return "; ".join(f"{o.place}: {o.result.summary}" for o in found)


@dataclass(frozen=True)
class Judged:
    """A step's findings and summary across its places, and its table of places."""

    summary: str
    findings: list[Finding]
    rows: list[PlaceRow]
    found: list[Outcome]


def judge(
    ctx: ProbeContext,
    parts: Mapping[str, dict[str, Any]],
    missing: Mapping[str, str],
    *,
    title: str,
    asker_reports: bool = False,
) -> Judged:
    """The step's findings from every place's part (design: all fail → as from one place;
    some fail → ``regional``; all work but the asker's view → ``client_side``).
    ``asker_reports``: this step speaks for "the site works" (reload), so a person's report
    that it fails makes ``client_side`` when every place reaches the site."""
    found = outcomes(parts)
    rows = table(found, missing)
    gaps = _missing_findings(missing)
    if not found:
        summary = f"no place answered ({listed(sorted(missing))})"
        return Judged(summary, gaps, rows, found)
    failing = [o for o in found if o.state is State.FAILS]
    working = [o for o in found if o.state is State.WORKS]
    vantages = [o for o in found if o.place != HERE]
    here = next((o for o in found if o.place == HERE), None)
    split = answers_split(found)
    if (
        here is not None
        and here.state is State.FAILS
        and vantages
        and all(o.state is State.WORKS for o in vantages)
    ):
        findings = [_client_side_here(here, working, split, title)]
        findings += _merged(found, demoted={HERE})
        summary = f"works {_from([o.place for o in working])}, fails from here: {here.saw()}"
    elif failing and working:
        findings = [_regional(failing, working, split, title)]
        findings += _merged(found, demoted={o.place for o in failing})
        summary = (
            f"fails {_from([o.place for o in failing])}, works {_from([o.place for o in working])}"
        )
    else:
        findings = _merged(found, demoted=set())
        summary = _each(found)
        if asker_reports and ctx.asker_reports_failure and working and not failing:
            findings.insert(0, _client_side_reported(working, title))
    return Judged(summary, [*findings, *gaps], rows, found)


def _regional(
    failing: list[Outcome], working: list[Outcome], split: str | None, title: str
) -> Finding:
    bad, good = [o.place for o in failing], [o.place for o in working]
    message = (
        f"{title} fails {_from(bad)} and works {_from(good)}: "
        + "; ".join(f"{o.place} sees {o.saw()}" for o in failing)
        + "; "
        + "; ".join(f"{o.place} sees {o.saw()}" for o in working)
    )
    if split:
        message += f" ({split})"
    return Finding(
        "regional",
        message,
        Status.FAIL,
        Cause.REGIONAL,
        _observed(failing),
        {
            "failing": bad,
            "working": good,
            "seen": {o.place: o.result.summary for o in [*failing, *working]},
            "addresses": {o.place: o.addresses for o in [*failing, *working]},
        },
    )


def _client_side_here(
    here: Outcome, working: list[Outcome], split: str | None, title: str
) -> Finding:
    message = (
        f"{title} works {_from([o.place for o in working])} and fails only from here "
        f"(where you asked from): {here.saw()}"
    )
    if split:
        message += f" ({split})"
    return Finding(
        "client_side",
        message,
        Status.FAIL,
        Cause.CLIENT_SIDE,
        Weight.OBSERVED,
        {"working": [o.place for o in working], "here": here.result.summary},
    )


def _client_side_reported(working: list[Outcome], title: str) -> Finding:
    places = [o.place for o in working]
    return Finding(
        "client_side",
        f"{title} works {_from(places)}, yet it fails for the person asking: the trouble lies "
        "on their side (their connection, VPN, proxy or DNS)",
        Status.WARN,
        Cause.CLIENT_SIDE,
        Weight.INFERRED,
        {"working": places},
    )


def table(found: list[Outcome], missing: Mapping[str, str]) -> list[PlaceRow]:
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
