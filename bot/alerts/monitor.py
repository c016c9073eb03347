"""Scheduled probes: every configured site, every ``interval_s`` (jittered), run by the workers.

Scheduling goes through SAQ, not a loop in the web process: a unique ``CronJob``
(``monitor_tick``, every few seconds) looks up which sites are due in a Redis sorted set
(site → next due time) and enqueues one ``monitor_site`` job per due site, keyed
``monitor:SITE`` so a site never has two probes queued or running at once. Each site's
next due time is its interval ± 10 %, so fifty sites do not all fire in the same second.
A probe is one quick GET (``checks.http_probe.fetch``, cache busted) at the address
``checks.runner.prepare`` resolved and vetted; its result feeds ``Incidents.observe``, and
is kept as a thin probe point in the site's history (bot.history_store) for its timeline.

A site with places (``Settings.vantages_for(site)``) is probed from each instead: one
``bgw.monitor_probe`` job per place on queue ``probe@PLACE``, which the vantage worker of that
place runs (with its own view of DNS and the network) and answers with its outcome. The
``monitor_site`` job waits for them at most ``place_wait_s``; a place that did not answer by
then is unknown and its job is taken back. bot.alerts.places judges the answers (failing
from ``quorum_for(site)`` places opens the incident) and says from where.

The worker assembly (bot.assemble.worker) adds ``MONITOR_FUNCTIONS`` and
``monitor_cron_jobs()`` to the default queue's workers and puts an ``Incidents`` in their
context under ``"alerts"``, the history store under ``"history"`` and, for sites with
places, ``"place_queue"``: the SAQ queue of a name. Every worker serving a ``probe@…`` queue
runs ``place_probe_functions(settings)`` (registered with bot.queue.worker).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from saq import CronJob, Queue
from saq.job import TERMINAL_STATUSES, Job, Status

from badgateway.bot import metrics, storage
from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.places import (
    ProbeOutcome,
    combine,
    outcome_from_dict,
    outcome_to_dict,
    states,
    where,
)
from badgateway.bot.history_store import HISTORY_BUDGET_S, HistoryStore
from badgateway.checks.guard import TargetRefused
from badgateway.checks.http_probe import cache_busted, fetch
from badgateway.checks.http_status import server_failed
from badgateway.checks.places import place_queue
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings, Site
from badgateway.checks.target import BadTarget
from badgateway.checks.timeline import ProbePoint

log = logging.getLogger(__name__)

JITTER = 0.1  # ± share of the interval
TICK_CRON = "* * * * * */5"  # croniter's sixth field is seconds: every 5 s
PLACE_PROBE_JOB = "bgw.monitor_probe"
PLACE_GRACE_S = 3.0  # beyond a probe's own time: dequeueing, Redis round trips
PLACE_POLL_S = 0.2  # how often the monitor looks whether the places have answered

QueueOf = Callable[[str], Queue]  # the SAQ queue of a name (the worker's ctx "place_queue")


def site_facts(
    site: Site, ctx_addresses: tuple[str, ...], extra: dict[str, list[str]]
) -> dict[str, list[str]]:
    """What a storm's grouped alert compares across sites."""
    facts: dict[str, list[str]] = {"upstream": list(site.upstreams)}
    if ctx_addresses:
        facts["address"] = list(ctx_addresses)
        facts["answer"] = [", ".join(sorted(ctx_addresses))]
    for kind, values in extra.items():
        facts.setdefault(kind, []).extend(values)
    return facts


