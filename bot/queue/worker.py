"""`badgateway worker`: take diagnosis and step jobs from Redis and run them.

Run as many as the load needs, anywhere that reaches Redis (and the sites): each keeps up to
``BADGATEWAY_WORKER_CONCURRENCY`` jobs in flight per queue. On a host that holds a site's
logs, run one with ``--queues default,logs@<host>`` (or only ``logs@<host>``) so that the log
step of that site runs where the files are.

SIGTERM (or Ctrl-C): the worker stops taking jobs, finishes the ones it holds (each is
bounded by its timeout), and exits 0; a job it cannot finish in time is handed back to the
queue. SIGKILL or a crash: its jobs are re-run elsewhere once their heartbeat goes stale.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, cast

from saq import Worker
from saq.types import PartialTimersDict

from bot.config import BotConfig
from bot.pipeline import DiagnosisRequest, ResultSink
from bot.queue.jobs import JobRunner
from bot.queue.saq_queue import DEFAULT_QUEUE, QueueHub
from bot.queue.store import DiagnosisStore
from bot.queue.tuning import QueueTuning, connect_redis
from checks.model import Diagnosis, StepResult
from checks.settings import Settings

log = logging.getLogger(__name__)

SINK_ENV = "BADGATEWAY_SINK"  # "module:factory"; factory(config) -> ResultSink
NAME_ENV = "BADGATEWAY_WORKER_NAME"


class LoggingSink:
    """Where results go when no Slack token is set: the worker's log."""

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        log.warning("diagnosis %s: step %s: %s", request.id, result.name, result.summary)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        verdict = diagnosis.verdict
        log.warning("diagnosis %s: %s: %s", request.id, verdict.cause.value, verdict.summary)


def make_sink(config: BotConfig) -> ResultSink:
    """The sink a worker feeds: $BADGATEWAY_SINK if set (tests, other chat tools), the Slack
    thread when a bot token is set, else the log."""
    dotted = os.environ.get(SINK_ENV, "").strip()
    if dotted:
        module_name, _, attr = dotted.partition(":")
        factory: Callable[[BotConfig], ResultSink] = getattr(
            importlib.import_module(module_name), attr or "build_sink"
        )
        return factory(config)
    if config.slack_bot_token:
        from bot.slack.sink import build_sink

        return build_sink(config)
    return LoggingSink()


def _build_alerts(config: BotConfig, settings: Settings, queues: list[str]) -> Any:
    """Site monitoring runs on the default queue's workers when there are sites to watch
    and a Slack token to post alerts with; None otherwise."""
    if DEFAULT_QUEUE not in queues or not settings.sites or not config.slack_bot_token:
        return None
    from bot.alerts.runtime import build_incidents
    from bot.queue.carrier import QueueCarrier

    # An incident's diagnosis goes through the queue like any other.
    return build_incidents(config, settings, QueueCarrier(config, settings))


def _alerts_startup(alerts: Any) -> Any:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["alerts"] = alerts  # what bot.alerts.monitor's jobs use

    return startup


def worker_name() -> str:
    """Shown by `status`; SAQ splits worker ids on ':' so none may appear."""
    name = os.environ.get(NAME_ENV) or f"{socket.gethostname()}-{os.getpid()}"
    return name.replace(":", "-")


def run_worker(config: BotConfig, settings: Settings, queues: list[str]) -> int:
    """Blocking: work the given queues until SIGTERM/SIGINT. Returns the exit code."""
    if not config.redis_url:
        raise ValueError("run_worker needs config.redis_url")
    return asyncio.run(_work(config, settings, queues or ["default"]))


async def _work(config: BotConfig, settings: Settings, queues: list[str]) -> int:
    tuning = QueueTuning.from_env()
    sink = make_sink(config)
    alerts = _build_alerts(config, settings, queues)
    if alerts is not None:
        from bot.alerts.sink import IncidentVerdicts

        sink = IncidentVerdicts(sink, alerts)  # verdicts also reach the alert's root message
    concurrency = config.worker_concurrency
    # Each idle consumer holds one connection in BLMOVE; running jobs need a few more.
    redis = connect_redis(str(config.redis_url), concurrency * len(queues) * 2 + 20, tuning)
    hub = QueueHub(redis, tuning)
    store = DiagnosisStore(redis, tuning.keep_s)
    runner = JobRunner(settings, sink, store, hub, tuning)
    hub.on_final_failure = runner.dead_letter
    name = worker_name()
    metadata: dict[str, Any] = {"name": name, "queues": queues, "pid": os.getpid()}
    workers: list[Worker[Any]] = []
    for queue_name in queues:
        queue = hub.get(queue_name)
        await queue.connect()
        functions: list[Any] = list(runner.functions())
        extra: dict[str, Any] = {}
        if alerts is not None and queue_name == DEFAULT_QUEUE:
            from bot.alerts.monitor import MONITOR_FUNCTIONS, monitor_cron_jobs

            functions += MONITOR_FUNCTIONS
            extra["cron_jobs"] = monitor_cron_jobs()
            extra["startup"] = _alerts_startup(alerts)
        worker: Worker[Any] = Worker(
            queue,
            functions,
            id=f"{name}-{queue_name}",
            concurrency=concurrency,
            # SAQ types its timers as whole seconds but sleeps on any number; the tests use
            # fractions of a second.
            timers=cast(
                "PartialTimersDict",
                {
                    "sweep": tuning.sweep_s,
                    "abort": min(1, tuning.abort_wait_s / 2),
                    "schedule": 1,  # retries with a delay wait in a sorted set until then
                    "worker_info": tuning.worker_info_s,
                },
            ),
            dequeue_timeout=tuning.dequeue_timeout_s,
            shutdown_grace_period_s=tuning.job_timeout_s(settings) + 5,
            before_process=runner.before_process,
            after_process=runner.after_process,
            metadata=metadata,
            **extra,
        )
        worker.SIGNALS = []  # one handler below stops every queue's consumers together
        workers.append(worker)

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.warning("worker %s stopping: finishing the jobs it holds", name)
        for queue_name in queues:
            hub.get(queue_name).accepting = False  # a job dequeued from now on is handed back
        for w in workers:
            w.event.set()  # the consumers return once their current job (if any) is done
            for task in list(w.tasks):
                if task.get_name() != "process":  # upkeep loops: sweep, schedule, info
                    task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        await store.note_queues(*queues)
        log.warning("worker %s taking jobs from %s", name, ", ".join(queues))
        await asyncio.gather(*(w.start() for w in workers))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        closer = getattr(getattr(sink, "inner", sink), "aclose", None)
        if closer is not None:
            await closer()
        if alerts is not None:
            await alerts.store.redis.aclose()
        await hub.close()
    log.warning("worker %s stopped", name)
    return 0
