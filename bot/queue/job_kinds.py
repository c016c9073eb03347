"""The job kinds of a diagnosis: their names, keys, queues and SAQ options, and why a job
that ended for good failed.

``bgw.diagnose`` (key: the request id, so a request is queued once), ``bgw.step`` (key:
``{id}:{step}``), ``bgw.part`` (key: ``{id}:{step}@{place}``, on the queue of the machine
that holds the part's input: ``part_queue``) and ``bgw.parts_due`` (key: ``{id}:{step}:due``,
scheduled ``host_wait_s`` later) and ``bgw.assemble`` (key: ``{id}:{step}:assemble``, on the
default queue: a vantage worker that stored a step's last part hands the rest over to the
workers that hold the sink, bot.queue.places). What each job does is bot.queue.jobs.JobRunner.

A grouped alert's site (a storm member) runs its steps inside its ``bgw.diagnose`` job rather
than one job each: two hundred sites failing at once are 200 jobs, not 1,200 (each job's own
Redis round trips, and its wait for a slot, were most of a storm's time in queue mode).
"""

from __future__ import annotations

import math
import time
from typing import Any

from saq.job import Job

from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, SWEPT_ERROR
from badgateway.bot.queue.tuning import QueueTuning
from badgateway.checks.settings import Settings
from badgateway.checks.steps import step_named

DIAGNOSE_JOB = "bgw.diagnose"
STEP_JOB = "bgw.step"
PART_JOB = "bgw.part"
PARTS_DUE_JOB = "bgw.parts_due"
ASSEMBLE_JOB = "bgw.assemble"
SAQ_JOB_TTL_S = 3600  # how long SAQ keeps a finished job's record (for `status` and the UI)


def job_options(settings: Settings, tuning: QueueTuning) -> dict[str, Any]:
    """SAQ job options chosen on purpose: its defaults (10 s timeout, one try, no heartbeat)
    would leave a dead worker's job ABORTED for good."""
    return {
        "timeout": tuning.job_timeout_s(settings),
        "heartbeat": tuning.heartbeat_s,
        "retries": tuning.retries,
        "retry_delay": tuning.retry_delay_s,
        "retry_backoff": tuning.retry_delay_cap_s,
        "ttl": SAQ_JOB_TTL_S,
    }


def storm_member(request: DiagnosisRequest) -> bool:
    """A grouped alert's site: its results go to the storm's table (and to the `/502` threads
    that share its run), so its steps need not be spread over jobs (see above)."""
    return bool(request.origin.get("storm"))


def diagnosis_job(request: DiagnosisRequest, settings: Settings, tuning: QueueTuning) -> Job:
    return Job(
        function=DIAGNOSE_JOB,
        kwargs={"request": request.to_dict()},
        key=request.id,
        **job_options(settings, tuning),
    )


def step_job(request: DiagnosisRequest, step: str, settings: Settings, tuning: QueueTuning) -> Job:
    return Job(
        function=STEP_JOB,
        kwargs={"request": request.to_dict(), "step": step},
        key=f"{request.id}:{step}",
        **job_options(settings, tuning),
    )


def part_queue(step: str, place: str) -> str:
    """The queue of ``step``'s part for ``place``, as the step declares it (``logs@web-1``: a
    worker on that host serves it, ``badgateway worker --queues default,logs@web-1``); a part
    that may run anywhere goes to the default queue."""
    declared = step_named(step)
    parts = declared.parts if declared is not None else None
    return (parts.queue_at(place) if parts is not None else None) or DEFAULT_QUEUE


def part_job(
    request: DiagnosisRequest, step: str, place: str, settings: Settings, tuning: QueueTuning
) -> Job:
    return Job(
        function=PART_JOB,
        kwargs={"request": request.to_dict(), "step": step, "place": place},
        key=f"{request.id}:{step}@{place or '*'}",
        **job_options(settings, tuning),
    )


def parts_due_job(
    request: DiagnosisRequest, step: str, settings: Settings, tuning: QueueTuning
) -> Job:
    return Job(
        function=PARTS_DUE_JOB,
        kwargs={"request": request.to_dict(), "step": step},
        key=f"{request.id}:{step}:due",
        scheduled=math.ceil(time.time() + tuning.host_wait_s),
        **job_options(settings, tuning),
    )


def assemble_job(
    request: DiagnosisRequest, step: str, settings: Settings, tuning: QueueTuning
) -> Job:
    return Job(
        function=ASSEMBLE_JOB,
        kwargs={"request": request.to_dict(), "step": step},
        key=f"{request.id}:{step}:assemble",
        **job_options(settings, tuning),
    )


def failure_reason(job: Job) -> str:
    """One line for the thread: why the job's last try ended."""
    error = (job.error or "").strip()
    if error.startswith(SWEPT_ERROR):
        return f"its worker stopped answering (no heartbeat for {job.heartbeat} s)"
    last = error.splitlines()[-1].strip() if error else "unknown error"
    if last.endswith("TimeoutError") or last == "cancelled":
        return f"it did not finish within its {job.timeout} s timeout"
    return last[:300]
