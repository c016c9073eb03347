"""What the bot counts for Prometheus, and how several processes show as one `/metrics`.

Every metric is defined here and incremented where the fact happens (a verdict concluded, a
step finished, a job started, a Slack call answered, a site probed); none of them decides
anything. They live in this process's ``REGISTRY`` (with the process's CPU and memory).

One scrape target for the whole install: the web process serves ``GET /metrics``. Workers
have no port of their own (a Deployment or Compose service with N replicas would need one
scrape target per replica, and a worker may run where nothing can reach it). Instead each
worker writes its registry, in Prometheus' text format, to Redis every
``BADGATEWAY_METRICS_PUSH_S`` (5 s)
under ``<prefix>:metrics:worker:<name>`` with a lease of ``PUSH_TTL_S``, and the web process
adds every live worker's to its own when scraped: each series gets a ``process`` label
(``web``, or the worker's name), so a worker's counters stay its own and a worker that
restarts shows as a counter reset, which Prometheus' ``rate()`` handles. A worker that stops
stops being shown once its lease runs out. Facts that are the install's, not a process's
(queue depth, open incidents), are read from Redis at scrape time by the web process
(``Snapshot``, filled by bot.assemble.web) and have no ``process`` label.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

METRICS_PATH = "/metrics"
PUSH_TTL_S = 30  # a worker that has not pushed for this long is taken as gone

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# Triggers: what made a diagnosis run (DiagnosisRequest.origin["trigger"]).
TRIGGERS = ("slash", "alert", "monitor", "mention", "rerun")

DIAGNOSES = Counter(
    "badgateway_diagnoses",
    "Diagnoses concluded, by verdict cause and by what triggered them.",
    ["cause", "trigger"],
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "badgateway_step_duration_seconds",
    "How long each step of a diagnosis took, by step and status.",
    ["step", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 14, 30),
    registry=REGISTRY,
)
JOB_WAIT_SECONDS = Histogram(
    "badgateway_job_wait_seconds",
    "Queue latency: from a job's enqueue to a worker starting it, by queue and job kind.",
    ["queue", "job"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
SLACK_CALLS = Counter(
    "badgateway_slack_calls",
    "Slack Web API calls after the client's own retries, by method and outcome "
    "(ok, Slack's error code, http_5xx, rate_limited, connection_error).",
    ["method", "outcome"],
    registry=REGISTRY,
)
SLACK_RETRIES = Counter(
    "badgateway_slack_retries",
    "Slack Web API calls tried again, by method and reason "
    "(rate_limited, server_error, connection_error, ambiguous_post).",
    ["method", "reason"],
    registry=REGISTRY,
)
SLACK_429 = Counter(
    "badgateway_slack_rate_limited",
    "HTTP 429 answers from Slack (each one, retried or not), by method.",
    ["method"],
    registry=REGISTRY,
)
SLACK_PACE_FALLBACKS = Counter(
    "badgateway_slack_pace_fallbacks",
    "Slack Web API calls this process paced on its own because the pace shared through Redis "
    "was out of reach, by budget (posts, updates, replies, history).",
    ["limit"],
    registry=REGISTRY,
)
PROBES = Counter(
    "badgateway_monitor_probes",
    "Monitoring probes of the sites file's sites, by site, place probed from (empty: a site "
    "without places) and result (ok, failed).",
    ["site", "place", "result"],
    registry=REGISTRY,
)


def count_diagnosis(cause: str, trigger: str) -> None:
    DIAGNOSES.labels(cause=cause, trigger=trigger if trigger in TRIGGERS else "other").inc()


def observe_step(step: str, status: str, duration_ms: float) -> None:
    STEP_SECONDS.labels(step=step, status=status).observe(max(0.0, duration_ms) / 1000)


def observe_job_wait(queue: str, job: str, wait_ms: float) -> None:
    JOB_WAIT_SECONDS.labels(queue=queue, job=job).observe(max(0.0, wait_ms) / 1000)


def slack_call(method: str, outcome: str) -> None:
    SLACK_CALLS.labels(method=method, outcome=outcome).inc()


def slack_retry(method: str, reason: str) -> None:
    SLACK_RETRIES.labels(method=method, reason=reason).inc()


def slack_rate_limited(method: str) -> None:
    SLACK_429.labels(method=method).inc()


def slack_pace_fallback(limit: str) -> None:
    SLACK_PACE_FALLBACKS.labels(limit=limit).inc()


def probe(site: str, ok: bool, place: str = "") -> None:
    """One monitoring probe; ``place``: where it was probed from, for a site with places."""
    PROBES.labels(site=site, place=place, result="ok" if ok else "failed").inc()


def exposition() -> bytes:
    """This process's metrics in Prometheus' text format (what a worker pushes)."""
    return generate_latest(REGISTRY)


@dataclass
class Snapshot:
    """What one scrape shows besides the web process's own registry."""

    workers: dict[str, str] = field(default_factory=dict)  # worker name -> its exposition
    queue_depth: dict[str, int] = field(default_factory=dict)  # queue -> jobs waiting
    open_incidents: int | None = None  # None: no alerting (no Redis)


def merged(own: Iterable[Metric], snapshot: Snapshot) -> list[Metric]:
    """The web process's metrics, every worker's, and the install's gauges, as families."""
    families: dict[str, Metric] = {}

    def add(metric: Metric, process: str) -> None:
        family = families.get(metric.name)
        if family is None:
            family = families[metric.name] = Metric(
                metric.name, metric.documentation, metric.type, metric.unit
            )
        for s in metric.samples:
            labels = {**s.labels, "process": process}
            family.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))

    for metric in own:
        add(metric, "web")
    for name, text in sorted(snapshot.workers.items()):
        for metric in text_string_to_metric_families(text):
            add(metric, name)
    out = list(families.values())
    depth = GaugeMetricFamily(
        "badgateway_queue_depth", "Jobs waiting in each queue for a worker.", labels=["queue"]
    )
    for queue, count in sorted(snapshot.queue_depth.items()):
        depth.add_metric([queue], count)
    out.append(depth)
    if snapshot.open_incidents is not None:
        out.append(
            GaugeMetricFamily(
                "badgateway_open_incidents",
                "Alert incidents open now.",
                value=snapshot.open_incidents,
            )
        )
    return out


class _Families:
    """A collector that yields families already built (for generate_latest)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged(REGISTRY.collect(), snapshot)))  # type: ignore[arg-type]
    return generate_latest(registry)


def add_metrics_route(app: web.Application, snapshot: Callable[[], Awaitable[Snapshot]]) -> None:
    """``GET /metrics``: ``snapshot`` reads the workers' pushes and the install's gauges."""

    async def metrics(_request: web.Request) -> web.Response:
        body = render(await snapshot())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get(METRICS_PATH, metrics)
