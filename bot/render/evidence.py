"""Evidence as a person on call wants to read it: a few lines per step, not a data dump.

What of a step's details matters is the step's to say (``Step.evidence``, in its own
module: per-attempt timings, per-resolver answers, TCP/TLS per address, the classified log
lines, the provider summary). This module only caps the lines, and falls back to the
generic rendering for a step without a reader or with details of an unexpected shape, so
a new check shows its evidence without touching this file. Lines are plain text; the caller
escapes them for the medium.
"""

from __future__ import annotations

from badgateway.checks.model import StepResult
from badgateway.checks.steps import step_named

MAX_LINES = 12


def step_evidence(result: StepResult) -> list[str] | None:
    """Readable evidence lines for a step that has a reader; None to use the generic rendering."""
    step = step_named(result.name)
    if step is None or step.evidence is None:
        return None
    try:
        lines = step.evidence(result)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # details of an unexpected shape: show them generically instead
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"…and {len(lines) - MAX_LINES} more"]
    return lines
