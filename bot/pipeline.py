"""How a diagnosis travels: a request, a carrier that runs its steps, a sink that shows results.

One code path for the work (``checks.runner``: ``run_steps`` in one process, ``run_step`` per
queue job; ``conclude`` at the end) and
two ways to carry it: ``InProcessCarrier`` here (no Redis: the CLI shell, small installs) and
the SAQ-backed carrier in ``bot.queue`` (workers on other machines).

Delivery may be at-least-once (a queue re-runs a job whose worker died), so a sink must be
idempotent: the same step result for the same request may arrive twice and must show once.
It must also take a step result that arrives after the verdict (in-process, step results are
delivered beside the run, and the verdict as soon as it is known).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from badgateway.bot import metrics
from badgateway.checks.context import ProbeContext, new_mark
from badgateway.checks.model import Diagnosis, Finding, Status, StepResult
from badgateway.checks.runner import conclude, run_steps
from badgateway.checks.settings import Settings
from badgateway.checks.steps import all_steps, step_named

log = logging.getLogger(__name__)


@dataclass
class DiagnosisRequest:
    """Everything a worker needs to run a diagnosis and route its results."""

    id: str
    context: dict[str, Any]  # ProbeContext.to_dict(): the target and its vetted addresses
    steps: list[str]  # step names to run now (all, or e.g. ["dns"] for `rerun dns`)
    origin: dict[str, Any] = field(default_factory=dict)  # where results go; opaque here
    previous: list[dict[str, Any]] = field(default_factory=list)  # kept results on partial rerun
    created_at: float = field(default_factory=time.time)

    @classmethod
    def new(
        cls,
        ctx: ProbeContext,
        *,
        steps: list[str] | None = None,
        origin: dict[str, Any] | None = None,
        previous: list[StepResult] | None = None,
    ) -> DiagnosisRequest:
        return cls(
            id=uuid.uuid4().hex,
            # Each run marks its own requests, even when the context is reused (an incident).
            context={**ctx.to_dict(), "mark": new_mark()},
            steps=steps or [s.name for s in all_steps()],
            origin=origin or {},
            previous=[r.to_dict() for r in previous or []],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "context": self.context,
            "steps": self.steps,
            "origin": self.origin,
            "previous": self.previous,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiagnosisRequest:
        return cls(
            id=d["id"],
            context=d["context"],
            steps=list(d["steps"]),
            origin=dict(d.get("origin") or {}),
            previous=list(d.get("previous") or []),
            created_at=float(d.get("created_at", time.time())),
        )


def trigger(request: DiagnosisRequest) -> str:
    """What made this diagnosis run (bot.metrics.TRIGGERS), from its origin."""
    return str(request.origin.get("trigger") or "other")


def observe_step(result: StepResult) -> None:
    """A step ran: its duration (measured by checks.runner) goes to the step histogram."""
    metrics.observe_step(result.name, result.status.value, result.duration_ms)


def count_verdict(request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
    """A diagnosis concluded: counted by its cause and its trigger."""
    metrics.count_diagnosis(diagnosis.verdict.cause.value, trigger(request))


class ResultSink(Protocol):
    """Where results go (a Slack thread, a terminal). Must tolerate repeated calls."""

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None: ...

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None: ...


class LoggingSink:
    """A ResultSink that writes to the log: a worker's, when no chat tool is configured."""

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        log.warning("diagnosis %s: step %s: %s", request.id, result.name, result.summary)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        verdict = diagnosis.verdict
        log.warning("diagnosis %s: %s: %s", request.id, verdict.cause.value, verdict.summary)


class DiagnosisHistory(Protocol):
    """Compares a finished diagnosis with its target's history and keeps it
    (bot.history_store.HistoryKeeper)."""

    async def compare_and_keep(self, diagnosis: Diagnosis, run: str = "") -> Diagnosis: ...

    async def aclose(self) -> None: ...


