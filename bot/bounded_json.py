"""JSON from the network, parsed within limits: size, nesting depth and number length.

The standard library's parser recurses once per nesting level (``[`` a thousand deep is a
RecursionError) and turns any run of digits into an int (4,301 digits is a ValueError from
the int-size limit, more digits cost quadratic time). Input from outside — Slack's payloads,
alert webhooks — is checked before it reaches the parser, and every way it can fail is one
``JsonRejected`` with a short reason fit to answer with a 400.
"""

from __future__ import annotations

import json
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100


class JsonRejected(ValueError):
    """The body is not JSON within the limits; the message says why in a few words."""


def _check_depth(text: str, max_depth: int) -> None:
    """Count nesting outside strings without recursing."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonRejected(f"nested deeper than {max_depth} levels")
        elif char in "]}":
            depth -= 1


def _number(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRejected(f"a number longer than {MAX_NUMBER_CHARS} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRejected(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return float(text)


def _constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not JSON")


def loads(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` (UTF-8 when bytes; a leading BOM is allowed) or raise JsonRejected."""
    if len(data) > max_bytes:
        raise JsonRejected(f"larger than {max_bytes} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise JsonRejected("not UTF-8") from None
    else:
        text = data.removeprefix("\ufeff")
    _check_depth(text, max_depth)
    try:
        return json.loads(text, parse_int=_number, parse_float=_float, parse_constant=_constant)
    except JsonRejected:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise JsonRejected(f"not JSON ({reason})") from None
