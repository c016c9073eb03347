"""Reload: request the page several times, bypassing caches and with a second client, and
say whether it fails consistently, comes and goes, or works.

This is the runbook's first move ("reload the page"), done so the answer can be trusted: a
random query parameter and no-cache headers make every attempt reach the origin, a browser
User-Agent shows whether a bot rule is involved, and the attempts start staggered so the
step costs about ``spacing * attempts`` plus one timeout, not one timeout per attempt.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

from badgateway.checks import place_judgement, places
from badgateway.checks.attempt import Attempt, AttemptDict, ErrorKind, ErrorPhase
from badgateway.checks.causes import BEHIND_THE_PROXY
from badgateway.checks.context import ProbeContext
from badgateway.checks.fingerprint import Fingerprint, FingerprintDict, identify_attempt
from badgateway.checks.http_probe import BOT_USER_AGENT, BROWSER_USER_AGENT, cache_busted, fetch
from badgateway.checks.http_status import GATEWAY_STATUSES, server_failed
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.readable import ms_text
from badgateway.checks.settings import Site
from badgateway.checks.steps import Parts, Step

NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache"}


class ReloadDetails(TypedDict):
    attempts: list[AttemptDict]  # in the order they were started; the browser's last
    fingerprints: list[FingerprintDict]  # one per attempt
    producer: str | None  # who made most of the answers
    address: str | None  # the address dialled
    places: NotRequired[list[places.PlaceRow]]  # one row per place, when run from several


@dataclass(frozen=True)
class Outcome:
    """One attempt judged: ``failed`` or not, and what it is evidence of."""

    attempt: Attempt
    fingerprint: Fingerprint
    failed: bool
    label: str  # "200", "502 from nginx", "connection refused"…; groups like failures
    code: str  # finding code this outcome contributes to when failures are consistent
    cause: Cause | None
    weight: Weight


def judge(attempt: Attempt, fingerprint: Fingerprint) -> Outcome:
    """Decide whether one attempt failed and what it points at."""
    status = attempt.status
    by = f" from {fingerprint.producer}" if fingerprint.producer else ""
    if status is not None:
        if server_failed(status):
            cause = fingerprint.cause_hint
            if cause is None and status == 500 and not fingerprint.generated:
                # A 500 that is not a proxy's own page: the application's own error.
                cause = Cause.SERVER_ERROR
            return Outcome(
                attempt,
                fingerprint,
                True,
                f"{status}{by}",
                "http_error",
                cause,
                Weight.INFERRED,
            )
        if status in (403, 406, 429) and fingerprint.cause_hint is Cause.BLOCKED:
            return Outcome(
                attempt,
                fingerprint,
                True,
                f"{status} block page{by}",
                "blocked",
                Cause.BLOCKED,
                Weight.INFERRED,
            )
        if status in (401, 403):
            # Refused, not failed: the site (its proxy, a WAF, the app) answers, but not with
            # the page. Called a block only when every attempt gets it (see _findings).
            return Outcome(
                attempt,
                fingerprint,
                True,
                f"{status} {attempt.reason or 'refused'}{by}".strip(),
                "blocked",
                Cause.BLOCKED,
                Weight.INFERRED,
            )
        return Outcome(attempt, fingerprint, False, str(status), "http_ok", None, Weight.OBSERVED)
    error = attempt.error
    kind = error["kind"] if error else ErrorKind.OTHER
    phase = error["phase"] if error else None
    if kind is ErrorKind.REFUSED:
        return Outcome(
            attempt,
            fingerprint,
            True,
            "connection refused",
            "edge_refused",
            Cause.UNREACHABLE,
            Weight.OBSERVED,
        )
    if kind is ErrorKind.UNREACHABLE:
        return Outcome(
            attempt,
            fingerprint,
            True,
            "host unreachable",
            "edge_unreachable",
            Cause.UNREACHABLE,
            Weight.INFERRED,
        )
    if kind is ErrorKind.TIMEOUT and phase is ErrorPhase.CONNECT:
        # Consistent with a silent drop; the firewall step owns the strong evidence.
        return Outcome(
            attempt,
            fingerprint,
            True,
            "connect timed out",
            "edge_connect_timeout",
            Cause.FIREWALL_DROP,
            Weight.HINT,
        )
    if kind is ErrorKind.TLS:
        return Outcome(
            attempt,
            fingerprint,
            True,
            "TLS failed",
            "tls_failed",
            Cause.TLS_ERROR,
            Weight.INFERRED,
        )
    if kind is ErrorKind.TIMEOUT:
        return Outcome(
            attempt, fingerprint, True, "no answer in time", "no_answer", None, Weight.HINT
        )
    if kind is ErrorKind.PROTOCOL and phase is ErrorPhase.RESPONSE:
        # Bytes came back but no HTTP status line (nginx relays an app's non-HTTP answer as
        # HTTP/0.9): the app behind the proxy does not speak HTTP on that port.
        return Outcome(
            attempt,
            fingerprint,
            True,
            "an answer without an HTTP status line",
            "no_status_line",
            Cause.UPSTREAM_INVALID,
            Weight.INFERRED,
        )
    words = {ErrorKind.CLOSED: "connection closed", ErrorKind.RESET: "connection reset"}
    label = words.get(kind, kind.value)
    return Outcome(attempt, fingerprint, True, label, "no_answer", None, Weight.HINT)


def _describe(outcome: Outcome) -> str:
    attempt = outcome.attempt
    if attempt.status is not None:
        return outcome.label
    message = attempt.error["message"] if attempt.error else ""
    return f"{outcome.label} ({message})" if message else outcome.label


def _unexplained_gateway(outcome: Outcome) -> str:
    """What a gateway error whose page names no cause still tells: which layer answered."""
    who = outcome.fingerprint.producer or "a proxy"
    return (
        f"{who} is up and answering, but gets no valid answer from what is behind it "
        "(its app or backend); its page does not say why"
    )


def _how_to_see_behind(outcome: Outcome, site: Site | None) -> str:
    who = outcome.fingerprint.producer or "the proxy"
    if site is not None and site.logs:
        return (
            f"Look at {who}'s error log for the failing requests (the logs step names what it "
            f"read); if it is not among the site's logs, add it."
        )
    return (
        f"Add {who}'s error log (logs = [...]) and its app's address (upstreams = [...]) to "
        "the site in the sites file, so the diagnosis can see why it fails."
    )


def _findings(outcomes: list[Outcome], site: Site | None = None) -> tuple[str, list[Finding]]:
    total = len(outcomes)
    failed = [o for o in outcomes if o.failed]
    passed = [o for o in outcomes if not o.failed]
    findings: list[Finding] = []
    redirect_refused = [o for o in outcomes if o.attempt.error_kind is ErrorKind.REFUSED_BY_GUARD]
    if redirect_refused:
        error = redirect_refused[0].attempt.error
        findings.append(
            Finding(
                "redirect_not_followed",
                error["message"] if error else "",
                Status.OK,
                data={"count": len(redirect_refused)},
            )
        )
    statuses = ", ".join(o.label for o in outcomes)
    if not failed:
        summary = f"all {total} attempts answered ({statuses})"
        findings.insert(
            0,
            Finding(
                "http_ok",
                f"All {total} attempts answered without a server error ({statuses})",
                Status.OK,
                Cause.HEALTHY,
                Weight.OBSERVED,
                {"count": total},
            ),
        )
        return summary, findings
    if passed and all(o.code == "blocked" for o in failed) and not _same_agents(failed, passed):
        summary = f"{len(failed)} of {total} attempts were blocked; the other client got through"
        findings.insert(
            0,
            Finding(
                "blocked",
                f"{len(failed)}× {failed[0].label} for User-Agent {failed[0].attempt.user_agent!r}"
                f", while {passed[0].attempt.user_agent!r} got {passed[0].label}",
                Status.WARN,
                Cause.BLOCKED,
                Weight.INFERRED,
                {"count": len(failed)},
            ),
        )
        return summary, findings
    if passed:
        order = ", ".join(("ok " if not o.failed else "") + o.label for o in outcomes)
        summary = f"{len(failed)} of {total} attempts failed, the others worked"
        findings.insert(
            0,
            Finding(
                "transient",
                f"{len(failed)} of {total} attempts failed and {len(passed)} worked "
                f"(in order: {order})",
                Status.WARN,
                Cause.TRANSIENT,
                Weight.OBSERVED,
                {"count": len(failed)},
            ),
        )
        # What the failing pages name is context for the transient verdict; edge causes are
        # left out because, when some attempts work, the edge evidently accepts traffic.
        for (_label, cause), group in _groups(failed).items():
            if cause in BEHIND_THE_PROXY:
                findings.append(
                    Finding(
                        group[0].code,
                        f"{len(group)}× {_describe(group[0])}: {group[0].fingerprint.reason}",
                        Status.WARN,
                        cause,
                        group[0].weight,
                        {"count": len(group)},
                    )
                )
        return summary, findings
    groups = _groups(failed)
    summary = f"all {total} attempts failed: " + "; ".join(
        f"{len(g)}× {label}" for (label, _c), g in groups.items()
    )
    for (_label, cause), group in groups.items():
        first = group[0]
        message = f"{len(group)} of {total} attempts: {_describe(first)}"
        if first.attempt.status is not None:
            message += f" — {first.fingerprint.reason}"
        data: dict[str, object] = {"count": len(group)}
        if first.fingerprint.request_id:
            data["request_id"] = first.fingerprint.request_id
        if cause is None and first.attempt.status in GATEWAY_STATUSES:
            message += f"; {_unexplained_gateway(first)}"
            data["next_step"] = _how_to_see_behind(first, site)
        findings.insert(
            0, Finding(first.code, message, Status.FAIL, cause, first.weight, dict(data))
        )
    _user_agent_note(outcomes, findings)
    return summary, findings


def _same_agents(a: list[Outcome], b: list[Outcome]) -> bool:
    return bool({o.attempt.user_agent for o in a} & {o.attempt.user_agent for o in b})


def _groups(outcomes: list[Outcome]) -> dict[tuple[str, Cause | None], list[Outcome]]:
    groups: dict[tuple[str, Cause | None], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.label, outcome.cause), []).append(outcome)
    return dict(sorted(groups.items(), key=lambda item: len(item[1])))


def _user_agent_note(outcomes: list[Outcome], findings: list[Finding]) -> None:
    """Say so when the browser User-Agent got a different answer than the bot's."""
    labels = Counter(o.label for o in outcomes if o.attempt.user_agent == BOT_USER_AGENT)
    browser = [o.label for o in outcomes if o.attempt.user_agent == BROWSER_USER_AGENT]
    if browser and labels and browser[0] not in labels:
        findings.append(
            Finding(
                "user_agent_differs",
                f"A browser User-Agent got {browser[0]}; the bot got "
                + ", ".join(labels)
                + " (a bot rule may be involved)",
                Status.OK,
            )
        )


