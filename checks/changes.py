"""What changed since a target last worked: its snapshot now against its last healthy one.

``changes_since`` compares the facts of two snapshots (checks.baseline) one by one and says,
for each that differs, between which times it changed: the last time a kept snapshot still
showed the old value, the first time one showed the new. Each change lies in a layer of
checks.causes' table; a change where the verdict's cause lies is strong evidence (a failure
at the edge right after the certificate was replaced), the others are context.
``with_changes`` puts them into a failing diagnosis's verdict: the strong ones into its
summary, evidence and next steps, all of them into ``Verdict.changes``. Pure functions;
where the snapshots are kept is the bot's business.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from datetime import datetime

from badgateway.checks.baseline import Snapshot, snapshot_of
from badgateway.checks.causes import CATALOGUE, Layer
from badgateway.checks.model import Cause, Change, Diagnosis, Finding, Status, Weight
from badgateway.checks.readable import duration_text

# The layer of each kind of fact (the part of its name before "@"), outside in.
FACT_LAYERS: dict[str, Layer] = {
    "dns.answer": Layer.NAME,
    "dns.addresses": Layer.ANSWER,
    "dns.cname": Layer.ANSWER,
    "edge": Layer.EDGE,
    "tls.certificate": Layer.EDGE,
    "http.producer": Layer.EDGE,
    "header.server": Layer.EDGE,
    "header.via": Layer.WAF,
    "upstream": Layer.APP_SERVER,
    "header.x-powered-by": Layer.APPLICATION,
    "generator": Layer.APPLICATION,
    "http.redirects": Layer.APPLICATION,
}

# A change in one layer that explains a failure in another: a name that now points at an
# address where nothing answers fails at the edge, yet the DNS change is what to undo. A site
# that fails from some places only (reach) is explained by what those places resolve and
# connect to.
_ALSO_EXPLAINS: dict[Layer, tuple[Layer, ...]] = {
    Layer.ANSWER: (Layer.EDGE, Layer.REACH),
    Layer.EDGE: (Layer.REACH,),
}

_CONNECT_WORDS = {
    "open": "accepts connections",
    "refused": "refuses connections",
    "timeout": "drops connections (no answer)",
}
_ANSWER_WORDS = {"ok": "answered", "nxdomain": "says NXDOMAIN", "servfail": "fails (SERVFAIL)"}
_HEADER_NAMES = {"server": "Server", "via": "Via", "x-powered-by": "X-Powered-By"}


def kind_of(fact: str) -> str:
    """ "dns.addresses@127.0.0.1:53" -> "dns.addresses"."""
    return fact.split("@", 1)[0]


def explains(change: Layer, cause: Layer | None) -> bool:
    """Whether a change in layer ``change`` is strong evidence for a cause in ``cause``."""
    return cause is not None and (change is cause or cause in _ALSO_EXPLAINS.get(change, ()))


def changes_since(
    last_good: Snapshot, recent: Sequence[Snapshot], now: Snapshot, cause: Cause
) -> list[Change]:
    """The facts of ``now`` that differ from ``last_good``, outside in. ``recent``: the kept
    snapshots, oldest first, which date each change more closely than ``last_good`` alone."""
    later = [s for s in recent if s != now and _after(s, last_good)]
    cause_layer = CATALOGUE[cause].layer
    found: list[Change] = []
    for fact, now_value in now.facts.items():
        before = last_good.facts.get(fact)
        if before is None or before == now_value or kind_of(fact) not in FACT_LAYERS:
            continue
        seen_before = last_good.taken_at
        position = -1
        for index, snapshot in enumerate(later):
            if snapshot.facts.get(fact) == before:
                seen_before, position = snapshot.taken_at, index
        seen_now = next(
            (s.taken_at for s in later[position + 1 :] if s.facts.get(fact) == now_value),
            now.taken_at,
        )
        layer = FACT_LAYERS[kind_of(fact)]
        message = _message(fact, before, now_value, (last_good, now), (seen_before, seen_now))
        found.append(
            Change(
                fact=fact,
                layer=layer.value,
                message=message,
                before=before,
                now=now_value,
                seen_before_at=seen_before,
                seen_now_at=seen_now,
                at_failing_layer=explains(layer, cause_layer),
            )
        )
    order = list(Layer)
    return sorted(found, key=lambda c: (order.index(Layer(c.layer)), c.fact))


def with_changes(
    diagnosis: Diagnosis, last_good: Snapshot | None, recent: Sequence[Snapshot] = ()
) -> Diagnosis:
    """``diagnosis`` with what changed since ``last_good`` in its verdict (a healthy one is
    returned as it is: there is nothing to explain)."""
    verdict = diagnosis.verdict
    if verdict.cause is Cause.HEALTHY:
        return diagnosis
    now = snapshot_of(diagnosis)
    if last_good is None:
        note = f"{now.target} has not been seen healthy before: nothing to compare with."
        return dataclasses.replace(diagnosis, verdict=dataclasses.replace(verdict, baseline=note))
    changes = changes_since(last_good, recent, now, verdict.cause)
    when = clock_at(last_good.taken_at, now.taken_at)
    counted = f"{len(changes)} change{'s' if len(changes) != 1 else ''}" if changes else "no change"
    note = f"Compared with the last healthy check, at {when}: {counted}."
    strong = [c for c in changes if c.at_failing_layer]
    summary = verdict.summary
    if strong:
        summary += " What changed: " + "; ".join(c.message for c in strong[:3]) + "."
    evidence = verdict.evidence + [
        Finding(
            "changed",
            c.message,
            Status.FAIL,
            verdict.cause,
            Weight.HINT,
            {"fact": c.fact, "before": c.before, "now": c.now},
        )
        for c in strong
    ]
    steps = [_next_step(c, last_good) for c in strong]
    next_steps = list(dict.fromkeys(steps + verdict.next_steps))
    new_verdict = dataclasses.replace(
        verdict,
        summary=summary,
        evidence=evidence,
        next_steps=next_steps,
        changes=changes,
        baseline=note,
    )
    return dataclasses.replace(diagnosis, verdict=new_verdict)


def _message(
    fact: str, before: str, now: str, snapshots: tuple[Snapshot, Snapshot], seen: tuple[str, str]
) -> str:
    """One line: what the fact was and is, and between which times it changed."""
    last_good, latest = snapshots
    seen_before, seen_now = seen
    kind, _, where = fact.partition("@")
    between = (
        f"changed between {clock_at(seen_before, seen_now)} and {clock_at(seen_now, seen_before)}"
    )
    if kind == "dns.addresses":
        ttl = last_good.context.get(f"ttl@{where}")
        ttl_text = f"; TTL {duration_text(int(ttl))}" if isinstance(ttl, int) else ""
        return f"{_record_type(before, now)} {before} → {now} at {where} ({between}{ttl_text})"
    if kind == "dns.cname":
        return f"CNAME chain {before} → {now} at {where} ({between})"
    if kind == "dns.answer":
        was, is_ = _ANSWER_WORDS.get(before, before), _ANSWER_WORDS.get(now, now)
        return f"resolver {where} {was} at {clock_at(seen_before, seen_now)}, {is_} now ({between})"
    if kind in ("edge", "upstream"):
        subject = "upstream " + where if kind == "upstream" else where
        was = "answered" if before == "open" else _CONNECT_WORDS.get(before, before)
        return (
            f"{subject} {was} at {clock_at(seen_before, seen_now)}, "
            f"{_CONNECT_WORDS.get(now, now)} now (since {clock_at(seen_now, seen_now)})"
        )
    if kind == "tls.certificate":
        return f"certificate replaced ({_certificate_detail(last_good, latest)}; {between})"
    if kind.startswith("header."):
        return f"{_HEADER_NAMES.get(kind[7:], kind[7:])} {before} → {now} ({between})"
    if kind == "http.producer":
        return f"answered by {before} → {now} ({between})"
    if kind == "http.redirects":
        return f"redirects {before} → {now} ({between})"
    # The generator tag: "WordPress 6.4 → 6.5", the product named once.
    product, _, version = now.partition(" ")
    if version and before.startswith(product + " "):
        now = version
    return f"{before} → {now} ({between})"


def _certificate_detail(last_good: Snapshot, latest: Snapshot) -> str:
    """What differs in a replaced certificate, as far as the snapshots say."""
    issuer = latest.context.get("tls.issuer")
    if issuer and issuer != last_good.context.get("tls.issuer"):
        return f"new issuer {issuer}"
    expiry = str(latest.context.get("tls.not_after") or "")[:10]
    return "same issuer" + (f", expires {expiry}" if expiry else "")


def _next_step(change: Change, last_good: Snapshot) -> str:
    kind, _, where = change.fact.partition("@")
    if kind.startswith("dns."):
        ttl = last_good.context.get(f"ttl@{where}")
        wait = f"wait up to {_ttl_words(ttl)} (its TTL)" if isinstance(ttl, int) else "wait"
        what = f"{change.before} → {change.now}"
        return f"Roll back the DNS change ({what}) or {wait} for it to spread."
    until = clock_at(change.seen_before_at, change.seen_now_at)
    if kind == "tls.certificate":
        since = clock_at(change.seen_now_at, change.seen_now_at)
        return (
            f"The certificate was replaced between {until} and {since}: check the new one "
            "(names, chain, dates) or put the previous one back."
        )
    if kind == "upstream":
        return (
            f"Upstream {where} answered at {until}: start the app there again, "
            "or point the proxy at where it moved."
        )
    if kind == "edge":
        return f"{where} accepted connections at {until}: start what listened there again."
    return f"Undo or check the change: {change.message}."


def _ttl_words(seconds: int) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _record_type(before: str, now: str) -> str:
    families = set()
    for value in (before + ", " + now).split(", "):
        try:
            families.add(ipaddress.ip_address(value.strip()).version)
        except ValueError:
            continue
    return {frozenset({4}): "A record", frozenset({6}): "AAAA record"}.get(
        frozenset(families), "addresses"
    )


def _after(snapshot: Snapshot, base: Snapshot) -> bool:
    try:
        return _moment(snapshot.taken_at) >= _moment(base.taken_at)
    except ValueError:
        return False


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def clock_at(iso: str, reference: str) -> str:
    """ "12:01:05 UTC", with the date when it is not ``reference``'s day."""
    try:
        moment, ref = _moment(iso), _moment(reference)
    except ValueError:
        return iso
    return moment.strftime("%H:%M:%S UTC" if moment.date() == ref.date() else "%Y-%m-%d %H:%M UTC")