async def probe_site(site: Site, settings: Settings) -> ProbeOutcome:
    """One quick GET of the site. A 5xx, a timeout, a refused connection or a DNS failure
    is a failure; anything else (even a 404) means the site answers."""
    try:
        # By name: the context (kept to diagnose with) then names this site, not the first
        # one at the same address. A vantage worker without the site in its own sites file
        # (it needs none) probes the URL.
        ctx = await prepare(site.name if settings.site_named(site.name) else site.url, settings)
    except (TargetRefused, BadTarget) as exc:
        return ProbeOutcome(False, f"not probed: {exc}", site_facts(site, (), {}))
    if ctx.resolve_error:
        kind = ctx.resolve_kind or "failure"
        facts = site_facts(site, (), {"answer": [kind]})
        return ProbeOutcome(False, f"DNS {kind}: {ctx.resolve_error}", facts, ctx.to_dict())
    attempt = await fetch(ctx, cache_busted(site.url), follow_redirects=False)
    total_ms = attempt.phases.get("total")
    extra: dict[str, list[str]] = {}
    if server := attempt.headers.get("server"):
        extra["edge"] = [server.split("/")[0]]
    if attempt.status is not None:
        ok = not server_failed(attempt.status)
        if not ok:
            extra["failure"] = [f"HTTP {attempt.status}"]
        what = f"HTTP {attempt.status} {attempt.reason}".strip() + f" from {site.url}"
        facts = site_facts(site, ctx.addresses, extra)
        return ProbeOutcome(ok, what, facts, ctx.to_dict(), total_ms)
    error = attempt.error or {"kind": "error", "message": "no response"}
    extra["failure"] = [error.get("kind", "error")]
    what = f"{error.get('message') or error.get('kind')} ({site.url})"
    facts = site_facts(site, ctx.addresses, extra)
    return ProbeOutcome(False, what, facts, ctx.to_dict(), total_ms)


def place_wait_s(settings: Settings) -> float:
    """How long the monitor waits for a place's answer: its probe resolves and GETs, each
    within ``timeout_s``, plus the time to be taken from the queue."""
    return settings.timeout_s * 2 + PLACE_GRACE_S


def probe_timeout_s(settings: Settings, incidents: Incidents) -> int:
    """A probe job's SAQ timeout: the probe (or waiting for the places'), the storm hold, and
    posting."""
    return int(settings.timeout_s * 2 + PLACE_GRACE_S + incidents.policy.storm_hold_s + 30)


def place_probe_functions(settings: Settings) -> list[tuple[str, Any]]:
    """The job a vantage worker runs for the monitor: probe one site from here, with this
    worker's settings (its resolvers, its view; the site as its own sites file has it, else
    by the URL the monitor sent), and answer what it saw."""

    async def monitor_probe(
        ctx: dict[str, Any], *, site: str, url: str, place: str
    ) -> dict[str, Any]:
        outcome = await probe_site(settings.site_named(site) or Site(site, url), settings)
        return {"site": site, "place": place, **outcome_to_dict(outcome)}

    return [(PLACE_PROBE_JOB, monitor_probe)]


async def probe_from_places(
    queue_of: QueueOf, site: Site, places: Sequence[str], wait_s: float
) -> dict[str, ProbeOutcome | None]:
    """One probe of ``site`` from each place, through its ``probe@PLACE`` queue; a place whose
    worker did not answer within ``wait_s`` is None, and its job is taken back (a place whose
    worker is gone does not collect stale probes)."""
    round_id = uuid.uuid4().hex[:10]
    jobs: dict[str, tuple[Queue, str]] = {}
    for place in places:
        queue = queue_of(place_queue(place))
        key = f"monitor:{site.name}:{round_id}@{place}"
        probe = Job(
            function=PLACE_PROBE_JOB,
            kwargs={"site": site.name, "url": site.url, "place": place},
            key=key,
            timeout=max(1, int(wait_s)),
            retries=1,  # a lost probe is made up by the next round
            ttl=600,
        )
        await queue.enqueue(probe)
        jobs[place] = (queue, key)
    found: dict[str, Job] = {}
    deadline = time.monotonic() + wait_s
    while True:
        for place, (queue, key) in jobs.items():
            if place not in found and (seen := await queue.job(key)) is not None:
                if seen.status in TERMINAL_STATUSES:
                    found[place] = seen
        if len(found) == len(jobs) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(PLACE_POLL_S)
    answers: dict[str, ProbeOutcome | None] = {}
    for place, (queue, key) in jobs.items():
        done = found.get(place)
        if done is None:
            late = await queue.job(key)
            if late is not None and late.status not in TERMINAL_STATUSES:
                await queue.abort(late, f"no vantage worker for {place} answered in time")
            answers[place] = None
            continue
        answers[place] = outcome_from_dict(done.result) if done.status == Status.COMPLETE else None
    return answers


