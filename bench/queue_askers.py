"""Bench part d (issue 11): `/502 SITE` for one failing site from N channels (50) at once, in
queue mode — the web process and worker processes, Slack's limits on. One run: the time
until every thread is complete (each step's reply and the verdict) and until every root
shows its verdict, the diagnosis runs behind the replies (single-flight: one), duplicates,
posts, updates and 429s.

bench/many_askers_bench.py measures the same in one process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from badgateway.checks.steps import step_names
from bench.deployment import Deployment
from bench.plan import Plan
from bench.stack import Stack, sites_toml

SITE = "askshop"


async def run(stack: Stack, directory: Path, plan: Plan) -> dict[str, Any]:
    channels = [f"C0ASK{n:03d}" for n in range(plan.askers)]
    names = [*step_names(), "verdict"]
    async with Deployment(
        directory, sites_toml(stack, [SITE]), plan.askers_workers, plan.env
    ) as bot:
        slack = bot.slack

        def roots() -> list[Any]:
            return [r for c in channels for r in slack.roots(c)]

        def complete() -> bool:
            found = roots()
            return len(found) == len(channels) and all(
                [m.text.split(":")[0] for m in slack.thread(r.ts)] == names for r in found
            )

        def roots_final() -> bool:
            return all("Verdict:" in str(r.blocks) for r in roots())

        started = time.monotonic()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            answers = await asyncio.gather(
                *(
                    bot.send_slash(session, SITE, channel, f"U0ASK{n:04d}")
                    for n, channel in enumerate(channels)
                )
            )
        threads = await bot.until(complete, plan.within_s)
        threads_s = time.monotonic() - started if threads is not None else None
        final = await bot.until(roots_final, plan.within_s) if threads is not None else None
        roots_s = time.monotonic() - started if final is not None else None
        tagged = [
            (m.channel, m.thread_ts, str(m.metadata["event_payload"]["key"]))
            for m in slack.messages
            if m.metadata
        ]
        runs = {key.split(":")[0] for _, _, key in tagged if not key.startswith("root:")}
        complete_threads = sum(
            1 for r in roots() if [m.text.split(":")[0] for m in slack.thread(r.ts)] == names
        )
        return {
            "channels": len(channels),
            "workers": plan.askers_workers,
            "acks_not_200": sum(1 for status, _ in answers if status != 200),
            "ack_max_ms": round(1000 * max(s for _, s in answers), 1),
            "roots": len(roots()),
            "threads_complete": complete_threads,
            "threads_complete_s": round(threads_s, 1) if threads_s is not None else None,
            "roots_final_s": round(roots_s, 1) if roots_s is not None else None,
            "replies": sum(len(slack.thread(r.ts)) for r in roots()),
            "replies_expected": len(channels) * len(names),
            "diagnosis_runs": len(runs),
            "messages": len(slack.messages),
            "duplicates": len(tagged) - len(set(tagged)),
            **await bot.figures(),
        }
