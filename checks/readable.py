"""Plain-text wording of the quantities steps show people (not Slack-specific): a time in
milliseconds, a duration such as a TTL."""

from __future__ import annotations


def ms_text(value: float | None) -> str:
    """12.4 -> '12 ms'; None (not measured) -> '?'."""
    return "?" if value is None else f"{float(value):.0f} ms"


def duration_text(seconds: int) -> str:
    """300 -> '300 s (5 min)': TTLs are read by people deciding whether to wait."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds} s ({seconds / 60:.3g} min)"
    if seconds < 172800:
        return f"{seconds} s ({seconds / 3600:.3g} h)"
    return f"{seconds} s ({seconds / 86400:.3g} days)"
