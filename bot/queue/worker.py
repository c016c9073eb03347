"""`badgateway worker`: take diagnosis and step jobs from Redis and run them.

Run as many as the load needs, anywhere that reaches Redis (and the sites): each keeps up to
``BADGATEWAY_WORKER_CONCURRENCY`` jobs in flight per queue. On a host that holds a site's
logs, run one with ``--queues default,logs@<host>`` (or only ``logs@<host>``) so that the log
step of that site runs where the files are. A vantage worker (``--vantage PLACE``) serves
``probe@PLACE`` without a sink (bot.queue.places).

The worker process is put together (its sink, site monitoring) by bot.assemble.worker.
SIGTERM (or Ctrl-C): the worker stops taking jobs, finishes the ones it holds (each is
bounded by its timeout), and exits 0; a job it cannot finish in time is handed back to the
queue. SIGKILL or a crash: its jobs are re-run elsewhere once their heartbeat goes stale.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from saq import CronJob, Worker
from saq.types import PartialTimersDict

from badgateway.bot.config import BotConfig
from badgateway.bot.pipeline import ResultSink
from badgateway.bot.queue import worker_metrics
from badgateway.bot.queue.health import REDIS_DOWN, redis_down
from badgateway.bot.queue.jobs import JobRunner
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis
from badgateway.checks.settings import Settings

log = logging.getLogger(__name__)

OUTAGE_REPEAT_S = 10.0  # while Redis is down, say so at most this often
STORE_CONNECTIONS = 2  # per job slot, for what the jobs store and read (see ``work``)


class RedisOutageLog(logging.Filter):
    """SAQ logs a whole traceback each time one of its upkeep loops (sweep, schedule, worker
    info) meets a Redis that is gone, every second or so while it is down. The worker rides
    the outage out and carries on once Redis is back, so those become one warning line, at
    most every ``OUTAGE_REPEAT_S``; any other error keeps its traceback."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._said_at = -OUTAGE_REPEAT_S

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, REDIS_DOWN):
            return True
        now = time.monotonic()
        if now - self._said_at < OUTAGE_REPEAT_S:
            return False
        self._said_at = now
        record.msg, record.args = "%s; waiting for it to come back", (redis_down(self.url, exc),)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@dataclass(frozen=True)
class FeatureJobs:
    """Jobs of another feature (site monitoring) that this worker also runs, on a queue of
    their own: its name, its functions, its cron jobs, and a startup hook that puts what they
    use in SAQ's ctx.

    A queue of their own because SAQ fails a job whose function its worker did not register
    (``KeyError: 'monitor_tick'``): on a shared queue, a worker without the feature (another
    sites file, no alerts) would take the feature's cron jobs and fail them. Only workers that
    register these functions take from this queue."""

    queue: str
    functions: Sequence[Any]
    cron_jobs: Sequence[CronJob[Any]]
    startup: Callable[[dict[str, Any]], Awaitable[None]]


# Jobs of other features that run at a place: every worker serving a queue ``KIND@PLACE``
# also registers ``PLACE_FUNCTIONS[KIND](settings)`` (the monitor's probe from a vantage,
# ``probe@PLACE``: bot.alerts.monitor). Filled by the assembly (bot.assemble.worker), so that
# however a worker for such a queue is put together, it runs them.
PlaceFunctions = Callable[[Settings], Sequence[tuple[str, Any]]]
PLACE_FUNCTIONS: dict[str, PlaceFunctions] = {}


def register_place_functions(kind: str, functions: PlaceFunctions) -> None:
    PLACE_FUNCTIONS[kind] = functions


def place_functions(queue_name: str, settings: Settings) -> list[tuple[str, Any]]:
    """What a worker of ``queue_name`` runs besides the diagnosis jobs (see PLACE_FUNCTIONS)."""
    kind, at, _place = queue_name.partition("@")
    registered = PLACE_FUNCTIONS.get(kind) if at else None
    return list(registered(settings)) if registered is not None else []


def worker_name(config: BotConfig) -> str:
    """Shown by `status`; SAQ splits worker ids on ':' so none may appear."""
    name = config.worker_name or f"{socket.gethostname()}-{os.getpid()}"
    return name.replace(":", "-")


async def work(
    config: BotConfig,
    settings: Settings,
    queues: list[str],
    sink: ResultSink | None,
    *,
    extra_jobs: Sequence[FeatureJobs] = (),
    vantage: str | None = None,
) -> int:
    """Work the given queues (and each of ``extra_jobs``' own) until SIGTERM/SIGINT, feeding
    ``sink`` (None: a vantage worker for the place ``vantage``, which hands results on).
    Returns the exit code."""
    tuning = config.tuning
    concurrency = config.worker_concurrency
    features = {feature.queue: feature for feature in extra_jobs}
    queues = [*queues, *(name for name in features if name not in queues)]
    # Each idle consumer holds one connection in BLMOVE; running jobs need a few more.
    redis = connect_redis(str(config.redis_url), concurrency * len(queues) * 2 + 20, tuning)
    # What the jobs store and read (results, deliveries) goes through a pool of its own: a
    # storm's jobs each run several steps at once, and on the queue's pool their reads and
    # writes kept heartbeats and SAQ's own updates waiting for a connection past the heartbeat
    # window (measured: jobs swept as stuck while they ran, run again, dead letters).
    store_redis = connect_redis(str(config.redis_url), concurrency * STORE_CONNECTIONS, tuning)
    store = DiagnosisStore(store_redis, tuning.keep_s)
    runner = JobRunner(settings, sink, store, tuning, queue_redis=redis)
    hub = runner.hub
    name = worker_name(config)
    metadata: dict[str, Any] = {"name": name, "queues": queues, "pid": os.getpid()}
    if vantage is not None:
        metadata["vantage"] = vantage  # `status` lists the places by it
    workers: list[Worker[Any]] = []
    for queue_name in queues:
        queue = hub.get(queue_name)
        await queue.connect()
        functions: list[Any] = [*runner.functions(), *place_functions(queue_name, settings)]
        extra: dict[str, Any] = {}
        feature = features.get(queue_name)
        if feature is not None:
            functions = list(feature.functions)
            extra["cron_jobs"] = list(feature.cron_jobs)
            extra["startup"] = feature.startup
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
    outage_log = RedisOutageLog(str(config.redis_url))
    logging.getLogger("saq").addFilter(outage_log)
    worked = asyncio.Event()  # set once the jobs it held are done: then its last push
    pusher = asyncio.create_task(
        worker_metrics.push_while(redis, name, config.metrics_push_s, worked)
    )
    try:
        await store.note_queues(*queues)
        log.warning("worker %s taking jobs from %s", name, ", ".join(queues))
        await asyncio.gather(*(w.start() for w in workers))
    finally:
        worked.set()
        await pusher
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        logging.getLogger("saq").removeFilter(outage_log)
        await hub.close()
        await store_redis.aclose()
        await store_redis.connection_pool.disconnect()
    log.warning("worker %s stopped", name)
    return 0
