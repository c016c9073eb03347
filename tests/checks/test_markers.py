"""checks.markers: a marker just before a failure is named in the verdict (summary, evidence,
next step), an older one is context, and a failing verdict says when the failure started."""

from __future__ import annotations

import pytest

from badgateway.checks.baseline import Snapshot
from badgateway.checks.markers import MAX_MARKER_TEXT, Marker, MarkerError, checked, with_markers
from badgateway.checks.model import Cause, Diagnosis, Verdict

WINDOW_S = 2 * 3600


def at(hour: int, minute: int) -> str:
    return f"2026-12-01T{hour:02d}:{minute:02d}:00+00:00"


def failing(started_at: str, cause: Cause = Cause.UPSTREAM_REFUSED) -> Diagnosis:
    verdict = Verdict(cause, "The app refuses connections.", ["Start the app."])
    return Diagnosis("shop", "http://shop.test/", verdict, [], 10, started_at, site="shop")


def snap(when: str, healthy: bool) -> Snapshot:
    return Snapshot("shop", when, healthy, "healthy" if healthy else "upstream_refused")


DEPLOY = Marker("shop", "deployed shop v1.2.3", at(12, 1), "CI", "deploy")


def test_a_marker_just_before_the_first_failure_is_named_with_its_time() -> None:
    good, first_bad = snap(at(11, 58), True), snap(at(12, 5), False)
    now = failing(at(12, 20))
    shown = with_markers(now, [DEPLOY], WINDOW_S, good, [good, first_bad]).verdict
    line = "deployed shop v1.2.3 by CI at 12:01:00 UTC, 4 min before the first failure"
    assert shown.summary == f"The app refuses connections. Just before it started: {line}."
    assert shown.next_steps[0] == (
        "Roll back “deployed shop v1.2.3” (deployed shop v1.2.3 by CI at 12:01:00 UTC) "
        "or check its change."
    )
    assert shown.next_steps[1:] == ["Start the app."]
    [evidence] = [f for f in shown.evidence if f.code == "marker"]
    assert evidence.message == line and evidence.data["by"] == "CI"
    assert "Last good check 11:58:00 UTC → first failure 12:05:00 UTC." in shown.baseline


def test_an_older_marker_is_context_and_a_later_one_is_not_blamed() -> None:
    old = Marker("shop", "moved DNS to the new provider", at(8, 0), "ann")
    after = Marker("shop", "restarted the app", at(12, 30), "bob")
    shown = with_markers(failing(at(12, 10)), [after, old], WINDOW_S).verdict
    assert "Just before" not in shown.summary and shown.next_steps == ["Start the app."]
    assert shown.baseline == "Earlier: moved DNS to the new provider by ann at 08:00:00 UTC."
    assert "restarted" not in shown.baseline


def test_the_window_is_a_setting_and_a_healthy_verdict_is_left_alone() -> None:
    assert "Just before" not in with_markers(failing(at(12, 10)), [DEPLOY], 60).verdict.summary
    healthy = Verdict(Cause.HEALTHY, "Fine.", [])
    ok = Diagnosis("shop", "http://shop.test/", healthy, [], 10, at(12, 10), site="shop")
    assert with_markers(ok, [DEPLOY], WINDOW_S) is ok


@pytest.mark.parametrize(
    ("text", "by", "kind", "when", "named"),
    [
        ("   ", "", "deploy", at(12, 0), "'text'"),
        ("x" * (MAX_MARKER_TEXT + 1), "", "deploy", at(12, 0), "'text' is longer"),
        ("deployed", "y" * 81, "deploy", at(12, 0), "'by' is longer"),
        ("deployed", "", "party", at(12, 0), "'kind' must be one of"),
        ("deployed", "", "deploy", "yesterday", "'at' is not an ISO 8601 time"),
        ("deployed", "", "deploy", "2026-12-01T12:00:00", "time zone"),
    ],
)
def test_a_bad_marker_is_refused_naming_the_field(
    text: str, by: str, kind: str, when: str, named: str
) -> None:
    with pytest.raises(MarkerError, match=named):
        checked("shop", text, when, by=by, kind=kind)


def test_a_marker_round_trips_and_its_text_is_one_line() -> None:
    marker = checked("shop", "deployed\n shop  v2", at(12, 0), by=" CI ", kind="deploy")
    assert marker.text == "deployed shop v2" and marker.by == "CI"
    assert Marker.from_dict(marker.to_dict()) == marker
    with pytest.raises(MarkerError):
        Marker.from_dict({"target": "shop"})
