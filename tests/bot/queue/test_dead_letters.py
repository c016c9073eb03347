"""A diagnosis job that fails for good: its steps are shown as failed, saying which job failed
(a storm site's steps run inside its diagnosis job, so "could not be dispatched" would be
wrong there). Real redis-server; the sink records what the thread would show."""

from __future__ import annotations

from typing import Any

from saq.job import Job

from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.job_kinds import DIAGNOSE_JOB
from badgateway.bot.queue.jobs import JobRunner
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis
from badgateway.checks.model import Diagnosis, StepResult
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings
from tests.lab.alerts import LOOPBACK
from tests.lab.fixtures_redis import LAB_TUNING, RedisServer


class ShownSink:
    def __init__(self) -> None:
        self.steps: dict[str, list[str]] = {}
        self.verdicts: list[str] = []

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        self.steps.setdefault(request.id, []).append(result.summary)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        self.verdicts.append(request.id)


async def test_a_diagnosis_job_failing_for_good_says_which_job_failed(
    redis_server: RedisServer,
) -> None:
    settings = Settings(allow_networks=LOOPBACK)
    redis = connect_redis(redis_server.url, 5, LAB_TUNING)
    sink = ShownSink()
    runner = JobRunner(settings, sink, DiagnosisStore(redis, 60), LAB_TUNING)
    ctx = await prepare("http://127.0.0.1:9/", settings)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"storm": "s1"},
            "the diagnosis's job (which runs a storm site's steps) failed: RuntimeError: boom",
        ),
        ({}, "the diagnosis could not be dispatched: RuntimeError: boom"),
    ]
    try:
        for origin, said in cases:
            req = DiagnosisRequest.new(ctx, steps=["dns", "reload"], origin=origin)
            job = Job(
                function=DIAGNOSE_JOB,
                kwargs={"request": req.to_dict()},
                attempts=3,
                error="Traceback …\nRuntimeError: boom",
            )
            await runner.dead_letter(job)
            assert sink.steps[req.id] == [
                f"step dns failed after 3 tries: {said}",
                f"step reload failed after 3 tries: {said}",
            ]
            assert req.id in sink.verdicts  # the verdict still comes
    finally:
        await redis.aclose()
