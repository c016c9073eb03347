"""From step results to one verdict: the cause, the evidence it rests on, what to do next.

Steps tag findings with the cause they are evidence for and how strong that evidence is.
The verdict walks the runbook's layers from the outside in (DNS, then whether it fails from
some places only, then the network path and TLS at the edge, then a WAF, then what lies
behind the proxy) and names the first layer with evidence, because a failure further out
hides everything behind it. Inside a layer the strongest, most repeated evidence wins. When
every place probed reaches the site and only the asker's side fails, it is ``client_side``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from badgateway.checks.causes import BEHIND_THE_PROXY, CATALOGUE, LAYERS, Layer, causes_in
from badgateway.checks.model import Cause, Finding, Status, StepResult, Verdict, Weight

# Within one layer, the best-supported cause wins (LAYERS: outside in, from checks.causes).
# What overrides "it works": the name, and where it fails from some places only (users
# there cannot reach it, whatever the others see).
_OVER_WORKING = causes_in(Layer.NAME, Layer.REACH, Layer.ANSWER)
_IN_FRONT_OF_THE_PROXY = causes_in(Layer.NAME, Layer.REACH, Layer.ANSWER, Layer.EDGE, Layer.WAF)


def _strength(findings: list[Finding]) -> tuple[int, int, int]:
    """How well findings support their cause: the strongest weight, then how many of the
    diagnosis's own requests they concern (what fails now), then how many lines in all."""
    best = max(int(f.weight) for f in findings)
    strongest = [f for f in findings if int(f.weight) == best]
    own = sum(int(f.data.get("own", 0)) for f in strongest)
    count = sum(int(f.data.get("count", 1)) for f in strongest)
    return best, own, count


def _problem_evidence(results: Iterable[StepResult]) -> dict[Cause, list[Finding]]:
    evidence: dict[Cause, list[Finding]] = {}
    for result in results:
        for finding in result.findings:
            if finding.cause is None:
                continue
            if finding.cause is not Cause.HEALTHY and finding.severity.rank < Status.WARN.rank:
                continue  # an ok-severity finding is context, not evidence of a problem
            evidence.setdefault(finding.cause, []).append(finding)
    return evidence


def _pick(
    layers: Iterable[tuple[Cause, ...]], evidence: dict[Cause, list[Finding]]
) -> Cause | None:
    for layer in layers:
        present = [c for c in layer if c in evidence]
        if present:
            return max(present, key=lambda c: _strength(evidence[c]))
    return None


def _works_nowhere(results: list[StepResult], evidence: dict[Cause, list[Finding]]) -> bool:
    """Some step found a place it fails from, but the site answers from none: nothing says
    it works (healthy or transient), and a step failed from every place it ran at. Then
    "fails from some places only" would mislead."""
    if Cause.REGIONAL not in evidence or Cause.HEALTHY in evidence or Cause.TRANSIENT in evidence:
        return False
    return any(
        r.status is Status.FAIL and not any(f.cause is Cause.REGIONAL for f in r.findings)
        for r in results
    )


def _what_each_place_saw(results: list[StepResult], evidence: dict[Cause, list[Finding]]) -> None:
    """Instead of ``regional``: the failing places' own findings, as evidence of their cause."""
    del evidence[Cause.REGIONAL]
    for result in results:
        for finding in result.findings:
            seen = finding.data.get("cause_at_place")
            if seen and finding.severity.rank >= Status.WARN.rank:
                evidence.setdefault(Cause(seen), []).append(replace(finding, cause=Cause(seen)))


def decide(results: Iterable[StepResult]) -> Verdict:
    results = list(results)
    evidence = _problem_evidence(results)
    if _works_nowhere(results, evidence):
        _what_each_place_saw(results, evidence)
    cause: Cause | None
    # A name that does not resolve at all is only a DNS verdict if a server said so.
    for dns_cause in (Cause.DNS_NXDOMAIN, Cause.DNS_FAILURE):
        if dns_cause in evidence and _strength(evidence[dns_cause])[0] < Weight.OBSERVED:
            del evidence[dns_cause]

    works = Cause.HEALTHY in evidence or Cause.CLIENT_SIDE in evidence
    if works and Cause.TRANSIENT not in evidence:
        # It works now (from every place probed): only a DNS problem (users may reach another
        # server) or a place it fails from overrides that. When the asker's side alone fails,
        # that is the verdict rather than "healthy".
        fallback = Cause.CLIENT_SIDE if Cause.CLIENT_SIDE in evidence else Cause.HEALTHY
        cause = _pick(_OVER_WORKING, evidence) or fallback
    elif Cause.TRANSIENT in evidence:
        cause = _pick(_IN_FRONT_OF_THE_PROXY, evidence) or Cause.TRANSIENT
    else:
        # Neither healthy nor transient evidence is left here (the branches above took it).
        cause = _pick(LAYERS, evidence) or Cause.UNKNOWN
    return _verdict(cause, evidence, results)


def _verdict(
    cause: Cause, evidence: dict[Cause, list[Finding]], results: list[StepResult]
) -> Verdict:
    info = CATALOGUE[cause]
    support = sorted(evidence.get(cause, []), key=lambda f: -int(f.weight))
    if cause is Cause.UNKNOWN:
        support = [f for r in results for f in r.findings if f.severity.rank >= Status.FAIL.rank]
    elif cause is Cause.TRANSIENT:
        # Say what the failing attempts were, and what the logs blame, if anything.
        support += [f for c in BEHIND_THE_PROXY for f in evidence.get(c, [])]
    support = support[:6]
    summary = info.title + ". " + info.meaning
    if support:
        summary += " Evidence: " + "; ".join(f.message for f in support[:3])
        if not summary.endswith("."):
            summary += "."
    errored = [r.name for r in results if r.status is Status.ERROR]
    if errored:
        summary += f" (Steps that could not run to the end: {', '.join(errored)}.)"
    specific = [str(f.data["next_step"]) for f in support if f.data.get("next_step")]
    next_steps = list(dict.fromkeys(specific + list(info.next_steps)))
    return Verdict(cause=cause, summary=summary, next_steps=next_steps, evidence=support)
