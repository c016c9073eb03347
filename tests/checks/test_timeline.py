"""checks.timeline: kept checks drawn as status and latency sparklines per time bucket, the
outages they show (cause, start, end, length), changes from one check to the next, markers
within the span, and when a failure going on started."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from badgateway.checks.baseline import Snapshot
from badgateway.checks.markers import Marker
from badgateway.checks.timeline import (
    GLYPH_FAIL,
    GLYPH_MIXED,
    GLYPH_NONE,
    GLYPH_OK,
    IncidentRecord,
    IncidentRecordError,
    ProbePoint,
    Started,
    started_before,
    timeline,
)

UNTIL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def snap(
    hour: int, minute: int, healthy: bool, total_ms: float = 100.0, server: str = "a"
) -> Snapshot:
    return Snapshot(
        "shop",
        f"2026-12-01T{hour:02d}:{minute:02d}:00+00:00",
        healthy,
        "healthy" if healthy else "upstream_refused",
        facts={"header.server": server},
        context={"phases_ms": {"total": total_ms}},
    )


def test_each_bucket_shows_the_worst_and_latency_is_scaled_to_the_slowest() -> None:
    checks = [
        snap(8, 10, True, 100),
        snap(9, 10, True, 100),
        snap(9, 40, False, 800),  # hour 9: one good, one failing
        snap(10, 30, False, 800),
        snap(11, 30, True, 200),
    ]
    shown = timeline("shop", checks, [], UNTIL, hours=6, buckets=6)
    assert shown.status == GLYPH_NONE * 2 + GLYPH_OK + GLYPH_MIXED + GLYPH_FAIL + GLYPH_OK
    assert shown.latency == "··▂▅█▃" and shown.latency_max_ms == 800
    assert shown.checks == 5 and shown.first_failure_at is None  # healthy again
    [outage] = shown.outages
    assert (outage.cause, outage.started_at, outage.ended_at, outage.checks) == (
        "upstream_refused",
        "2026-12-01T09:40:00+00:00",
        "2026-12-01T11:30:00+00:00",
        2,
    )
    assert outage.duration_s() == 110 * 60


def test_a_failure_going_on_says_when_it_started_and_checks_outside_the_span_are_left_out() -> None:
    checks = [snap(1, 0, True), snap(10, 0, True), snap(10, 5, False), snap(11, 0, False)]
    deploy = Marker("shop", "deployed v2", "2026-12-01T10:01:00+00:00", "CI", "deploy")
    old = Marker("shop", "old", "2026-11-01T10:01:00+00:00")
    shown = timeline("shop", checks, [old, deploy], UNTIL, hours=3, buckets=3)
    assert shown.checks == 3 and shown.markers == [deploy]
    assert (shown.last_good_at, shown.first_failure_at) == (
        "2026-12-01T10:00:00+00:00",
        "2026-12-01T10:05:00+00:00",
    )
    assert shown.outages[0].ended_at is None
    assert shown.to_dict()["outages"][0]["duration_s"] == 55 * 60


def test_a_fact_changed_between_two_checks_is_listed_with_both_times() -> None:
    checks = [snap(10, 0, True, server="nginx/1.22"), snap(10, 5, False, server="nginx/1.24")]
    [change] = timeline("shop", checks, [], UNTIL).changes
    assert change.message == (
        "Server nginx/1.22 → nginx/1.24 (changed between 10:00:00 UTC and 10:05:00 UTC)"
    )


def test_no_checks_is_an_empty_timeline() -> None:
    shown = timeline("shop", [], [], UNTIL, buckets=4)
    assert (shown.status, shown.latency, shown.latency_max_ms) == ("····", "····", None)
    assert shown.outages == [] and shown.last_good_at is None


def test_an_incident_ended_twice_shows_once_as_it_last_ended() -> None:
    until = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    recovered = IncidentRecord(
        "i1",
        "shop",
        "2026-12-01T11:00:00+00:00",
        "2026-12-01T11:05:00+00:00",
        "upstream_refused",
        "recovered",
    )
    resolved = dataclasses.replace(
        recovered, ended_at="2026-12-01T11:20:00+00:00", ended="resolved by U1"
    )
    old = IncidentRecord(
        "i0",
        "shop",
        "2026-11-29T11:00:00+00:00",
        "2026-11-29T11:05:00+00:00",
        "dns_nxdomain",
        "recovered",
    )
    shown = timeline("shop", [], [], until, incidents=[old, recovered, resolved])
    assert shown.incidents == [resolved]  # the one of two days ago is outside the 24 h
    assert shown.to_dict()["incidents"][0]["duration_s"] == 20 * 60
    with pytest.raises(IncidentRecordError):
        IncidentRecord.from_dict({**recovered.to_dict(), "ended_at": "not a time"})


def test_when_a_reported_failure_started_is_read_off_the_checks_before_it() -> None:
    def snap(at: str, healthy: bool) -> Snapshot:
        return Snapshot("shop", f"2026-12-01T{at}+00:00", healthy, "healthy" if healthy else "x")

    reported = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    checks = [snap("11:00:00", True), snap("11:10:00", False), snap("11:20:00", False)]
    later_ok = [ProbePoint("shop", "2026-12-01T12:05:00+00:00", True, "HTTP 200")]
    found = started_before(checks, later_ok, reported)
    assert found == Started("2026-12-01T11:00:00+00:00", "2026-12-01T11:10:00+00:00")
    # Healthy last, no failing check yet: the report itself is the first failure.
    assert started_before(checks[:1], [], reported) == Started(checks[0].taken_at, None)
    # Only failures kept: the baseline (kept however old) is the last good check.
    old = snap("02:00:00", True)
    assert started_before(checks[1:], [], reported, old) == Started(
        old.taken_at, checks[1].taken_at
    )
    assert started_before(checks[1:], [], reported) is None


def test_a_probe_from_a_place_keeps_its_place_and_the_outage_says_it() -> None:
    point = ProbePoint("shop", "2026-12-01T11:30:00+00:00", False, "HTTP 502", 12.0, "eu-west")
    assert ProbePoint.from_dict(point.to_dict()) == point
    assert ProbePoint.from_dict({**point.to_dict(), "place": None}).place is None  # one place
    shown = timeline("shop", [], [], UNTIL, probes=[point])
    assert [o.cause for o in shown.outages] == ["probe from eu-west: HTTP 502"]


def test_a_round_of_places_is_one_check_and_one_place_down_all_along_is_one_outage() -> None:
    points = []
    for minute in range(10, 20):
        at = f"2026-12-01T11:{minute:02d}:00+00:00"
        points += [
            ProbePoint("shop", at, True, "HTTP 200", 10.0, "eu-west"),
            ProbePoint("shop", at, minute >= 15, "refused", 30.0, "us-east"),
        ]
    shown = timeline("shop", [], [], UNTIL, hours=1, buckets=6, probes=points)
    assert shown.checks == 10  # rounds, not points
    [outage] = shown.outages
    assert outage.cause == "probe from us-east: refused" and outage.checks == 5
    assert outage.started_at == "2026-12-01T11:10:00+00:00"
    assert outage.ended_at == "2026-12-01T11:15:00+00:00"
    assert shown.status[:3] == GLYPH_NONE + GLYPH_MIXED + GLYPH_NONE  # 11:10 to 11:20
    found = started_before([], points, datetime(2026, 12, 1, 11, 30, tzinfo=UTC))
    assert found is not None and found.last_good_at == "2026-12-01T11:19:00+00:00"
