"""Run a diagnosis: vet and resolve the target once, run the steps concurrently within a
budget, and conclude with a verdict. A crash inside a step is that step's ``error``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import TargetRefused, check_address
from badgateway.checks.model import Diagnosis, Finding, Status, StepResult
from badgateway.checks.resolve import ResolveFailed, resolve_host
from badgateway.checks.settings import Settings
from badgateway.checks.steps import ANYWHERE, Step, all_steps
from badgateway.checks.target import BadTarget, Target, parse_target
from badgateway.checks.verdict import decide

log = logging.getLogger(__name__)

OnStep = Callable[[StepResult], Awaitable[None] | None]


class UnknownPlace(BadTarget):
    """``from PLACE`` names no place the sites file lists for the target."""


def choose_places(
    target: Target, settings: Settings, only: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The places to probe ``target`` from: the site's (or the file's) vantages, limited to
    ``only`` when the asker named some; UnknownPlace names a place that is not listed."""
    listed = settings.vantages_for(target.site)
    if not only:
        return listed
    unknown = [p for p in only if p not in listed]
    if unknown:
        known = ", ".join(listed) or "none are configured (`vantages` in the sites file)"
        raise UnknownPlace(f"unknown place {', '.join(unknown)}; the places are: {known}")
    return tuple(dict.fromkeys(only))


async def prepare(
    target: Target | str, settings: Settings, places: Sequence[str] | None = None
) -> ProbeContext:
    """Parse, resolve and vet the target. Raises BadTarget or TargetRefused before any probe.

    A name that does not resolve is not refused: the DNS step explains it, and the other
    steps skip what needs an address. ``places`` limits the run to some of the target's
    vantages (``/502 shop from eu-west``).
    """
    if isinstance(target, str):
        target = parse_target(target, settings)
    ctx = ProbeContext(
        target=target, settings=settings, places=choose_places(target, settings, places)
    )
    try:
        addresses = await resolve_host(target.host, settings.resolvers, settings.timeout_s)
    except ResolveFailed as exc:
        ctx.resolve_error, ctx.resolve_kind = str(exc), exc.kind
        return ctx
    for address in addresses:
        check_address(address, settings.allow_networks, host=target.host)
    if not addresses:
        raise TargetRefused(f"{target.host} resolved to no address")
    ctx.addresses = tuple(addresses)
    return ctx


async def run_step(step: Step, ctx: ProbeContext) -> StepResult:
    """Run one step within the context's deadline; never raises."""
    started = time.monotonic()
    budget = ctx.remaining()
    try:
        result = await asyncio.wait_for(step.run(ctx), timeout=budget)
    except TimeoutError:
        result = StepResult.from_findings(
            step.name,
            f"did not finish within the {budget:.1f} s budget",
            [Finding("step_timeout", f"{step.title} ran out of time", Status.ERROR)],
        )
        result.status = Status.ERROR
    except Exception as exc:  # a bug or surprise in one step must not sink the diagnosis
        log.exception("step %s crashed", step.name)
        result = crashed(step, exc)
    result.duration_ms = round((time.monotonic() - started) * 1000)
    return result


def crashed(step: Step, exc: Exception) -> StepResult:
    """The step's ``error`` result for a crash inside it."""
    return StepResult(
        step.name,
        Status.ERROR,
        f"the check crashed: {type(exc).__name__}: {exc}",
        [Finding("step_crashed", f"{type(exc).__name__}: {exc}", Status.ERROR)],
    )


def part_places(step: Step, ctx: ProbeContext) -> tuple[str, ...]:
    """Where a step's parts must run, when some lie on named machines; () when the step
    runs whole on any machine."""
    if step.parts is None:
        return ()
    try:
        places = step.parts.places(ctx)
    except Exception:  # the step's own run reports the problem
        log.exception("step %s could not name its places", step.name)
        return ()
    return places if any(p != ANYWHERE for p in places) else ()


