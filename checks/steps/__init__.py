"""The troubleshooting steps. Each module here defines ``STEP = Step(...)``: one file per check.

Adding a check means adding a module with a ``STEP``; nothing else lists them. Steps run
independently of each other (concurrently) and are shown in ``order``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from badgateway.checks.context import ProbeContext
from badgateway.checks.model import StepResult

StepRun = Callable[[ProbeContext], Awaitable[StepResult]]

ANYWHERE = ""  # the place of a part that any machine can run

# A step's readable evidence: a few plain-text lines from its result (its details), not a
# data dump; renderers cap and escape them.
EvidenceReader = Callable[[StepResult], list[str]]

PartRun = Callable[[ProbeContext, str], Awaitable[dict[str, Any]]]
# (context, the parts each place returned, why a place returned none) -> the step's result
PartsAssemble = Callable[
    [ProbeContext, Mapping[str, dict[str, Any]], Mapping[str, str]], StepResult
]


@dataclass(frozen=True)
class Parts:
    """How a step whose inputs lie on several machines (log files), or that probes from
    several places (vantages, ``checks.places``), runs as one part per machine or place, so
    that a worker there reads or probes what is there.

    ``places(ctx)`` names the machines (``ANYWHERE``: any); ``run(ctx, place)`` reads what
    lies on one and returns JSON; ``assemble(ctx, parts, missing)`` makes the step's result
    from every part together, so that evidence from two machines can explain each other. A
    part that could not run is in ``missing`` with the reason. The step's own ``run`` is
    what one process does by itself: the parts it can read where it is, assembled.

    ``queue`` names the queues the parts go to: the part for machine HOST goes on
    ``<queue>@HOST``, which only a worker on that machine serves.
    """

    places: Callable[[ProbeContext], tuple[str, ...]]
    run: PartRun
    assemble: PartsAssemble
    queue: str

    def queue_at(self, place: str) -> str | None:
        """The queue of the part for ``place``; None for ``ANYWHERE`` (any worker's)."""
        return None if place == ANYWHERE else f"{self.queue}@{place}"


@dataclass(frozen=True)
class Step:
    name: str  # short id used in JSON, queues and `rerun NAME`
    order: int  # position in the runbook sequence
    title: str  # what a person reads
    run: StepRun
    parts: Parts | None = None  # set when the step's inputs may lie on other machines
    evidence: EvidenceReader | None = None  # None: renderers show the details generically


@cache
def all_steps() -> tuple[Step, ...]:
    found: list[Step] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        step = getattr(module, "STEP", None)
        if isinstance(step, Step):
            found.append(step)
    return tuple(sorted(found, key=lambda s: s.order))


def step_named(name: str) -> Step | None:
    return next((s for s in all_steps() if s.name == name), None)


def step_names() -> list[str]:
    return [s.name for s in all_steps()]