async def schedule_due_probes(
    queue: Queue, redis: Redis, settings: Settings, incidents: Incidents, now: float | None = None
) -> list[str]:
    """Enqueue a probe for every site that is due; returns the names enqueued."""
    now = time.time() if now is None else now
    names = {site.name for site in settings.sites}
    due_key = storage.key("alert", "monitor", "due")
    # A new site starts within one interval, at a random point, so sites spread out.
    for site in settings.sites:
        await redis.zadd(due_key, {site.name: now + random.uniform(0, site.interval_s)}, nx=True)
    for stale in set(await redis.zrange(due_key, 0, -1)) - names:
        await redis.zrem(due_key, stale)
    enqueued: list[str] = []
    for name in await redis.zrangebyscore(due_key, "-inf", now):
        due = settings.site_named(name)
        if due is None:
            continue
        job = await queue.enqueue(
            "monitor_site",
            key=f"monitor:{name}",
            site=name,
            timeout=probe_timeout_s(settings, incidents),
            retries=1,  # a missed probe is made up by the next one
            ttl=600,
        )
        if job is not None:
            enqueued.append(name)
        spread = random.uniform(1 - JITTER, 1 + JITTER)
        await redis.zadd(due_key, {name: now + due.interval_s * spread}, xx=True)
    return enqueued


async def monitor_tick(ctx: dict[str, Any]) -> list[str]:
    """CronJob: enqueue the due probes, and post incidents whose poster died in its hold."""
    incidents: Incidents = ctx["alerts"]
    worker = ctx["worker"]
    enqueued = await schedule_due_probes(
        worker.queue, incidents.store.redis, incidents.settings, incidents
    )
    await incidents.flush()
    return enqueued


async def monitor_site(ctx: dict[str, Any], *, site: str) -> dict[str, Any]:
    """Job: probe one site and move its incident. Safe to run twice (SAQ is at-least-once):
    a doubled probe only counts one more result in the streak."""
    incidents: Incidents = ctx["alerts"]
    configured = incidents.settings.site_named(site)
    if configured is None:
        return {"site": site, "skipped": "not configured"}
    started = datetime.now(UTC).isoformat(timespec="milliseconds")  # probes come seconds apart
    places = incidents.settings.vantages_for(configured)
    if places:
        wait_s = place_wait_s(incidents.settings)
        answers = await probe_from_places(ctx["place_queue"], configured, places, wait_s)
        for place, answer in answers.items():
            if answer is None:
                continue
            metrics.probe(site, answer.ok, place)
            point = ProbePoint(site, started, answer.ok, answer.what[:200], answer.total_ms, place)
            await keep_probe(ctx.get("history"), point)
        judged = combine(answers, incidents.settings.quorum_for(configured))
        if judged is None:  # no place said it works, too few that it fails: nothing to judge
            log.warning("%s: too few places answered to judge it: %s", site, where(states(answers)))
            answered = {p: a is not None for p, a in answers.items()}
            return {"site": site, "ok": None, "answered": answered}
        outcome = judged
    else:
        outcome = await probe_site(configured, incidents.settings)
        metrics.probe(site, outcome.ok)
        await keep_probe(
            ctx.get("history"),
            ProbePoint(site, started, outcome.ok, outcome.what[:200], outcome.total_ms),
        )
    incident = await incidents.observe(configured, outcome)
    await incidents.settle()
    return {
        "site": site,
        "ok": outcome.ok,
        "what": outcome.what,
        "incident": incident.id if incident else None,
        **({"places": outcome.places} if outcome.places else {}),
    }


async def keep_probe(store: HistoryStore | None, point: ProbePoint) -> None:
    """The probe's point in the site's history: logged and skipped when it cannot be kept
    (the timeline loses a point; the incident never waits on it)."""
    if store is None:
        return
    try:
        async with asyncio.timeout(HISTORY_BUDGET_S):
            await store.probed(point)
    except Exception:
        log.warning("probe point of %s not kept", point.target, exc_info=True)


MONITOR_FUNCTIONS = (monitor_tick, monitor_site)


def monitor_cron_jobs(cron: str = TICK_CRON) -> list[CronJob[Any]]:
    return [CronJob(monitor_tick, cron=cron, unique=True, timeout=60, retries=1)]
