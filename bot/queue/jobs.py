"""What the job kinds (bot.queue.job_kinds) do in a worker.

``bgw.diagnose`` (key: the request id, so a request is queued once) fans out one
``bgw.step`` job per step (key: ``{id}:{step}``) and returns at once, so steps run in
parallel on any worker and no worker slot waits on another. A step job runs its check,
stores the result under the diagnosis id, hands it to the sink, and — if it was the last
one — concludes the diagnosis. Every job may run twice (at-least-once delivery), so each
phase checks what an earlier run already did: a stored result is reused rather than probed
again, a delivered step is not delivered again, and one finisher holds a lease while it
concludes.

A step whose inputs lie on named machines (a site's logs on ``web-1`` and ``app-1``) is
fanned out as one ``bgw.part`` job per machine, on queue ``logs@HOST`` (key:
``{id}:{step}@{host}``), which only a worker on that machine serves. The job that brings
the last part assembles the step's result and goes on as a step job would. A
``bgw.parts_due`` job, scheduled ``host_wait_s`` later, assembles what has come if a
machine's worker never took its part (and takes that part's job back), so a host that is
down delays the verdict but never withholds it.

A runner without a sink is a vantage worker's (bot.queue.places): it only runs parts, and the
one that stores a step's last part hands the step on to the default queue (``bgw.assemble``).

A storm member's ``bgw.diagnose`` job (bot.queue.job_kinds.storm_member) runs its steps
itself, side by side, each exactly as its step job would (same store, same checks against a
second run); only steps read in parts still go out as part jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from saq.job import Job, Status

from badgateway.bot import logs, metrics
from badgateway.bot.pipeline import (
    DiagnosisRequest,
    ResultSink,
    combine,
    count_verdict,
    failed_step_result,
    observe_step,
)
from badgateway.bot.queue.job_kinds import (
    ASSEMBLE_JOB,
    DIAGNOSE_JOB,
    PART_JOB,
    PARTS_DUE_JOB,
    STEP_JOB,
    failure_reason,
    part_job,
    part_queue,
    parts_due_job,
    step_job,
    storm_member,
)
from badgateway.bot.queue.places import HERE, keep_part, late_reason
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, QueueHub
from badgateway.bot.queue.store import DiagnosisStore, now_ms
from badgateway.bot.queue.tuning import QueueTuning
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import StepResult
from badgateway.checks.runner import assemble_parts, part_places, run_part, run_step
from badgateway.checks.settings import Settings
from badgateway.checks.steps import Step, step_named
from badgateway.checks.target import BadTarget

log = logging.getLogger(__name__)

# How often a step that waits for another step's result (logs waits for reload's requests)
# looks for it in the store.
PEER_POLL_S = 0.1


@contextlib.asynccontextmanager
async def heartbeat(job: Job, every_s: float) -> AsyncIterator[None]:
    """SAQ does not beat by itself: touch the job while it runs, so that a sweep tells a slow
    job from one whose worker died."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await job.update()
            except Exception as exc:  # Redis blip: the next beat may get through
                log.warning("heartbeat for %s failed: %s", job.key, exc)

    task = asyncio.create_task(beat(), name=f"heartbeat-{job.key}")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


Made = dict[str, "asyncio.Future[StepResult]"]  # results of the steps one job runs itself


class StoredResults:
    """``PeerResults`` across workers: another step's result, once its job has stored it.
    ``made``: a step this job runs itself hands its result over directly, rather than being
    polled for in Redis (a storm's 200 log steps polling every 0.1 s were thousands of
    round trips)."""

    def __init__(
        self, store: DiagnosisStore, req: DiagnosisRequest, made: Made | None = None
    ) -> None:
        self.store = store
        self.req = req
        self.made = made or {}

    def runs(self, step: str) -> bool:
        return step in self.req.steps

    async def result(self, step: str) -> StepResult:
        local = self.made.get(step)
        if local is not None:
            found = await self.store.result(self.req.id, step)  # an earlier run's, if any
            return found if found is not None else await asyncio.shield(local)
        while True:
            try:
                found = await self.store.result(self.req.id, step)
            except Exception as exc:  # a Redis blip: the caller's bound ends the wait
                log.warning("waiting for %s/%s: %s", self.req.id, step, exc)
                found = None
            if found is not None:
                return found
            await asyncio.sleep(PEER_POLL_S)


