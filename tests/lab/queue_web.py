"""Web processes in queue mode against the Slack stand-in, with real worker processes.

``queue_bot`` (registered in tests/conftest.py): a web process (the real app, Bolt over HTTP,
served on loopback) on a real redis-server, ready to start more (or stop one), the QueueLab's
workers posting into the Slack stand-in, and a loopback HTTP server to diagnose
(``target``). Used by the scenarios about what the queue does when parts are missing
(tests/scenarios/test_cannot_work.py) and about delivering to many threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from badgateway.bot.assemble.web import WebProcess, build_web
from badgateway.bot.config import AlertPolicy, BotConfig
from badgateway.bot.slack.server import EVENTS_PATH, READY_PATH
from badgateway.checks.settings import Settings, load_settings
from tests.lab.fixtures_redis import (
    LAB_TUNING,
    LabWorker,
    QueueLab,
    RedisServer,
    SleepyHTTPServer,
)
from tests.lab.fixtures_slack import SIGNING_SECRET, BotUnderTest, SlackSigner, SlackStandIn
from tests.lab.process import serve_app

OPS = "C0OPS0001"
TOKEN = "xoxb-cannot-work"
WAIT_S = 1.0  # BADGATEWAY_WORKER_WAIT_S in these tests
ALERTS_TOKEN = "alerts-secret"


@dataclass
class QueueBot:
    """Web processes in queue mode (one to start with; a test may start more, or stop one),
    their workers (a QueueLab's) and the Slack stand-in."""

    lab: QueueLab
    slack: SlackStandIn
    webs: list[BotUnderTest] = field(default_factory=list)
    _runners: dict[int, web.AppRunner] = field(default_factory=dict)

    @property
    def bot(self) -> BotUnderTest:
        return self.webs[0]

    @property
    def base(self) -> str:  # http://127.0.0.1:PORT of the first web process
        return self.bot.url.removesuffix(EVENTS_PATH)

    async def start_web(self, settings: Settings, wait_s: float = WAIT_S) -> BotUnderTest:
        """One more web process (the real app, served on loopback) on the same Redis."""
        config = BotConfig(
            slack_bot_token=TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.slack.base_url,
            redis_url=self.lab.redis_server.url,
            worker_wait_s=wait_s,
            alerts_token=ALERTS_TOKEN,
            tuning=LAB_TUNING,  # the web process's queue timings, as the lab's
            alert_policy=AlertPolicy(storm_hold_s=0.2),  # an alert is posted at once
        )
        process: WebProcess = build_web(config, settings)
        runner, port = await serve_app(process.web_app())
        signer = SlackSigner(SIGNING_SECRET, self.slack.response_url)
        started = BotUnderTest(f"http://127.0.0.1:{port}{EVENTS_PATH}", process, self.slack, signer)
        self.webs.append(started)
        self._runners[id(started)] = runner
        return started

    async def stop_web(self, web_bot: BotUnderTest) -> None:
        self.webs.remove(web_bot)
        await self._runners.pop(id(web_bot)).cleanup()
        await web_bot.runtime.close()

    def target(self, delay_s: float = 0.0) -> str:
        # The trailing "/" keeps the delay apart from the checks' cache-busting query.
        return self.lab.http.url(delay_s) + "/"

    async def start_worker(self, name: str, concurrency: int = 10, **env: str) -> LabWorker:
        """A worker posting into Slack (no lab sink), started in a thread: the stand-in
        answers from this loop meanwhile."""
        worker_env = {"BADGATEWAY_SINK": "", "SLACK_BOT_TOKEN": TOKEN, **env}
        worker_env.setdefault("SLACK_API_URL", self.slack.base_url)
        return await asyncio.to_thread(
            self.lab.start_worker, name, "default", concurrency, worker_env
        )

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.base + READY_PATH) as response,
        ):
            return response.status, await response.json()

    async def until_ready(self, status: int, within_s: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            code, body = await self.ready()
            if code == status:
                return body
            assert asyncio.get_running_loop().time() < deadline, (code, body)
            await asyncio.sleep(0.1)

    def verdicts(self, root_ts: str) -> list[str]:
        return [m.text for m in self.slack.thread(root_ts) if m.text.startswith("verdict:")]

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in self.lab.workers)


async def _post_alert(web_bot: BotUnderTest, path: str, body: dict[str, Any]) -> None:
    """An alert webhook's POST to that web process, with the token (202 expected)."""
    url = web_bot.url.removesuffix(EVENTS_PATH) + path
    headers = {"Authorization": f"Bearer {ALERTS_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        assert response.status == 202, await response.text()


async def fire_alert(web_bot: BotUnderTest, site: str) -> None:
    """A simple webhook's firing alert for ``site``, to that web process (202 expected)."""
    body = {"site": site, "status": "firing", "summary": "502s on the storefront"}
    await _post_alert(web_bot, "/alerts", body)


async def fire_grouped_alert(web_bot: BotUnderTest, names: list[str]) -> None:
    """One Alertmanager notification with a firing alert per site: a storm (5 sites or more)."""
    body = {
        "version": "4",
        "status": "firing",
        "groupLabels": {"alertname": "SiteDown"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "SiteDown", "site": name},
                "annotations": {"summary": f"{name} answers 502"},
                "fingerprint": f"{n:016x}",
            }
            for n, name in enumerate(names)
        ],
    }
    await _post_alert(web_bot, "/alerts/alertmanager", body)


def lab_sites(path: Path, site_url: str | None = None) -> Path:
    """Loopback allowed, one quick attempt per probe; a monitored site when ``site_url``."""
    text = (
        '[settings]\nallow_networks = ["127.0.0.0/8"]\ntimeout_s = 3\nreload_attempts = 1\n'
        f'reload_spacing_s = 0\ndiagnosis_budget_s = 6\ndefault_channel = "{OPS}"\n'
    )
    if site_url:
        text += f'\n[[site]]\nname = "shop"\nurl = "{site_url}"\ninterval_s = 3600\n'
    path.write_text(text, encoding="utf-8")
    return path


@pytest_asyncio.fixture
async def queue_bot(
    slack_api: SlackStandIn,
    redis_server: RedisServer,
    tmp_path: Path,
) -> AsyncIterator[QueueBot]:
    http = SleepyHTTPServer()
    sites = lab_sites(tmp_path / "sites.toml")
    settings = load_settings(sites)
    lab = QueueLab(redis_server, http, tmp_path, sites, settings)
    queue_bot = QueueBot(lab, slack_api)
    try:
        await queue_bot.start_web(settings)
        yield queue_bot
    finally:
        for web_bot in list(queue_bot.webs):
            await queue_bot.stop_web(web_bot)
        await asyncio.to_thread(lab.close)
        http.close()
