"""`badgateway worker`: a worker process, put together from the configuration.

Where results go (the sink): ``$BADGATEWAY_SINK`` if set (``module:factory``; tests, other
chat tools; ``badgateway.bot.assemble.worker:log_sink`` only logs them), else the Slack thread.
Without either the worker refuses to start (ConfigError, one line): a worker that quietly wrote
every diagnosis to its own log would leave every `/502` thread waiting. So does a worker that cannot
reach Redis (RedisUnreachable, one line).

On the default queue, with sites to watch and a Slack token to post alerts with, the worker
also monitors the sites (bot.alerts.monitor), on a queue of its own (``MONITOR_QUEUE``) that
only monitoring workers take from, and tells the alerting side each verdict of an alert's
diagnosis.

A vantage worker (``badgateway worker --vantage PLACE``, bot.queue.places) needs Redis only:
no sink, no history, no monitoring. It serves ``probe@PLACE`` (and any other queue given but
the default one), resolving with its own machine's resolvers or BADGATEWAY_VANTAGE_RESOLVERS
(its place's view of DNS), and hands each step it completes to the default queue.

A worker posting to Slack also takes the deliveries its kind hands out (bot.queue.delivery): a
result shared by more threads than one job can post to in its time goes on in jobs of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from badgateway.bot import storage
from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.monitor import (
    MONITOR_FUNCTIONS,
    monitor_cron_jobs,
    place_probe_functions,
)
from badgateway.bot.alerts.sink import IncidentVerdicts
from badgateway.bot.assemble.alerts import build_incidents
from badgateway.bot.config import BotConfig, ConfigError, QueueTuning
from badgateway.bot.history_store import HistoryKeeper, HistoryStore, redis_history
from badgateway.bot.pipeline import HistorySink, LoggingSink, ResultSink
from badgateway.bot.queue.carrier import QueueCarrier
from badgateway.bot.queue.delivery import DeliveryQueue
from badgateway.bot.queue.health import require_redis
from badgateway.bot.queue.places import BadPlace, vantage_queue
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, QueueHub
from badgateway.bot.queue.worker import FeatureJobs, register_place_functions, work
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, RedisStore, open_store
from badgateway.checks.places import QUEUE as PLACE_QUEUE
from badgateway.checks.settings import Settings

MONITOR_QUEUE = "monitor"  # the monitoring jobs' own queue (see FeatureJobs)
# A worker serving probe@PLACE (a vantage) also probes sites for the monitor from there.
register_place_functions(PLACE_QUEUE, place_probe_functions)
NO_TOKEN = (
    "SLACK_BOT_TOKEN is not set: a worker posts each diagnosis into its Slack thread with it "
    "(to only log results instead, set BADGATEWAY_SINK=badgateway.bot.assemble.worker:log_sink)"
)


def log_sink(config: BotConfig) -> ResultSink:
    """A ``$BADGATEWAY_SINK`` factory for a worker that only logs its results (trying it out)."""
    return LoggingSink()


def make_sink(config: BotConfig) -> ResultSink:
    """The sink a worker feeds (see the module's docstring for which)."""
    dotted = config.sink
    if dotted:
        module_name, _, attr = dotted.partition(":")
        try:
            factory: Callable[[BotConfig], ResultSink] = getattr(
                importlib.import_module(module_name), attr or "build_sink"
            )
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"BADGATEWAY_SINK={dotted!r} cannot be loaded ({exc}): "
                "give module:factory of an importable module"
            ) from None
        return factory(config)
    if not config.slack_bot_token:
        raise ConfigError(NO_TOKEN)
    store = open_store(config.redis_url)
    # In Redis, the posting pace is one for this worker, the others and the web process.
    shared = store.redis if isinstance(store, RedisStore) else None
    return SlackSink(make_web_client(config, shared), BotState(store))


def monitoring(
    config: BotConfig, settings: Settings, queues: list[str], sink: ResultSink
) -> Incidents | None:
    """The alerting side when this worker monitors the sites, else None."""
    if DEFAULT_QUEUE not in queues or not settings.sites or not config.slack_bot_token:
        return None
    # An incident's diagnosis goes through the queue like any other, as the site's shared
    # run when the worker posts to Slack (its sink keeps the Slack side's state).
    carrier = QueueCarrier(config, settings)
    if isinstance(sink, SlackSink):
        return build_incidents(config, settings, carrier, state=sink.state, show_run=sink.show)
    return build_incidents(config, settings, carrier)


