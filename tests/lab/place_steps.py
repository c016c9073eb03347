"""A lab step probed from every place, for testing the queue's routing of places.

``lab_place`` declares ``Parts(queue="probe")`` like the real probe steps: one part per place
of the context, on ``probe@PLACE``, which only ``badgateway worker --vantage PLACE`` serves.
Each part says which worker ran it and with which resolvers (the vantage's own view, never
the sites file's) and GETs the target URL; the assembly lists them, one finding per place,
and the missing ones with their reason.

The worker processes get it through ``places_sink`` (their BADGATEWAY_SINK, for the default
workers) or by running the CLI as ``python -m tests.lab.place_steps …`` (vantage workers and
terminals, which build no sink).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

import badgateway.checks.steps
from badgateway.bot import cli
from badgateway.bot.config import BotConfig
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Finding, Status, StepResult
from badgateway.checks.resolve import ResolveFailed, resolve_host
from badgateway.checks.steps import Parts, Step
from tests.lab.fixtures_redis import LabSink, install_lab_steps

NAME = "lab_place"


def _places(ctx: ProbeContext) -> tuple[str, ...]:
    return ctx.places


async def _fetch(ctx: ProbeContext) -> str:
    """GET the target at the address this process's resolvers give (as a user there would)."""
    target = ctx.target
    try:
        [address, *_] = await resolve_host(target.host, ctx.settings.resolvers, 1.0)
    except ResolveFailed as exc:
        return f"does not resolve: {exc}"
    url = urlsplit(target.url)._replace(netloc=f"{address}:{target.port}").geturl()
    try:
        async with httpx.AsyncClient(timeout=ctx.probe_timeout()) as client:
            answer = await client.get(url, headers={"Host": target.host})
        return f"HTTP {answer.status_code} from {address}"
    except httpx.HTTPError as exc:
        return f"{address} failed: {type(exc).__name__}"


async def _part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """Which worker ran the part at ``place``, with which resolvers, and what it got."""
    return {
        "worker": os.environ.get("BADGATEWAY_WORKER_NAME", f"pid-{os.getpid()}"),
        "resolvers": list(ctx.settings.resolvers),
        "got": await _fetch(ctx),
    }


def _assemble(
    ctx: ProbeContext, parts: Mapping[str, dict[str, Any]], missing: Mapping[str, str]
) -> StepResult:
    findings = [
        Finding(
            "lab_place",
            f"{place} by {part['worker']} resolving with "
            f"{','.join(part['resolvers']) or 'the system'}: {part['got']}",
        )
        for place, part in sorted(parts.items())
    ]
    findings += [
        Finding("lab_place_missing", f"{place} missing: {reason}", Status.WARN)
        for place, reason in sorted(missing.items())
    ]
    return StepResult.from_findings(NAME, f"{len(parts)} place(s) answered", findings)


async def _run_here(ctx: ProbeContext) -> StepResult:
    return _assemble(ctx, {"": await _part(ctx, "")}, {})


PLACE_STEP = Step(
    NAME, 905, "Lab: from every place", _run_here, Parts(_places, _part, _assemble, "probe")
)


def install_place_step() -> None:
    """The lab steps and ``lab_place`` in ``checks.steps``' registry here (idempotent)."""
    install_lab_steps()
    registry = badgateway.checks.steps.all_steps
    if getattr(registry, "places", False):
        return

    @functools.cache
    def with_place_step() -> tuple[Step, ...]:
        return (*registry(), PLACE_STEP)

    with_place_step.places = True  # type: ignore[attr-defined]
    badgateway.checks.steps.all_steps = with_place_step  # type: ignore[assignment]


def places_sink(config: BotConfig) -> LabSink:
    """A BADGATEWAY_SINK factory: the lab's recording sink, with ``lab_place`` installed."""
    install_place_step()
    return LabSink(config)


if __name__ == "__main__":  # `badgateway …` with the step installed
    install_place_step()
    sys.exit(cli.main())
