"""The judgement across places: one step's parts from every place, read together.

Every place fails → the step's findings as from one place, saying from where; some fail and
some work → a ``regional`` finding naming both and what each saw, the failing places' own
cause findings kept as context only (``cause_at_place``); every place works while the
asker's view fails (the place ``here``, or a person's ``/502``) → ``client_side``. A place
that sent nothing is a warning, and the verdict comes from the others. Places whose
resolvers answer other addresses are named (``answers_split``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from badgateway.checks.context import ProbeContext
from badgateway.checks.dns_client import address_order
from badgateway.checks.model import Cause, Finding, Status, Weight
from badgateway.checks.place_names import HERE
from badgateway.checks.places import Outcome, PlaceRow, State, listed, outcomes, table


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
