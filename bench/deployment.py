"""The bot deployed for the benchmark as it runs in production, on loopback: one real
redis-server, the web process (`python -m badgateway.bot.cli serve`) and N worker processes
(`python -m badgateway.bot.cli worker`) with production queue timings, the Slack Web API stand-in of
tests/lab enforcing Slack's documented rate limits, and a sites file written for the part.

A fresh deployment per bench part, so that one part's posting backlog, single-flight window
or job statistics never colour another's figures. The stand-in runs in the bench's own event
loop: everything here that waits does so without blocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from badgateway.bot.queue.job_kinds import DIAGNOSE_JOB, PART_JOB, STEP_JOB
from badgateway.bot.queue.saq_queue import saq_key
from badgateway.bot.queue.store import DiagnosisStore
from tests.lab import REPO
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackSigner, SlackStandIn, sign
from tests.lab.process import ManagedProcess, free_port, wait_for_port
from tests.lab.slack_limits import SlackLimits

BOT_TOKEN = "xoxb-bench-token"
ALERTS_TOKEN = "bench-alerts-token"
# The jobs of a diagnosis; the others (monitoring ticks, deadlines) are scheduled ahead on
# purpose, so their wait is mostly the schedule's.
DIAGNOSIS_JOBS = (DIAGNOSE_JOB, STEP_JOB, PART_JOB)
# Settings of the surrounding shell that would change what is measured.
NOT_INHERITED = (
    "SLACK_APP_TOKEN",
    "BADGATEWAY_SINK",
    "BADGATEWAY_LAB_REJECT",
    "BADGATEWAY_PROFILE",
    "BADGATEWAY_SITES",
    "REDIS_URL",
)
START_WITHIN_S = 30.0
STOP_WITHIN_S = 5.0


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (p99 of 50 values is the largest), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), read before it is stopped."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _spread(waits: list[float]) -> dict[str, Any]:
    return {
        "jobs": len(waits),
        "p50_ms": percentile(waits, 0.5),
        "p99_ms": percentile(waits, 0.99),
        "max_ms": max(waits, default=None),
    }


@dataclass
class Deployment:
    """``async with Deployment(directory, sites_toml, workers=4) as bot:`` — running."""

    directory: Path
    sites_toml: str
    workers: int = 1
    env_extra: dict[str, str] = field(default_factory=dict)
    slack: SlackStandIn = field(default_factory=lambda: SlackStandIn(limits=SlackLimits()))
    redis_server: RedisServer = field(init=False)
    port: int = field(init=False, default=0)
    web: ManagedProcess | None = field(init=False, default=None)
    worker_processes: dict[str, ManagedProcess] = field(init=False, default_factory=dict)
    signer: SlackSigner = field(init=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def limits(self) -> SlackLimits:
        assert self.slack.limits is not None
        return self.slack.limits

    async def __aenter__(self) -> Deployment:
        self.directory.mkdir(parents=True)
        (self.directory / "redis").mkdir()
        self.redis_server = RedisServer(self.directory / "redis")
        await asyncio.to_thread(self.redis_server.start)
        await self.slack.start()
        self.signer = SlackSigner(SIGNING_SECRET, self.slack.response_url)
        sites = self.directory / "sites.toml"
        sites.write_text(self.sites_toml, encoding="utf-8")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": self.slack.base_url,
                "REDIS_URL": self.redis_server.url,
                "PORT": str(self.port),
                "BADGATEWAY_SITES": str(sites),
                "ALERTS_TOKEN": ALERTS_TOKEN,
                **self.env_extra,
            }
        )
        try:
            self.web = self._spawn("web", env, "serve")
            for n in range(self.workers):
                name = f"w{n + 1}"
                worker_env = {**env, "BADGATEWAY_WORKER_NAME": name}
                self.worker_processes[name] = self._spawn(
                    f"worker-{name}", worker_env, "worker", "--queues", "default"
                )
            await asyncio.gather(self._web_ready(), self._workers_ready())
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _spawn(self, name: str, env: dict[str, str], *args: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "badgateway.bot.cli", *args]
        return ManagedProcess(argv, self.directory / f"{name}.log", env=env, cwd=str(REPO))

    async def _web_ready(self) -> None:
        """Ready once it listens: serve opens its port after the app is built."""
        assert self.web is not None
        try:
            await asyncio.to_thread(wait_for_port, self.port, timeout=START_WITHIN_S)
        except TimeoutError:
            raise RuntimeError(f"serve did not start:\n{self.web.output()[-3000:]}") from None

    async def _workers_ready(self) -> None:
        """Ready once each worker has written its SAQ worker-info record."""
        redis = Redis.from_url(self.redis_server.url)
        deadline = time.monotonic() + START_WITHIN_S
        try:
            for name, process in self.worker_processes.items():
                while not await redis.exists(saq_key("default", "worker_info", f"{name}-default")):
                    if process.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"worker {name} did not start:\n{process.output()}")
                    await asyncio.sleep(0.05)
        finally:
            await redis.aclose()

    def peak_rss(self) -> dict[str, float | None]:
        """Peak RSS (MiB) of the web process and of each worker, while they still run."""
        rss = {"web": peak_rss_mib(self.web.proc.pid) if self.web else None}
        rss.update({n: peak_rss_mib(p.proc.pid) for n, p in self.worker_processes.items()})
        return rss

    async def figures(self) -> dict[str, Any]:
        """What every part reports once it is done: Slack's accepted posts and updates, its
        429s (and those retried before their Retry-After), peak memory, queue waits."""
        return {
            "posts": len(self.slack.calls_of("chat.postMessage", ok_only=True)),
            "updates": len(self.slack.calls_of("chat.update", ok_only=True)),
            "refused_429": self.limits.refused,
            "unhonoured_429": self.limits.unhonoured,
            "unhonoured_429_by_method": self.unhonoured_by_method(),
            "refused_429_by_method": self.refused_by_method(),
            "peak_rss_mib": self.peak_rss(),
            "enqueue_to_start": await self.enqueue_to_start(),
        }

    def unhonoured_by_method(self) -> dict[str, int]:
        """The 429s retried before their Retry-After, by Web API method."""
        counts: dict[str, int] = {}
        for call in self.limits.unhonoured_calls:
            method = str(json.loads(call)[0]) if call.startswith("[") else call.split()[0]
            counts[method] = counts.get(method, 0) + 1
        return counts

    def refused_by_method(self) -> dict[str, int]:
        """Slack's 429s, by Web API method."""
        counts: dict[str, int] = {}
        for call in self.slack.calls:
            if call.status == 429:
                counts[call.method] = counts.get(call.method, 0) + 1
        return counts

    async def enqueue_to_start(self) -> dict[str, Any]:
        """Enqueue-to-start of the recent jobs (the newest 1,000), from the queue's own
        timestamps: SAQ's ``queued`` and ``started`` of each job, as the workers record them
        (bot/queue/jobs.py); of the diagnosis jobs, and by job function."""
        redis = Redis.from_url(self.redis_server.url)
        try:
            entries = await DiagnosisStore(redis, 60).recent_jobs()
        finally:
            await redis.aclose()
        by_function: dict[str, list[float]] = {}
        for entry in entries:
            if entry.get("wait_ms") is not None:
                by_function.setdefault(str(entry["function"]), []).append(float(entry["wait_ms"]))
        diagnosis = [w for name in DIAGNOSIS_JOBS for w in by_function.get(name, [])]
        return {
            **_spread(diagnosis),
            "by_function": {name: _spread(waits) for name, waits in sorted(by_function.items())},
        }

    async def send_slash(
        self, session: aiohttp.ClientSession, text: str, channel: str, user: str
    ) -> tuple[int, float]:
        """A signed `/502 text` from ``channel``; returns (HTTP status, seconds to answer)."""
        body, content_type = self.signer.slash_command(text, channel=channel, user=user)
        headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}
        started = time.monotonic()
        async with session.post(
            f"{self.base}/slack/events", data=body.encode(), headers=headers
        ) as response:
            await response.read()
            return response.status, time.monotonic() - started

    async def alert(self, payload: dict[str, Any]) -> int:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ALERTS_TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.base}/alerts/alertmanager", data=json.dumps(payload), headers=headers
            ) as response,
        ):
            await response.read()
            return response.status

    async def until(self, condition: Callable[[], bool], within_s: float) -> float | None:
        """Seconds until ``condition`` holds (checked every 50 ms), None if not within."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > within_s:
                return None
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def aclose(self) -> None:
        processes = [*self.worker_processes.values(), *([self.web] if self.web else [])]
        # Blocking waits in threads: the stand-in (this loop) keeps answering while they stop.
        # The figures are taken by now: work still in flight gets STOP_WITHIN_S to finish.
        await asyncio.gather(
            *(asyncio.to_thread(p.stop, signal.SIGTERM, STOP_WITHIN_S) for p in processes)
        )
        await self.slack.stop()
        await asyncio.to_thread(self.redis_server.stop)
