"""A diagnosis asked from a terminal through the queue (`badgateway diagnose --from`).

The terminal submits the diagnosis like the web process does, probes the steps' parts from
where it runs (place ``here``, the asker's own view: bot.queue.places) while the vantage
workers probe from theirs, stores those parts itself, and reads each step's result from the
store as the workers put it there, until every step is in or the wait is over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from badgateway.bot.config import BotConfig
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.carrier import QueueCarrier
from badgateway.bot.queue.health import require_redis
from badgateway.bot.queue.places import HERE, keep_part
from badgateway.bot.queue.saq_queue import QueueHub
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import StepResult
from badgateway.checks.runner import part_places, run_part
from badgateway.checks.settings import Settings
from badgateway.checks.steps import step_named

RESULT_POLL_S = 0.1  # how often the terminal looks for results the workers stored


class NotAnswered(RuntimeError):
    """The workers did not bring every step within the wait; one line, saying which not."""


def answer_wait_s(config: BotConfig, settings: Settings) -> float:
    """How long the terminal waits for every step: a worker to take the diagnosis, its
    budget, the wait for late places, and the jobs' margin."""
    tuning = config.tuning
    return (
        config.worker_wait_s
        + settings.diagnosis_budget_s
        + tuning.host_wait_s
        + tuning.job_margin_s
    )


async def ask_through_queue(
    config: BotConfig,
    settings: Settings,
    request: DiagnosisRequest,
    on_step: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Submit ``request``, probe its parts from here, and return its results in step order
    (``on_step`` sees each as it comes). Raises RedisUnreachable, NotAnswered."""
    await require_redis(str(config.redis_url), config.tuning)
    tuning = config.tuning
    redis = connect_redis(str(config.redis_url), 8, tuning)
    store = DiagnosisStore(redis, tuning.keep_s)
    hub = QueueHub(redis, tuning)
    carrier = QueueCarrier(config, settings)
    try:
        await carrier.submit(request)
        here = asyncio.create_task(_probe_here(store, hub, request, settings, config))
        try:
            return await _results(store, request, answer_wait_s(config, settings), on_step)
        finally:
            here.cancel()
            await asyncio.gather(here, return_exceptions=True)
    finally:
        await carrier.close()
        await hub.close()


async def _probe_here(
    store: DiagnosisStore,
    hub: QueueHub,
    request: DiagnosisRequest,
    settings: Settings,
    config: BotConfig,
) -> None:
    """The asker's own view: each step's part at ``here``, stored as a vantage's would be.
    Resolved as this machine resolves (BADGATEWAY_VANTAGE_RESOLVERS, else /etc/resolv.conf),
    never with the sites file's resolvers: a person whose resolver answers wrong is one of the
    things ``client_side`` exists to say."""
    own_view = dataclasses.replace(settings, resolvers=config.vantage_resolvers)
    ctx = ProbeContext.from_dict(request.context, own_view)
    ctx.deadline = time.monotonic() + settings.diagnosis_budget_s

    async def one(name: str) -> None:
        step = step_named(name)
        if step is None or HERE not in part_places(step, ctx):
            return
        part = await run_part(step, ctx, HERE)  # within the budget; never raises
        await keep_part(store, hub, request, name, {HERE: part}, settings, config.tuning)

    await asyncio.gather(*(one(name) for name in request.steps))


async def _results(
    store: DiagnosisStore,
    request: DiagnosisRequest,
    wait_s: float,
    on_step: Callable[[StepResult], None] | None,
) -> list[StepResult]:
    deadline = time.monotonic() + wait_s
    seen: dict[str, StepResult] = {}
    while True:
        for name, result in (await store.results(request.id)).items():
            if name in request.steps and name not in seen:
                seen[name] = result
                if on_step is not None:
                    on_step(result)
        if all(name in seen for name in request.steps):
            return [seen[name] for name in request.steps]
        if time.monotonic() > deadline:
            late = ", ".join(name for name in request.steps if name not in seen)
            raise NotAnswered(
                f"no result for {late} within {wait_s:g} s: is `badgateway worker` running "
                "(the default queue) with this Redis?"
            )
        await asyncio.sleep(RESULT_POLL_S)
