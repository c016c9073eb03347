"""The troubleshooting steps. Each module here defines ``STEP = Step(...)``: one file per check.

Adding a check means adding a module with a ``STEP``; nothing else lists them. Steps run
independently of each other (concurrently) and are shown in ``order``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache

from checks.context import ProbeContext
from checks.model import StepResult

StepRun = Callable[[ProbeContext], Awaitable[StepResult]]


@dataclass(frozen=True)
class Step:
    name: str  # short id used in JSON, queues and `rerun NAME`
    order: int  # position in the runbook sequence
    title: str  # what a person reads
    run: StepRun
    routing: str = "default"  # queue family; "logs" jobs may run on the host holding the logs


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
