"""Bench part b: time to a verdict for one failing site, beside the runbook a person runs by
hand — the same steps one after another: reload with curl (three times, 0.25 s apart, as the
bot's reload step does), dig the name at the site's DNS server, nc to the edge's port and to
the app's, read the error log's tail. Alternately, in one run, so that both see the same
machine; the medians and their ratio.

The bot is timed twice: in Slack (a signed `/502` to the web process until the verdict reply
is in the thread: queue, worker, and Slack's posting pace included) and in a terminal
(`badgateway diagnose --json`, a fresh process, as a person would type it). The runbook's time
is the machine's only: the minutes a person spends typing and reading are not in it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench.deployment import Deployment
from bench.plan import Plan
from bench.stack import Stack, sites_toml
from tests.lab import REPO

SITE = "runbookshop"
RELOADS, RELOAD_SPACING_S = 3, 0.25


def runbook_commands(stack: Stack) -> list[list[str]]:
    """The commands, in order (a pause of RELOAD_SPACING_S between the curls)."""
    url = urlsplit(stack.url(SITE))
    edge_port = str(url.port)
    upstream_host, upstream_port = stack.upstream_of(SITE).address.rsplit(":", 1)
    dns_host, dns_port = stack.resolver.rsplit(":", 1)
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Cache-Control: no-cache"]
    resolve = ["--resolve", f"{url.hostname}:{edge_port}:127.0.0.1"]
    commands = [[*curl, *resolve, stack.url(SITE)] for _ in range(RELOADS)]
    commands.append(["dig", f"@{dns_host}", "-p", dns_port, str(url.hostname), "A", "+short"])
    for host, port in (("127.0.0.1", edge_port), (upstream_host, upstream_port)):
        if shutil.which("nc"):
            commands.append(["nc", "-z", "-w", "2", host, port])
        else:  # no netcat on this machine: bash's /dev/tcp is the same connect
            commands.append(["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"])
    commands.append(["tail", "-n", "50", str(stack.nginx.error_log)])
    return commands


async def run_runbook(commands: list[list[str]]) -> float:
    started = time.monotonic()
    for n, argv in enumerate(commands):
        if 0 < n < RELOADS:
            await asyncio.sleep(RELOAD_SPACING_S)
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await process.wait()
    return time.monotonic() - started


async def run_terminal(sites: Path) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "badgateway.bot.cli",
        "diagnose",
        SITE,
        "--sites",
        str(sites),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    out, _ = await process.communicate()
    return time.monotonic() - started, json.loads(out)


async def run_slack(bot: Deployment, round_n: int, within_s: float) -> tuple[float | None, str]:
    channel = f"C0RUNBOOK{round_n:02d}"
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        await bot.send_slash(session, SITE, channel, f"U0RUNBOOK{round_n:02d}")

    def verdict() -> str | None:
        for root in bot.slack.roots(channel):
            for reply in bot.slack.thread(root.ts):
                if reply.text.startswith("verdict:"):
                    return reply.text
        return None

    await bot.until(lambda: verdict() is not None, within_s)
    found = verdict()
    took = time.monotonic() - started if found else None
    return took, (found or "").removeprefix("verdict: ").split(" ")[0]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _ratio(bot_s: float | None, runbook_s: float | None) -> float | None:
    return round(bot_s / runbook_s, 2) if bot_s and runbook_s else None


async def run(stack: Stack, directory: Path, plan: Plan) -> dict[str, Any]:
    names = [SITE]
    # Each round a fresh diagnosis: no sharing of the previous round's run.
    env = {**plan.env, "BADGATEWAY_SHARE_WINDOW_S": "0"}
    async with Deployment(directory, sites_toml(stack, names), 1, env) as bot:
        commands = runbook_commands(stack)
        runbook_s: list[float] = []
        terminal_s: list[float] = []
        engine_s: list[float] = []
        slack_s: list[float] = []
        causes: set[str] = set()
        for round_n in range(plan.runbook_rounds):
            runbook_s.append(await run_runbook(commands))
            took, doc = await run_terminal(directory / "sites.toml")
            terminal_s.append(took)
            engine_s.append(doc["duration_ms"] / 1000)
            causes.add(str(doc["verdict"]["cause"]))
            slack, cause = await run_slack(bot, round_n, plan.within_s)
            if slack is not None:
                slack_s.append(slack)
            causes.add(cause or "no verdict")
        figures = {
            "runbook_s": _median(runbook_s),
            "terminal_s": _median(terminal_s),
            "terminal_engine_s": _median(engine_s),
            "slack_s": _median(slack_s),
        }
        return {
            "site": SITE,
            "workers": 1,
            "rounds": plan.runbook_rounds,
            "runbook": [" ".join(argv) for argv in commands],
            **figures,
            "terminal_to_runbook": _ratio(figures["terminal_s"], figures["runbook_s"]),
            "slack_to_runbook": _ratio(figures["slack_s"], figures["runbook_s"]),
            "slack_verdicts": f"{len(slack_s)} of {plan.runbook_rounds}",
            "causes": sorted(causes),
            **await bot.figures(),
        }