def monitor_jobs(
    incidents: Incidents, history: HistoryStore | None, tuning: QueueTuning
) -> FeatureJobs:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["alerts"] = incidents  # what bot.alerts.monitor's jobs use
        ctx["history"] = history  # where they keep each probe's point
        # The places' queues (probe@PLACE), on the worker's own connection pool.
        places = QueueHub(ctx["worker"].queue.redis, tuning)
        ctx["place_queue"] = places.get

    return FeatureJobs(MONITOR_QUEUE, MONITOR_FUNCTIONS, monitor_cron_jobs(), startup)


def run_worker(config: BotConfig, settings: Settings, queues: list[str]) -> int:
    """Blocking: work the given queues until SIGTERM/SIGINT. Returns the exit code.
    Raises ConfigError without a way to deliver results, RedisUnreachable without Redis."""
    if not config.redis_url:
        raise ValueError("run_worker needs config.redis_url")
    return asyncio.run(_run(config, settings, queues or [DEFAULT_QUEUE]))


def run_vantage_worker(config: BotConfig, settings: Settings, place: str, queues: list[str]) -> int:
    """Blocking: a vantage worker for ``place`` (plus ``queues``) until SIGTERM/SIGINT.
    Raises ConfigError for a bad place or the default queue, RedisUnreachable without Redis."""
    if not config.redis_url:
        raise ValueError("run_vantage_worker needs config.redis_url")
    try:
        own = vantage_queue(place)
    except BadPlace as exc:
        raise ConfigError(str(exc)) from None
    if DEFAULT_QUEUE in queues:
        raise ConfigError(
            "a vantage worker serves its place's probes only (it has no sink): run the "
            f"default queue in a worker of its own, not with --vantage {place}"
        )
    # Its place's view of DNS, never the sites file's resolvers (another network's).
    own_view = dataclasses.replace(settings, resolvers=config.vantage_resolvers)
    return asyncio.run(_run_vantage(config, own_view, place, list(dict.fromkeys([own, *queues]))))


async def _run_vantage(config: BotConfig, settings: Settings, place: str, queues: list[str]) -> int:
    storage.use_prefix(config.redis_prefix)  # before anything builds a key
    await require_redis(str(config.redis_url))
    return await work(config, settings, queues, None, vantage=place)


async def _run(config: BotConfig, settings: Settings, queues: list[str]) -> int:
    storage.use_prefix(config.redis_prefix)  # before anything builds a key
    # Before anything connects: a worker that cannot post stops here. Each verdict says what
    # changed since its target last worked (the history is shared through Redis).
    history = HistoryKeeper(redis_history(str(config.redis_url), config.history))
    posting = make_sink(config)
    sink = HistorySink(posting, history)
    incidents = None
    deliveries = None
    try:
        await require_redis(str(config.redis_url))
        extra = []
        if isinstance(posting, SlackSink) and DEFAULT_QUEUE in queues:
            # Posts to many threads go on in jobs of their own (the history is kept already).
            deliveries = DeliveryQueue(str(config.redis_url), config.tuning)
            posting.hand_out = deliveries.hand_out
            posting.hand_out_after_s = deliveries.hand_out_after_s
            extra.append(deliveries.jobs(posting.deliver))
        incidents = monitoring(config, settings, queues, posting)
        if incidents is None:
            return await work(config, settings, queues, sink, extra_jobs=extra)
        # Verdicts of alerts' diagnoses also reach the alert's root message.
        extra.append(monitor_jobs(incidents, history.store, config.tuning))
        return await work(
            config, settings, queues, IncidentVerdicts(sink, incidents), extra_jobs=extra
        )
    finally:
        if deliveries is not None:
            await deliveries.close()
        # A sink from $BADGATEWAY_SINK may or may not hold connections to close.
        closer = getattr(sink, "aclose", None)
        if closer is not None:
            await closer()
        if incidents is not None:
            await incidents.close()