async def run_part(step: Step, ctx: ProbeContext, place: str) -> dict[str, Any]:
    """Run the part of ``step`` that lies at ``place``; never raises. A part that failed
    comes back as ``{"missing": reason}``, which the assembly shows."""
    assert step.parts is not None
    started = time.monotonic()
    budget = ctx.remaining()
    try:
        part = await asyncio.wait_for(step.parts.run(ctx, place), timeout=budget)
    except TimeoutError:
        part = {"missing": f"did not finish within the {budget:.1f} s budget"}
    except Exception as exc:
        log.exception("part %s@%s crashed", step.name, place)
        part = {"missing": f"the check crashed: {type(exc).__name__}: {exc}"}
    part["duration_ms"] = round((time.monotonic() - started) * 1000)
    return part


def assemble_parts(
    step: Step, ctx: ProbeContext, parts: Mapping[str, dict[str, Any]]
) -> StepResult:
    """The step's result from its parts (as ``run_part`` returned them); never raises."""
    assert step.parts is not None
    ready = {place: part for place, part in parts.items() if "missing" not in part}
    missing = {place: str(part["missing"]) for place, part in parts.items() if "missing" in part}
    try:
        result = step.parts.assemble(ctx, ready, missing)
    except Exception as exc:
        log.exception("step %s could not assemble its parts", step.name)
        result = crashed(step, exc)
    result.duration_ms = max((int(p.get("duration_ms", 0)) for p in parts.values()), default=0)
    return result


class SharedResults:
    """``PeerResults`` in one process: each step's result, shared as it finishes."""

    def __init__(self, steps: Sequence[Step]) -> None:
        loop = asyncio.get_running_loop()
        self._futures: dict[str, asyncio.Future[StepResult]] = {
            step.name: loop.create_future() for step in steps
        }

    def runs(self, step: str) -> bool:
        return step in self._futures

    async def result(self, step: str) -> StepResult:
        return await asyncio.shield(self._futures[step])

    def share(self, result: StepResult) -> None:
        future = self._futures.get(result.name)
        if future is not None and not future.done():
            future.set_result(result)


async def run_steps(
    ctx: ProbeContext, steps: Sequence[Step] | None = None, on_step: OnStep | None = None
) -> list[StepResult]:
    """Run ``steps`` (default: all) concurrently; call ``on_step`` as each finishes.
    Returns results in runbook order."""
    chosen = list(steps or all_steps())
    if not ctx.deadline:
        ctx.deadline = time.monotonic() + ctx.settings.diagnosis_budget_s
    shared = SharedResults(chosen)
    ctx.peers = shared

    async def run_and_share(step: Step) -> StepResult:
        result = await run_step(step, ctx)
        shared.share(result)
        return result

    results: dict[str, StepResult] = {}
    tasks = [asyncio.create_task(run_and_share(step)) for step in chosen]
    for next_done in asyncio.as_completed(tasks):
        result = await next_done
        results[result.name] = result
        if on_step is not None:
            maybe = on_step(result)
            if inspect.isawaitable(maybe):
                await maybe
    return [results[s.name] for s in chosen]


def conclude(ctx: ProbeContext, results: list[StepResult], started_at: datetime) -> Diagnosis:
    """Pure: step results in, Diagnosis (with its verdict) out."""
    elapsed = datetime.now(UTC) - started_at
    return Diagnosis(
        target=ctx.target.raw,
        url=ctx.target.url,
        verdict=decide(results),
        steps=sorted(results, key=_order),
        duration_ms=round(elapsed.total_seconds() * 1000),
        started_at=started_at.isoformat(timespec="seconds"),
        site=ctx.target.site.name if ctx.target.site else None,
    )


def _order(result: StepResult) -> int:
    return next((s.order for s in all_steps() if s.name == result.name), 1000)


async def diagnose(
    target: Target | str | ProbeContext,
    settings: Settings,
    on_step: OnStep | None = None,
) -> Diagnosis:
    """The whole sequence for one target. Raises BadTarget/TargetRefused on bad input only."""
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    ctx = target if isinstance(target, ProbeContext) else await prepare(target, settings)
    ctx.deadline = t0 + settings.diagnosis_budget_s
    results = await run_steps(ctx, on_step=on_step)
    return conclude(ctx, results, started_at)