class HistorySink:
    """A ResultSink that says what changed: each verdict is compared with its target's
    history (and its snapshot kept) before ``inner`` shows it. Delivered twice, it keeps one
    snapshot and shows the same comparison (the history store sees to that)."""

    def __init__(self, inner: ResultSink, history: DiagnosisHistory) -> None:
        self.inner = inner
        self.history = history

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        await self.inner.step_finished(request, result)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        compared = await self.history.compare_and_keep(diagnosis, request.id)
        await self.inner.diagnosis_finished(request, compared)

    async def aclose(self) -> None:
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()
        await self.history.aclose()


class Carrier(Protocol):
    """Runs a request's steps somewhere and feeds the sink."""

    async def submit(self, request: DiagnosisRequest) -> None: ...

    async def close(self) -> None: ...


def failed_step_result(step_name: str, attempts: int, error: str) -> StepResult:
    """The dead-letter record a thread shows instead of silence."""
    message = f"step {step_name} failed after {attempts} tries: {error}"
    return StepResult(
        step_name, Status.ERROR, message, [Finding("step_dead_letter", message, Status.ERROR)]
    )


def combine(request: DiagnosisRequest, results: list[StepResult], settings: Settings) -> Diagnosis:
    """Conclude a request: its new results plus the kept ones from before a partial rerun."""
    fresh = {r.name for r in results}
    kept = [StepResult.from_dict(d) for d in request.previous if d["name"] not in fresh]
    ctx = ProbeContext.from_dict(request.context, settings)
    started = datetime.fromtimestamp(request.created_at, UTC)
    return conclude(ctx, kept + results, started)


class InProcessCarrier:
    """Runs diagnoses as asyncio tasks in this process; ``drain`` waits for them all.

    A sink call that fails (the chat service down past its own retries) is tried again with
    backoff, as a queue would retry the job: the sink is idempotent, so a retry never shows
    a result twice. What still fails after the last try is logged, and the diagnosis goes on.
    """

    def __init__(
        self,
        settings: Settings,
        sink: ResultSink,
        *,
        sink_tries: int = 4,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.sink_tries = sink_tries
        self.retry_delay_s = retry_delay_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def _deliver(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        for attempt in range(1, self.sink_tries + 1):
            try:
                await call()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if attempt == self.sink_tries:
                    log.exception("%s: not shown after %d tries", what, attempt)
                    return
                log.warning("%s: try %d failed; retrying", what, attempt, exc_info=True)
                await asyncio.sleep(self.retry_delay_s * 2 ** (attempt - 1))

    async def submit(self, request: DiagnosisRequest) -> None:
        task = asyncio.create_task(self._run(request), name=f"diagnosis-{request.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: DiagnosisRequest) -> None:
        ctx = ProbeContext.from_dict(request.context, self.settings)
        steps = [s for s in (step_named(n) for n in request.steps) if s is not None]

        deliveries: list[asyncio.Task[None]] = []

        async def forward(result: StepResult) -> None:
            observe_step(result)
            # Delivered beside the probes, not in their way: showing a step in many threads
            # under Slack's limits may take longer than the whole diagnosis.
            deliveries.append(
                asyncio.create_task(
                    self._deliver(
                        f"diagnosis {request.id} step {result.name}",
                        lambda: self.sink.step_finished(request, result),
                    )
                )
            )

        try:
            results = await run_steps(ctx, steps, on_step=forward)
            diagnosis = combine(request, results, self.settings)
            count_verdict(request, diagnosis)
            # The verdict is known now; the sink posts it in each thread after that thread's
            # steps (a step not shown yet is shown first), so it need not wait for them.
            await self._deliver(
                f"diagnosis {request.id} verdict",
                lambda: self.sink.diagnosis_finished(request, diagnosis),
            )
            await asyncio.gather(*deliveries)
        finally:  # cancelled (close): no delivery outlives its run
            for delivery in deliveries:
                delivery.cancel()

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
