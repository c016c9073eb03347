"""Judging a site from its places' probes: the quorum, unknown places, and the words."""

from __future__ import annotations

from badgateway.bot.alerts import messages
from badgateway.bot.alerts.places import (
    ProbeOutcome,
    changed,
    combine,
    outcome_from_dict,
    outcome_to_dict,
    where,
)
from badgateway.bot.alerts.store import Incident

DOWN = ProbeOutcome(False, "HTTP 502 Bad Gateway from http://shop/", {"failure": ["HTTP 502"]})
REFUSED = ProbeOutcome(False, "connection refused (http://shop/)", {"failure": ["refused"]})
FINE = ProbeOutcome(True, "HTTP 200 OK from http://shop/", total_ms=12.0)


def test_one_place_failing_of_three_is_not_enough_for_the_default_quorum() -> None:
    judged = combine({"eu-west": FINE, "us-east": DOWN, "ap-south": FINE}, 2)
    assert judged is not None and judged.ok
    assert judged.places == {"eu-west": "fine", "us-east": "down", "ap-south": "fine"}


def test_failing_from_the_quorum_fails_and_says_from_where() -> None:
    judged = combine({"eu-west": DOWN, "us-east": DOWN, "ap-south": FINE}, 2)
    assert judged is not None and not judged.ok
    assert judged.what == (
        "HTTP 502 Bad Gateway from http://shop/ (down from eu-west, us-east; fine from ap-south)"
    )
    assert judged.facts == {"failure": ["HTTP 502"]}  # the same fact once


def test_places_that_saw_different_failures_are_named_each() -> None:
    judged = combine({"eu-west": DOWN, "us-east": REFUSED}, 2)
    assert judged is not None and not judged.ok
    assert judged.what.startswith("eu-west: HTTP 502 Bad Gateway from http://shop/; us-east: ")
    assert judged.facts == {"failure": ["HTTP 502", "refused"]}


def test_a_place_that_did_not_answer_is_unknown_not_failing() -> None:
    judged = combine({"eu-west": DOWN, "us-east": None, "ap-south": FINE}, 2)
    assert judged is not None and judged.ok
    assert where(judged.places) == "down from eu-west; fine from ap-south; no answer from us-east"
    # Too few failing and none working: nothing to judge (the streak is left as it is).
    assert combine({"eu-west": DOWN, "us-east": None}, 2) is None
    assert combine({"eu-west": None, "us-east": None}, 2) is None


def test_the_only_place_is_the_quorum() -> None:
    judged = combine({"eu-west": DOWN}, 1)
    assert judged is not None and not judged.ok


def test_a_place_moving_between_down_and_fine_is_news_going_quiet_is_not() -> None:
    before = {"eu-west": "down", "us-east": "down", "ap-south": "fine"}
    now = {"eu-west": "fine", "us-east": "no answer", "ap-south": "down"}
    assert changed(before, now) == {"fine": ["eu-west"], "down": ["ap-south"]}
    assert changed(now, now) == {}


def test_an_outcome_travels_as_json_and_nonsense_is_no_answer() -> None:
    back = outcome_from_dict(outcome_to_dict(DOWN))
    assert back is not None and back.what == DOWN.what and back.facts == DOWN.facts
    assert outcome_from_dict({"ok": "yes"}) is None
    assert outcome_from_dict(None) is None
    assert outcome_from_dict([1]) is None


def test_the_root_and_the_resolve_note_say_from_where() -> None:
    incident = Incident.new("shop", "https://shop/", "C0OPS", since=1000.0, opened_at=1000.0)
    incident.places = {"eu-west": "down", "us-east": "down", "ap-south": "fine"}
    where_line = "*Where:* down from eu-west, us-east; fine from ap-south"
    assert where_line in messages.root_text(incident, None, 1060.0).splitlines()
    resolved = messages.resolved_note(incident, "U0BOB0001", "resolved", 1600.0)
    assert resolved.endswith("after 10 min — down from eu-west, us-east; fine from ap-south")
    moved = messages.places_moved_note(incident, {"fine": ["us-east"], "down": ["ap-south"]})
    assert moved.splitlines()[:2] == [
        ":large_green_circle: Fine again from us-east",
        ":red_circle: Now down from ap-south too",
    ]
    # A site probed from one place says nothing of places.
    incident.places = {}
    assert "Where" not in messages.root_text(incident, None, 1060.0)
    assert messages.recovered_note(incident, 1600.0).endswith("recovered after 10 min")
