"""Places to probe from (issue 14): the queues of vantage workers, and the asker's own place.

A vantage worker (``badgateway worker --vantage eu-west``) serves ``probe@eu-west``, the queue
of the probe steps' parts for that place (``checks.steps.Parts(queue="probe")``); it needs
Redis only: it runs a part, stores it, and when it brought the last part hands the step's
assembling and delivery to the default queue (``bgw.assemble``), whose workers hold the sink.

``here`` is the asker's machine: `badgateway diagnose --from` probes from the terminal too,
stores that part itself (``keep_part``), and no job is queued for it.
"""

from __future__ import annotations

from typing import Any

from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.job_kinds import assemble_job
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, QueueHub
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import QueueTuning
from badgateway.checks.context import ProbeContext
from badgateway.checks.place_names import HERE, PLACE_NAME_RULE, is_place_name
from badgateway.checks.places import QUEUE, place_queue
from badgateway.checks.runner import part_places
from badgateway.checks.settings import Settings
from badgateway.checks.steps import step_named

# The probe steps' Parts(queue=...): their part for PLACE goes on probe@PLACE. HERE: the
# asker's own view (a terminal's), which the asker stores itself, never queued.
VANTAGE_QUEUE = QUEUE
__all__ = ["HERE", "VANTAGE_QUEUE", "BadPlace", "keep_part", "late_reason", "vantage_queue"]


class BadPlace(ValueError):
    """``--vantage`` names no usable place; one line."""


def vantage_queue(place: str) -> str:
    """The queue a vantage worker for ``place`` serves; BadPlace for a name that is not one."""
    if not is_place_name(place):
        raise BadPlace(
            f"--vantage {place[:80]!r}: a place is named like the sites file's vantages "
            f'("eu-west": {PLACE_NAME_RULE})'
        )
    return place_queue(place)


def place_of(queue: str) -> str | None:
    """The place a vantage queue is for (``probe@eu-west`` -> ``eu-west``), else None."""
    kind, at, place = queue.partition("@")
    return place if kind == VANTAGE_QUEUE and at and place else None


def late_reason(queue: str, place: str, waited: str) -> str:
    """Why a place's part is missing once the wait for it (``waited``, "8 s") is over."""
    if place == HERE:
        return f"the asker's own probe did not come back within {waited}"
    if place_of(queue) == place:  # shown after the place's name ("no result from us-east: …")
        return f"did not answer within {waited}; is `badgateway worker --vantage {place}` running?"
    return (
        f"no worker on queue {queue} took them within {waited}; is `badgateway worker "
        f"--queues {queue}` running on {place or 'any machine'}?"
    )


async def keep_part(
    store: DiagnosisStore,
    hub: QueueHub,
    request: DiagnosisRequest,
    step: str,
    parts: dict[str, dict[str, Any]],
    settings: Settings,
    tuning: QueueTuning,
) -> bool:
    """Store parts of ``step`` (first stored wins, ``{}`` stores none); when every place's
    part is in, hand the assembling and delivery to the default queue, where the sink is.
    Safe to run twice (the assemble job is keyed, and assembling twice shows once). Returns
    whether every part is in."""
    stored = await store.keep_parts(request.id, step, parts)
    declared = step_named(step)
    if declared is None:
        return False
    places = part_places(declared, ProbeContext.from_dict(request.context, settings))
    if any(place not in stored for place in places):
        return False  # the last part's bringer hands over
    await hub.get(DEFAULT_QUEUE).enqueue(assemble_job(request, step, settings, tuning))
    return True
