"""Bench part a: how fast the web process answers signed `/502 SITE` slash commands at rising
rates (Slack shows the user an error when the answer takes 3 s or more).

Open loop: request i of a phase is sent at i / rate seconds whatever the earlier ones are
doing, each from its own channel (as many people in many channels would), all for one
failing site. Each phase's p50/p99/max answer time, and the non-200 answers. Phases follow
one another in one deployment, so the later ones run while the earlier ones' diagnoses and
posts are still under way — what a busy incident looks like.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.deployment import Deployment, percentile
from bench.plan import Plan
from bench.stack import Stack, sites_toml

SITE = "ackshop"


async def _phase(
    bot: Deployment, session: aiohttp.ClientSession, rate: float, count: int, phase: int
) -> dict[str, Any]:
    started = time.monotonic()

    async def one(n: int) -> tuple[int, float]:
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        channel, user = f"C0ACK{phase}{n:04d}", f"U0ACK{phase}{n:04d}"
        return await bot.send_slash(session, SITE, channel, user)

    answers = await asyncio.gather(*(one(n) for n in range(count)))
    seconds = [s for _, s in answers]
    return {
        "rate_per_s": rate,
        "requests": count,
        "p50_ms": round(1000 * (percentile(seconds, 0.5) or 0), 1),
        "p99_ms": round(1000 * (percentile(seconds, 0.99) or 0), 1),
        "max_ms": round(1000 * max(seconds), 1),
        "not_200": sum(1 for status, _ in answers if status != 200),
        "over_3s": sum(1 for s in seconds if s >= 3.0),
    }


async def run(stack: Stack, directory: Path, plan: Plan) -> dict[str, Any]:
    async with Deployment(directory, sites_toml(stack, [SITE]), 1, plan.env) as bot:
        connector = aiohttp.TCPConnector(limit=0)  # open loop: no client-side queueing
        async with aiohttp.ClientSession(connector=connector) as session:
            phases = [
                await _phase(bot, session, rate, count, n)
                for n, (rate, count) in enumerate(plan.rates)
            ]
        return {
            "site": SITE,
            "workers": 1,
            "phases": phases,
            **await bot.figures(),
        }