async def _staggered(ctx: ProbeContext, delay_s: float, user_agent: str, mark: str) -> Attempt:
    if delay_s:
        await asyncio.sleep(delay_s)
    timeout_s = ctx.probe_timeout()
    # Every connect gives up at the same moment: a dropped SYN is dropped for all of them,
    # so a blackholed site costs one timeout, not one plus the staggering.
    connect_s = max(min(1.0, timeout_s), timeout_s - delay_s)
    return await fetch(
        ctx,
        cache_busted(ctx.target.url, mark),
        user_agent=user_agent,
        headers=dict(NO_CACHE),
        connect_timeout_s=connect_s,
    )


async def run(ctx: ProbeContext) -> StepResult:
    if not ctx.addresses:
        return StepResult(
            "reload",
            Status.SKIPPED,
            f"not tried: {ctx.resolve_error or 'the target has no address'}",
        )
    settings = ctx.settings
    spacing = settings.reload_spacing_s
    # Keep the staggering inside the budget: the last start leaves room for one timeout.
    room = max(0.0, ctx.remaining() - settings.timeout_s - 0.5)
    plan = [BOT_USER_AGENT] * settings.reload_attempts + [BROWSER_USER_AGENT]
    spacing = min(spacing, room / len(plan)) if len(plan) > 1 else 0.0
    marks = [ctx.request_mark(f"r{i + 1}") for i in range(len(plan))]
    attempts = await asyncio.gather(
        *(
            _staggered(ctx, i * spacing, ua, mark)
            for i, (ua, mark) in enumerate(zip(plan, marks, strict=True))
        )
    )
    outcomes = [judge(a, identify_attempt(a)) for a in attempts]
    summary, findings = _findings(outcomes, ctx.target.site)
    producers = [o.fingerprint.producer for o in outcomes if o.fingerprint.producer]
    details: ReloadDetails = {
        "attempts": [a.to_dict() for a in attempts],
        "fingerprints": [o.fingerprint.to_dict() for o in outcomes],
        "producer": Counter(producers).most_common(1)[0][0] if producers else None,
        "address": attempts[0].address,
    }
    sent = [a.as_sent(mark) for mark, a in zip(marks, attempts, strict=True)]
    return StepResult.from_findings("reload", summary, findings, details=details, sent=sent)