class UnknownStep(LookupError):
    """This worker has no step of that name (an older version?); another try may have it."""


class ConclusionPending(RuntimeError):
    """Another finisher holds the conclusion lease; retry so that a dead one is replaced."""


class JobRunner:
    """The job functions a worker registers with SAQ, with what they need to run."""

    def __init__(
        self,
        settings: Settings,
        sink: ResultSink | None,  # None: a vantage worker's, which hands results on
        store: DiagnosisStore,
        tuning: QueueTuning,
        *,
        queue_redis: Redis | None = None,
    ) -> None:
        """``queue_redis``: the queues' client, if not the store's (bot.queue.worker)."""
        self.settings = settings
        self.sink = sink
        self.store = store
        self.tuning = tuning
        # Every queue this runner enqueues into or serves; a job that fails for good is
        # shown in its thread (``dead_letter``).
        self.hub = QueueHub(queue_redis or store.redis, tuning, on_final_failure=self.dead_letter)

    def functions(self) -> list[tuple[str, Any]]:
        return [
            (DIAGNOSE_JOB, self.diagnose_job),
            (STEP_JOB, self.step_job),
            (PART_JOB, self.part_job),
            (PARTS_DUE_JOB, self.parts_due_job),
            (ASSEMBLE_JOB, self.assemble_job),
        ]

    # -- the jobs ------------------------------------------------------------------------

    async def diagnose_job(self, ctx: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        req = DiagnosisRequest.from_dict(request)
        inline = storm_member(req)  # its steps run here (bot.queue.job_kinds)
        here: list[str] = []
        async with self._heartbeat(ctx["job"]):
            jobs: dict[str, tuple[str, Job]] = {}
            for name in req.steps:
                places = self._places(req, name)
                if not places:
                    if inline:
                        here.append(name)
                        continue
                    jobs[name] = (DEFAULT_QUEUE, step_job(req, name, self.settings, self.tuning))
                    continue
                for place in places:
                    if place == HERE:  # the asker probes from there and stores it itself
                        continue
                    job = part_job(req, name, place, self.settings, self.tuning)
                    jobs[f"{name}@{place or '*'}"] = (part_queue(name, place), job)
                due = parts_due_job(req, name, self.settings, self.tuning)
                jobs[f"{name}:due"] = (DEFAULT_QUEUE, due)
            routed = {what: queue_name for what, (queue_name, _) in jobs.items()}
            if routed:
                await self.store.note_queues(*routed.values())
            # A job already queued or running under its key is left alone (dedup).
            await asyncio.gather(
                *(self.hub.get(queue_name).enqueue(job) for queue_name, job in jobs.values())
            )
            if not req.steps:
                await self._maybe_conclude(req, *await self.store.conclusion_state(req.id))
            await self._run_steps(req, here)
        return {"routed": routed, "ran": here}

    async def _run_steps(self, req: DiagnosisRequest, names: list[str]) -> None:
        """Run steps side by side in this job, each as its step job would (safe to run twice);
        every one ends before a failure is raised, so a retry never overlaps a step left
        running."""
        loop = asyncio.get_running_loop()
        made: Made = {name: loop.create_future() for name in names}

        async def run(name: str) -> None:
            try:
                await self._run_step(req, name, made)
            finally:
                if not made[name].done():  # kept by an earlier run, or none: from the store
                    found = await self.store.result(req.id, name)
                    if found is not None:
                        made[name].set_result(found)

        done = await asyncio.gather(*(run(name) for name in names), return_exceptions=True)
        for future in made.values():
            future.cancel()  # a peer waiting on a step that never came is bounded anyway
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome

    async def step_job(
        self, ctx: dict[str, Any], *, request: dict[str, Any], step: str
    ) -> dict[str, Any]:
        req = DiagnosisRequest.from_dict(request)
        async with self._heartbeat(ctx["job"]):
            await self._run_step(req, step)
        return {"step": step}

    async def _run_step(self, req: DiagnosisRequest, step: str, made: Made | None = None) -> None:
        async def probe() -> StepResult:
            result = await self.store.keep_first(req.id, await self._probe(req, step, made))
            if made is not None and not made[step].done():
                made[step].set_result(result)  # the steps waiting on it go on now
            return result

        await self._settle(req, step, probe)

    async def part_job(
        self, ctx: dict[str, Any], *, request: dict[str, Any], step: str, place: str
    ) -> dict[str, Any]:
        req = DiagnosisRequest.from_dict(request)
        if self.sink is None:
            async with self._heartbeat(ctx["job"]):
                await self._part_to_hand_over(req, step, place)
            return {"step": step, "place": place}

        async def read_part() -> StepResult | None:
            split, probe_ctx = self._split_step(req, step)
            part = await run_part(split, probe_ctx, place)  # within the budget; never raises
            return await self._keep_parts(req, step, {place: part})

        async with self._heartbeat(ctx["job"]):
            await self._settle(req, step, read_part)
        return {"step": step, "place": place}

    async def _part_to_hand_over(self, req: DiagnosisRequest, step: str, place: str) -> None:
        """A vantage worker's part: run it (unless an earlier run stored it), store it, and
        hand the step to the default queue if it was the last part."""
        part = (await self.store.parts(req.id, step)).get(place)
        if part is None:
            split, probe_ctx = self._split_step(req, step)
            part = await run_part(split, probe_ctx, place)  # within the budget; never raises
        await keep_part(self.store, self.hub, req, step, {place: part}, self.settings, self.tuning)

    async def assemble_job(
        self, ctx: dict[str, Any], *, request: dict[str, Any], step: str
    ) -> dict[str, Any]:
        """A step's parts are all in (a vantage worker stored the last): assemble, deliver."""
        req = DiagnosisRequest.from_dict(request)

        async def assemble() -> StepResult | None:
            return await self._keep_parts(req, step, {})

        async with self._heartbeat(ctx["job"]):
            await self._settle(req, step, assemble)
        return {"step": step}

    async def parts_due_job(
        self, ctx: dict[str, Any], *, request: dict[str, Any], step: str
    ) -> dict[str, Any]:
        """The wait for the machines' workers is over: a part not in by now is missing."""
        req = DiagnosisRequest.from_dict(request)
        late: list[str] = []

        async def give_up_on_late_parts() -> StepResult | None:
            stored = await self.store.parts(req.id, step)
            late.extend(p for p in self._places(req, step) if p not in stored)
            waited = f"{self.tuning.host_wait_s:g} s"
            return await self._keep_parts(
                req,
                step,
                {
                    place: {"missing": late_reason(part_queue(step, place), place, waited)}
                    for place in late
                },
            )

        async with self._heartbeat(ctx["job"]):
            await self._settle(req, step, give_up_on_late_parts)
            await self._withdraw_parts(req, step, late)
        return {"step": step, "late": late}

    async def _withdraw_parts(self, req: DiagnosisRequest, step: str, places: list[str]) -> None:
        """Take back the part jobs the step was shown without, so that a host whose worker is
        gone for good does not collect one stale job per diagnosis in its queue."""
        for place in places:
            if place == HERE:
                continue  # never queued
            queue = self.hub.get(part_queue(step, place))
            job = await queue.job(f"{req.id}:{step}@{place or '*'}")
            if job is not None and job.status in (Status.QUEUED, Status.ACTIVE):
                await queue.abort(job, f"the {step} step was shown without this part")

    async def _settle(
        self,
        req: DiagnosisRequest,
        step: str,
        produce: Callable[[], Awaitable[StepResult | None]],
    ) -> None:
        """What every job that brings a step's result does, safe to run twice: skip what an
        earlier run did, ``produce`` the result if none is stored (None: not ready yet),
        deliver it, and conclude the diagnosis if this was the last step."""
        delivered, result = await self.store.progress(req.id, step)
        if delivered:  # an earlier run got this far; it may have died before concluding
            state = await self.store.conclusion_state(req.id)
        else:
            if result is None:  # not made yet (or the earlier run died before storing it)
                result = await produce()
                if result is None:
                    return
                observe_step(result)  # made here, now: probed, or put together from parts
            state = await self._deliver(req, result)
        await self._maybe_conclude(req, *state)

    def _places(self, req: DiagnosisRequest, name: str) -> tuple[str, ...]:
        step = step_named(name)
        if step is None or step.parts is None:
            return ()
        try:
            ctx = ProbeContext.from_dict(req.context, self.settings)
        except (BadTarget, KeyError):  # the step job reports it
            return ()
        return part_places(step, ctx)

    def _split_step(self, req: DiagnosisRequest, name: str) -> tuple[Step, ProbeContext]:
        step = step_named(name)
        if step is None or step.parts is None:
            raise UnknownStep(f"this worker has no step named {name!r} that runs in parts")
        return step, self._context(req)

    def _context(self, req: DiagnosisRequest, made: Made | None = None) -> ProbeContext:
        """The request's context, able to wait for the other steps' stored results."""
        ctx = ProbeContext.from_dict(req.context, self.settings)
        ctx.peers = StoredResults(self.store, req, made)
        return ctx

    async def _keep_parts(
        self, req: DiagnosisRequest, name: str, parts: dict[str, dict[str, Any]]
    ) -> StepResult | None:
        """Store parts (first stored wins); once every place has one, the step's result."""
        stored = await self.store.keep_parts(req.id, name, parts)
        step, ctx = self._split_step(req, name)
        places = part_places(step, ctx)
        if any(place not in stored for place in places):
            return None  # parts from other machines are still to come
        result = assemble_parts(step, ctx, {p: stored[p] for p in places})
        return await self.store.keep_first(req.id, result)

    async def _probe(
        self, req: DiagnosisRequest, name: str, made: Made | None = None
    ) -> StepResult:
        step = step_named(name)
        if step is None:
            raise UnknownStep(f"this worker has no step named {name!r}")
        # Bounded by the diagnosis budget; never raises.
        return await run_step(step, self._context(req, made))

    async def _deliver(self, req: DiagnosisRequest, result: StepResult) -> tuple[bool, set[str]]:
        if self.sink is None:
            raise RuntimeError("a vantage worker hands results on; it delivers none")
        await asyncio.wait_for(self.sink.step_finished(req, result), self.tuning.sink_timeout_s)
        return await self.store.mark_delivered(req.id, result.name)

    async def _maybe_conclude(
        self, req: DiagnosisRequest, concluded: bool, delivered: set[str]
    ) -> None:
        """Conclude once every step is in the thread; exactly one finisher at a time."""
        if concluded or any(name not in delivered for name in req.steps):
            return  # done already, or a later step job concludes
        lease = self.tuning.sink_timeout_s + 5
        # Usually two last steps finished together and the other one is concluding now; if
        # that one died, its lease runs out within ``lease`` and this one takes over.
        deadline = time.monotonic() + lease + 1
        while not await self.store.claim_conclusion(req.id, lease):
            if await self.store.concluded(req.id):
                return
            if time.monotonic() > deadline:
                raise ConclusionPending(f"diagnosis {req.id} is being concluded elsewhere")
            await asyncio.sleep(0.1)
        try:
            if await self.store.concluded(req.id):
                return
            results = await self.store.results(req.id)
            diagnosis = combine(req, [results[name] for name in req.steps], self.settings)
            if self.sink is None:
                raise RuntimeError("a vantage worker hands results on; it concludes none")
            await asyncio.wait_for(
                self.sink.diagnosis_finished(req, diagnosis), self.tuning.sink_timeout_s
            )
            await self.store.mark_concluded(req.id)
            count_verdict(req, diagnosis)
        except BaseException:
            # Failed or cancelled (a sweep, a shutdown): free the lease for the retry.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release_conclusion(req.id))
            raise

    @contextlib.asynccontextmanager
    async def _heartbeat(self, job: Job) -> AsyncIterator[None]:
        """The job's heartbeat, and the job's fields on every line logged while it runs (the
        checks' own too)."""
        kwargs = job.kwargs or {}
        request = kwargs.get("request") or {}
        async with heartbeat(job, self.tuning.beat_every_s):
            with logs.fields(
                job_id=job.key,
                job=job.function,
                diagnosis=request.get("id"),
                step=kwargs.get("step"),
                target=(request.get("context") or {}).get("target"),
            ):
                yield

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letter(self, job: Job) -> None:
        """A job ended for good without success: show that in the thread, and conclude."""
        kwargs = job.kwargs or {}
        if "request" not in kwargs:
            return
        req = DiagnosisRequest.from_dict(kwargs["request"])
        reason = failure_reason(job)
        log.warning("dead letter: %s after %d tries: %s", job.key, job.attempts, reason)
        await self.store.count_dead_letter()
        if job.function == STEP_JOB:
            step = str(kwargs["step"])
            delivered, _ = await self.store.progress(req.id, step)
            if not delivered:
                record = failed_step_result(step, job.attempts, reason)
                await self.store.replace(req.id, record)
                await self._deliver_dead_letter(req, record)
        elif job.function == PART_JOB and self.sink is None:
            missing = {"missing": f"it failed after {job.attempts} tries: {reason}"}
            step, place = str(kwargs["step"]), str(kwargs["place"])
            await keep_part(
                self.store, self.hub, req, step, {place: missing}, self.settings, self.tuning
            )
            return  # a default worker assembles, delivers and concludes
        elif job.function == PART_JOB:
            step, place = str(kwargs["step"]), str(kwargs["place"])
            delivered, stored = await self.store.progress(req.id, step)
            if not delivered:
                missing = {"missing": f"reading them failed after {job.attempts} tries: {reason}"}
                result = stored or await self._keep_parts(req, step, {place: missing})
                if result is not None:
                    await self._deliver_dead_letter(req, result)
        elif job.function == PARTS_DUE_JOB:
            step = str(kwargs["step"])
            delivered, _ = await self.store.progress(req.id, step)
            if not delivered:
                record = failed_step_result(step, job.attempts, reason)
                stored = await self.store.keep_first(req.id, record)
                await self._deliver_dead_letter(req, stored)
        elif job.function == DIAGNOSE_JOB:
            # Dispatch itself failed (a storm member: its steps, run inside this job): every
            # step without a result is shown as failed.
            what = (
                "the diagnosis's job (which runs a storm site's steps) failed"
                if storm_member(req)
                else "the diagnosis could not be dispatched"
            )
            for step in req.steps:
                if await self.store.result(req.id, step) is None:
                    record = failed_step_result(step, job.attempts, f"{what}: {reason}")
                    stored = await self.store.keep_first(req.id, record)
                    await self._deliver_dead_letter(req, stored)
        with contextlib.suppress(ConclusionPending):
            await self._maybe_conclude(req, *await self.store.conclusion_state(req.id))

    async def _deliver_dead_letter(self, req: DiagnosisRequest, record: StepResult) -> None:
        try:
            await self._deliver(req, record)
        except Exception:  # nothing more to try; the verdict still comes
            log.exception("could not deliver the dead letter for %s/%s", req.id, record.name)
            await self.store.mark_delivered(req.id, record.name)

    # -- bookkeeping (SAQ before/after hooks) ---------------------------------------------

    async def before_process(self, ctx: dict[str, Any]) -> None:
        job: Job = ctx["job"]
        ctx["bgw_started_ms"] = job.started
        if job.started and job.queued:
            queue = job.queue.name if job.queue else DEFAULT_QUEUE
            metrics.observe_job_wait(queue, job.function, job.started - job.queued)

    async def after_process(self, ctx: dict[str, Any]) -> None:
        job: Job = ctx["job"]
        started = int(ctx.get("bgw_started_ms") or 0)
        finished = job.completed or now_ms()
        entry = {
            "queue": job.queue.name if job.queue else None,
            "function": job.function,
            "key": job.key,
            "status": job.status.value if job.status is not Status.QUEUED else "retried",
            "attempts": job.attempts,
            "wait_ms": started - job.queued if started and job.queued else None,
            "run_ms": finished - started if started else None,
            "at": finished,
            # Why a try did not complete (a retry, a failure): a timeout reads "did not finish".
            "why": failure_reason(job) if job.status is not Status.COMPLETE else None,
        }
        try:
            await self.store.record_job(entry)
        except Exception as exc:  # statistics must never fail a job
            log.warning("could not record job timings: %s", exc)
