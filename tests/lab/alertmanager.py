"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``, 0.25) in front of the
bot's alert webhook, for the tests that check the bot takes Alertmanager as it really works:
a group's every alert in every notification, resolved alerts among firing ones, 4xx answers
never retried by the same notification but resent at the next ``group_interval``.

Started like nginx in tests/lab/process.py: the binary as a process (never the service) on a
loopback port picked at run time, its configuration and storage in the test's tmp dir, its
cluster listener off. Routing is short (group_wait 0.3 s, group_interval and repeat_interval
0.5 s: Alertmanager then sends an unchanged group again about once a second, a changed one
within half a second), and its one receiver is the bot's ``/alerts/alertmanager`` with the
bearer token.

Use::

    async def test_x(alertmanager: Alertmanager, bot: Bot):
        down = {"site": "shop", "alertname": "ProbeFailed"}
        await alertmanager.fire((down, "shop is down"), (other_labels, "its summary"))
        await alertmanager.resolve(down)
        await alertmanager.metric("alertmanager_notifications_failed_total")

The fixture ``alertmanager`` is registered in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.lab.alerts import ALERTS_TOKEN, Bot
from tests.lab.process import ManagedProcess, free_port, require_binary, wait_for_port

GROUP_WAIT = "300ms"
GROUP_INTERVAL = "500ms"
REPEAT_INTERVAL = "500ms"


def _config(webhook_url: str, token: str) -> str:
    # JSON is YAML: no YAML library needed, and every value is quoted as it must be.
    return f"""{{
  "route": {{
    "receiver": "badgateway",
    "group_by": ["site"],
    "group_wait": "{GROUP_WAIT}",
    "group_interval": "{GROUP_INTERVAL}",
    "repeat_interval": "{REPEAT_INTERVAL}"
  }},
  "receivers": [{{
    "name": "badgateway",
    "webhook_configs": [{{
      "url": "{webhook_url}",
      "send_resolved": true,
      "http_config": {{"authorization": {{"type": "Bearer", "credentials": "{token}"}}}}
    }}]
  }}]
}}
"""


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alertmanager:
    """One Alertmanager process whose only receiver is ``webhook_url``."""

    def __init__(self, directory: Path, webhook_url: str, token: str = ALERTS_TOKEN) -> None:
        self.binary = require_binary("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager")
        self.directory = directory
        self.port = free_port()
        self.config = directory / "alertmanager.yml"
        self.config.write_text(_config(webhook_url, token))
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port: one instance, loopback only
            "--log.level=debug",  # each notification and its answer, for a failing test
        ]
        self.process = ManagedProcess(argv, self.directory / "alertmanager.log")
        wait_for_port(self.port, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def output(self) -> str:
        log = self.directory / "alertmanager.log"
        return log.read_text(errors="replace") if log.exists() else ""

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """``POST /api/v2/alerts``, as Prometheus sends its alerts."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/api/v2/alerts", json=alerts) as response,
        ):
            assert response.status == 200, await response.text()

    async def fire(self, *alerts: tuple[dict[str, str], str]) -> None:
        """Alerts (labels, summary) that fire from now until resolved, sent together as
        Prometheus sends one evaluation's. They start now: an alert older than group_wait
        makes Alertmanager notify at once, before the others have joined its group."""
        now = datetime.now(UTC)
        await self.post_alerts(
            [
                {
                    "labels": labels,
                    "annotations": {"summary": summary},
                    "startsAt": _when(now),
                    "endsAt": _when(now + timedelta(hours=1)),
                    "generatorURL": "http://127.0.0.1/graph",
                }
                for labels, summary in alerts
            ]
        )

    async def resolve(self, *alerts: dict[str, str]) -> None:
        """The same alerts (same labels) ending now: Alertmanager sends them as resolved."""
        now = datetime.now(UTC)
        await self.post_alerts(
            [
                {
                    "labels": labels,
                    "startsAt": _when(now - timedelta(minutes=1)),
                    "endsAt": _when(now - timedelta(milliseconds=1)),
                }
                for labels in alerts
            ]
        )

    async def metric(self, name: str) -> float:
        """The sum of a counter over its label sets, from ``/metrics``."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + "/metrics") as response,
        ):
            text = await response.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


async def notifications(bot: Bot, count: int, within_s: float = 10.0) -> None:
    """Wait until the bot has answered ``count`` Alertmanager notifications in all."""
    deadline = time.monotonic() + within_s
    while len(bot.answered()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(bot.answered())} of {count} notifications came")
        await asyncio.sleep(0.05)


@pytest.fixture
def alertmanager(bot: Bot, tmp_path: Path) -> Iterator[Alertmanager]:
    """Alertmanager notifying the ``bot`` fixture's webhook; its log is shown on failure."""
    manager = Alertmanager(tmp_path, bot.base + "/alerts/alertmanager")
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()
        print(manager.output()[-4000:])  # pytest shows it for a failing test only