async def run_part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """The reload from one place, with that place's own view of the target."""
    return await places.run_at(ctx, place, "reload", run, phases=_typical_phases)


def _typical_phases(result: StepResult) -> dict[str, int]:
    """The median connect and first-byte times of the attempts that got an answer."""
    attempts = cast(ReloadDetails, result.details).get("attempts") or []
    typical: dict[str, int] = {}
    for key, label in (("connect", "connect"), ("ttfb", "first byte")):
        seen = [float(a["phases"][key]) for a in attempts if a.get("phases", {}).get(key)]
        if seen:
            typical[label] = round(statistics.median(seen))
    return typical


def assemble(
    ctx: ProbeContext, parts: Mapping[str, dict[str, Any]], missing: Mapping[str, str]
) -> StepResult:
    """One reload result from every place's: whether it fails everywhere, from some places
    only, or only for the asker; the attempts of every place, each marked with its place."""
    judged = place_judgement.judge(ctx, parts, missing, title="Reload", asker_reports=True)
    attempts: list[AttemptDict] = []
    prints: list[FingerprintDict] = []
    for outcome in judged.found:
        theirs = cast(ReloadDetails, outcome.result.details)
        for attempt in theirs.get("attempts") or []:
            attempts.append(cast(AttemptDict, {**attempt, "place": outcome.place}))
        prints += theirs.get("fingerprints") or []
    producers = [p["producer"] for p in prints if p.get("producer")]
    details: ReloadDetails = {
        "attempts": attempts,
        "fingerprints": prints,
        "producer": Counter(producers).most_common(1)[0][0] if producers else None,
        "address": attempts[0]["address"] if attempts else None,
        "places": judged.rows,
    }
    sent = [r for outcome in judged.found for r in outcome.result.sent]
    return StepResult.from_findings(
        "reload", judged.summary, judged.findings, details=details, sent=sent
    )


