"""bounded_json.loads: the inputs that crashed the standard parser are one JsonRejected."""

from __future__ import annotations

import pytest

from badgateway.bot.bounded_json import JsonRejected, loads


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xe8", "not UTF-8"),
        (b"\xef\xbb\xbf", "not JSON"),  # only a BOM
        ("[" * 1000, "nested deeper than 64"),
        ('{"a":' * 500 + "1" + "}" * 500, "nested deeper than 64"),
        ("9" * 4301, "longer than 100 digits"),
        ('{"n": ' + "1" * 4401 + "}", "longer than 100 digits"),
        ("1." + "1" * 200, "longer than 100 characters"),
        ("NaN", "NaN is not JSON"),
        ("[1, 2", "not JSON"),
        (b"x" * (1024 * 1024 + 1), "larger than"),
    ],
)
def test_hostile_inputs_are_rejected_with_a_reason(data: bytes | str, reason: str) -> None:
    with pytest.raises(JsonRejected, match=reason):
        loads(data)


def test_ordinary_json_and_brackets_inside_strings() -> None:
    assert loads(b'\xef\xbb\xbf{"a": [1, 2.5, "[[[{"], "b": null}') == {
        "a": [1, 2.5, "[[[{"],
        "b": None,
    }
    assert loads('"\\"[" ') == '"['
    assert loads("[" * 64 + "]" * 64) is not None
