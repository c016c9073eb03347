"""Elapsed time as probes record it: whole milliseconds since a ``time.monotonic()`` start."""

from __future__ import annotations

import time


def ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
