"""checks.changes: what differs from the last healthy snapshot, dated by the kept ones in
between, and how a failing verdict carries it."""

from __future__ import annotations

from dataclasses import replace

from badgateway.checks.baseline import Snapshot
from badgateway.checks.causes import CATALOGUE, Layer
from badgateway.checks.changes import FACT_LAYERS, changes_since, explains, with_changes
from badgateway.checks.model import Cause, Diagnosis, Verdict

DNS = "dns.addresses@127.0.0.1:53"


def snap(
    minute: int, healthy: bool, *, day: int = 1, facts: dict[str, str] | None = None
) -> Snapshot:
    base = {DNS: "203.0.113.7", "header.server": "nginx/1.22", "upstream@127.0.0.1:9000": "open"}
    return Snapshot(
        target="shop",
        taken_at=f"2026-12-{day:02d}T12:{minute:02d}:00+00:00",
        healthy=healthy,
        cause="healthy" if healthy else "unreachable",
        facts={**base, **(facts or {})},
        context={"ttl@127.0.0.1:53": 3600},
    )


def test_a_change_is_dated_by_the_snapshots_kept_since_the_last_good_one() -> None:
    good = snap(1, True)
    still_old = snap(2, False)  # failing for another reason, the record not changed yet
    first_new = replace(snap(3, False), facts={**good.facts, DNS: "198.51.100.2"})
    now = replace(first_new, taken_at="2026-12-01T12:05:00+00:00")
    [change] = changes_since(good, [good, still_old, first_new], now, Cause.UNREACHABLE)
    assert (change.seen_before_at, change.seen_now_at) == (still_old.taken_at, first_new.taken_at)
    assert change.message == (
        "A record 203.0.113.7 → 198.51.100.2 at 127.0.0.1:53 "
        "(changed between 12:02:00 UTC and 12:03:00 UTC; TTL 3600 s (1 h))"
    )
    assert change.layer == "answer" and change.at_failing_layer  # a new address: edge failure


def test_only_a_change_where_the_cause_lies_is_strong_evidence() -> None:
    good = snap(1, True)
    now = snap(
        5, False, facts={"header.server": "nginx/1.24", "upstream@127.0.0.1:9000": "refused"}
    )
    changes = changes_since(good, [good], now, Cause.UPSTREAM_REFUSED)
    assert [(c.fact, c.at_failing_layer) for c in changes] == [
        ("header.server", False),  # outside in: the edge's change is listed first, as context
        ("upstream@127.0.0.1:9000", True),
    ]
    assert changes[0].message == (
        "Server nginx/1.22 → nginx/1.24 (changed between 12:01:00 UTC and 12:05:00 UTC)"
    )


def test_a_day_apart_the_times_carry_their_date() -> None:
    good = snap(1, True, day=1, facts={"generator": "WordPress 6.4"})
    now = snap(1, False, day=3, facts={"generator": "WordPress 6.5"})
    [change] = changes_since(good, [good], now, Cause.SERVER_ERROR)
    assert change.message == (
        "WordPress 6.4 → 6.5 (changed between 2026-12-01 12:01 UTC and 2026-12-03 12:01 UTC)"
    )


def test_every_fact_kind_has_a_layer() -> None:
    assert set(FACT_LAYERS.values()) <= set(Layer)
    assert "edge" in FACT_LAYERS and "upstream" in FACT_LAYERS


def diagnosis(cause: Cause, started_at: str) -> Diagnosis:
    verdict = Verdict(cause, "Something fails.", ["Look at it."])
    return Diagnosis("shop", "http://shop.test/", verdict, [], 10, started_at, site="shop")


def test_a_failing_verdict_carries_its_changes_and_a_healthy_one_is_untouched() -> None:
    healthy = diagnosis(Cause.HEALTHY, "2026-12-01T12:05:00+00:00")
    assert with_changes(healthy, snap(1, True)) is healthy

    failing = diagnosis(Cause.UNREACHABLE, "2026-12-01T12:05:00+00:00")
    never = with_changes(failing, None)
    assert never.verdict.changes == []
    assert never.verdict.baseline == (
        "shop has not been seen healthy before: nothing to compare with."
    )
    # This diagnosis's steps recorded nothing: nothing to compare, and it says so.
    compared = with_changes(failing, snap(1, True))
    assert compared.verdict.changes == []
    assert compared.verdict.baseline == (
        "Compared with the last healthy check, at 12:01:00 UTC: no change."
    )
    assert compared.verdict.summary == "Something fails."


def test_what_places_resolve_and_reach_explains_a_regional_failure() -> None:
    assert explains(Layer.ANSWER, Layer.REACH) and explains(Layer.EDGE, Layer.REACH)
    assert not explains(Layer.APPLICATION, Layer.REACH)
    assert not explains(Layer.ANSWER, CATALOGUE[Cause.CLIENT_SIDE].layer)  # no layer
