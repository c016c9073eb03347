"""Scheduled probes: every configured site, every ``interval_s`` (jittered), run by the workers.

Scheduling goes through SAQ, not a loop in the web process: a unique ``CronJob``
(``monitor_tick``, every few seconds) looks up which sites are due in a Redis sorted set
(site → next due time) and enqueues one ``monitor_site`` job per due site, keyed
``monitor:SITE`` so a site never has two probes queued or running at once. Each site's
next due time is its interval ± 10 %, so fifty sites do not all fire in the same second.
A probe is one quick GET (``checks.http_probe.fetch``, cache busted) at the address
``checks.runner.prepare`` resolved and vetted; its result feeds ``Incidents.observe``, and
is kept as a thin probe point in the site's history (bot.history_store) for its timeline.

The worker assembly (bot.assemble.worker) adds ``MONITOR_FUNCTIONS`` and
``monitor_cron_jobs()`` to the default queue's workers and puts an ``Incidents`` in their
context under ``"alerts"``, and the history store under ``"history"``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from saq import CronJob, Queue

from badgateway.bot import metrics, storage
from badgateway.bot.alerts.incidents import Incidents, ProbeOutcome
from badgateway.bot.history_store import HISTORY_BUDGET_S, HistoryStore
from badgateway.checks.guard import TargetRefused
from badgateway.checks.http_probe import cache_busted, fetch
from badgateway.checks.http_status import server_failed
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings, Site
from badgateway.checks.target import BadTarget
from badgateway.checks.timeline import ProbePoint

log = logging.getLogger(__name__)

JITTER = 0.1  # ± share of the interval
TICK_CRON = "* * * * * */5"  # croniter's sixth field is seconds: every 5 s


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
        # one at the same address.
        ctx = await prepare(site.name, settings)
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


def probe_timeout_s(settings: Settings, incidents: Incidents) -> int:
    """A probe job's SAQ timeout: the probe, the storm hold, and posting."""
    return int(settings.timeout_s * 2 + incidents.policy.storm_hold_s + 30)


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
