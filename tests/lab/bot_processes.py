"""The bot's own processes for the operations tests: `python -m badgateway.bot.cli serve` (and, with
Redis, `worker`) started as an operator starts them, against the Slack stand-in, with a sites
file of loopback sites; `/502` arrives signed as Slack sends it.

    web = BotProcesses(slack_api, tmp_path, sites={"shop": url}, env={...})
    await web.start_web()
    await web.slash("shop")
    ...
    web.stop()
    web.lines("web")  # what it logged, one string per line
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from tests.lab import REPO
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackSigner, SlackStandIn, sign
from tests.lab.process import ManagedProcess, free_port

BOT_TOKEN = "xoxb-0000000000-1111111111-ops0lab0token0not0real"
ALERTS_TOKEN = "alerts-0ps-lab-bearer-token"


def sites_file(path: Path, sites: dict[str, str], intervals: dict[str, float]) -> Path:
    """Loopback allowed, one quick reload attempt, and a site per name → URL, monitored every
    hour (never, in a test) unless ``intervals`` says otherwise; alerts go to one channel (a
    site with nowhere to post its alerts stops `serve` and `worker`)."""
    text = """
[settings]
allow_networks = ["127.0.0.0/8"]
timeout_s = 2
reload_attempts = 1
reload_spacing_s = 0
diagnosis_budget_s = 8
default_channel = "C0ALERTS00"
"""
    for name, url in sites.items():
        interval = intervals.get(name, 3600)
        text += f'\n[[site]]\nname = "{name}"\nurl = "{url}"\ninterval_s = {interval}\n'
    path.write_text(text, encoding="utf-8")
    return path


class BotProcesses:
    """A web process (and workers) of one install; every process is stopped by ``stop``."""

    def __init__(
        self,
        slack: SlackStandIn,
        directory: Path,
        sites: dict[str, str],
        env: dict[str, str] | None = None,
        intervals: dict[str, float] | None = None,
    ) -> None:
        self.slack = slack
        self.directory = directory
        self.port = free_port()
        self.signer = SlackSigner(SIGNING_SECRET, slack.response_url)
        # Inherited PYTHONPATH entries stay after the checkout's: where the tests found
        # their dependencies, the processes find them too.
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BADGATEWAY_"))},
            "PYTHONPATH": path,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "ALERTS_TOKEN": ALERTS_TOKEN,
            "PORT": str(self.port),
            "BADGATEWAY_SITES": str(sites_file(directory / "sites.toml", sites, intervals or {})),
            **(env or {}),
        }
        self.processes: dict[str, ManagedProcess] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> ManagedProcess:
        argv = [sys.executable, "-m", "badgateway.bot.cli", *args]
        process = ManagedProcess(
            argv, self.directory / f"{name}.log", env={**self.env, **(env or {})}, cwd=str(REPO)
        )
        self.processes[name] = process
        return process

    async def start_web(self, *cli_args: str) -> ManagedProcess:
        """``serve``, ready once /healthz answers."""
        web = self.spawn("web", *cli_args, "serve")
        await web.until_ok(f"{self.base}/healthz")
        return web

    async def start_worker(self, name: str) -> ManagedProcess:
        """``worker`` on the default queue (needs REDIS_URL in ``env``), ready once its
        worker-info record is in Redis."""
        worker = self.spawn(name, "worker", env={"BADGATEWAY_WORKER_NAME": name})
        prefix = self.env.get("BADGATEWAY_REDIS_PREFIX", "bgw")
        info = f"{prefix}:saq:default:worker_info:{name}-default"
        redis = Redis.from_url(self.env["REDIS_URL"])
        deadline = time.monotonic() + 20
        try:
            while not await redis.exists(info):
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {name} did not start:\n{self.logs()}")
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        return worker

    async def slash(self, text: str) -> int:
        """`/502 TEXT` as Slack sends it; the HTTP status of the bot's acknowledgement."""
        body, content_type = self.signer.slash_command(text)
        headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base}/slack/events", data=body, headers=headers) as response,
        ):
            return response.status

    async def get(self, url: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(signal.SIGTERM, timeout=15)

    def lines(self, name: str) -> list[str]:
        text = self.processes[name].log_path.read_text(errors="replace")  # also once stopped
        return [line for line in text.splitlines() if line.strip()]

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n" + "\n".join(self.lines(n)[-40:]) for n in self.processes)
