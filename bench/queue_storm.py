"""Bench part c: a storm in queue mode — N sites (200) behind one real nginx fail at once and
Alertmanager sends them as one grouped notification to the web process; the worker processes
(1, then 4) diagnose every site. The time from the webhook until the storm's root accounts
for every site ("Diagnosed: N of N"; the storm hold before the root is posted included, and
from the root's post on), the
posts and updates Slack accepted, its 429s and any retried before their Retry-After, and the
peak memory of the web process and of each worker.

bench/storm_bench.py measures the same storm in one process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from badgateway.bot.config import AlertPolicy
from bench.deployment import Deployment
from bench.plan import Plan
from bench.stack import ALERTS_CHANNEL, Stack, sites_toml, storm_site
from tests.lab.alerts import shown

DEFAULT_HOLD_S = AlertPolicy().storm_hold_s  # included in the time to account for the storm


def grouped_alert(names: list[str]) -> dict[str, Any]:
    """One Alertmanager (webhook version 4) notification: a group of firing alerts, one per
    site, named by the ``site`` label."""
    group = {"alertname": "SiteBadGateway"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SiteBadGateway"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "badgateway",
        "groupLabels": group,
        "commonLabels": {**group, "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {**group, "severity": "page", "site": name},
                "annotations": {"summary": f"{name} answers 502"},
                "startsAt": "2026-12-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": f"{n:016x}",
            }
            for n, name in enumerate(names)
        ],
    }


async def run_one(stack: Stack, directory: Path, plan: Plan, workers: int) -> dict[str, Any]:
    names = [storm_site(n) for n in range(stack.storm_sites)]
    async with Deployment(directory, sites_toml(stack, names), workers, plan.env) as bot:
        slack = bot.slack
        goal = f"*Diagnosed:* {len(names)} of {len(names)}"

        root_at: list[float] = []  # when the root was first seen (the hold is over)

        def accounted() -> bool:
            roots = slack.roots(ALERTS_CHANNEL)
            if roots and not root_at:
                root_at.append(time.monotonic())
            return len(roots) == 1 and goal in shown(slack.message(roots[0].ts))

        started = time.monotonic()
        status = await bot.alert(grouped_alert(names))
        accounted_s = after_root_s = None
        if await bot.until(accounted, plan.within_s) is not None:
            accounted_s = round(time.monotonic() - started, 1)
            after_root_s = round(time.monotonic() - root_at[0], 1)
        return {
            "sites": len(names),
            "workers": workers,
            "webhook_status": status,
            "accounted_for_s": accounted_s,
            # From the root's post to every site on it: what bench/storm_bench.py measures in
            # one process, and what the storm target (<= 15 s) is about.
            "accounted_after_root_s": after_root_s,
            "storm_hold_s": float(plan.env.get("BADGATEWAY_ALERT_STORM_HOLD_S", DEFAULT_HOLD_S)),
            "roots": len(slack.roots(ALERTS_CHANNEL)),
            **await bot.figures(),
        }


async def run(stack: Stack, directory: Path, plan: Plan) -> list[dict[str, Any]]:
    return [await run_one(stack, directory / f"workers-{n}", plan, n) for n in plan.storm_workers]