def _attempt_line(n: int, attempt: AttemptDict, fingerprint: FingerprintDict | None) -> str:
    """'1. [bot] 502 Bad Gateway · connect 2 ms · first byte 3 ms · total 4 ms · from nginx'"""
    phases = attempt.get("phases") or {}
    timing = " · ".join(
        f"{label} {ms_text(phases[key])}"
        for key, label in (("connect", "connect"), ("tls", "TLS"), ("ttfb", "first byte"))
        if phases.get(key) is not None
    )
    who = "browser" if "Mozilla" in str(attempt.get("user_agent", "")) else "bot"
    if attempt.get("status") is not None:
        what = f"{attempt['status']} {attempt.get('reason') or ''}".strip()
    else:
        error = attempt.get("error")
        kind, message = (error.get("kind", "?"), error.get("message", "")) if error else ("?", "")
        what = f"no answer: {kind} ({message})"
    producer = fingerprint.get("producer") if fingerprint else None
    request_id = fingerprint.get("request_id") if fingerprint else None
    extras = [p for p in (f"from {producer}" if producer else "", request_id or "") if p]
    tail = f" · total {ms_text(phases.get('total'))}" if phases.get("total") is not None else ""
    where = f"{attempt['place']} " if attempt.get("place") else ""
    parts = [f"{n}. [{where}{who}] {what}", timing + tail if timing else tail.lstrip(" ·"), *extras]
    return " · ".join(p for p in parts if p)


def evidence(result: StepResult) -> list[str]:
    """The table of places (when run from several), then one line per attempt: who asked,
    what came back, the timings, who answered."""
    details = cast(ReloadDetails, result.details)
    attempts = details.get("attempts") or []
    prints = details.get("fingerprints") or []
    return places.table_lines(details) + [
        _attempt_line(i + 1, a, prints[i] if i < len(prints) else None)
        for i, a in enumerate(attempts)
    ]


STEP = Step(
    name="reload",
    order=10,
    title="Reload",
    run=run,
    parts=Parts(places=places.probe_places, run=run_part, assemble=assemble, queue=places.QUEUE),
    evidence=evidence,
)
