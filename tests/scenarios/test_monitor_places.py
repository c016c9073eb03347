"""Monitoring from several places: each place's probe runs on a real vantage worker process
(`badgateway worker --queues probe@PLACE`) with its own sites file, whose resolver (a BIND of
its own) answers that place's view of the site's name: where the app listens, or an address
where nothing listens (a real failure from that place only). The monitor runs in this
process on a real SAQ worker; incidents post to the Slack stand-in.

One place failing pages nobody; two (the quorum) open an incident whose alert says from
where; a place that recovers is said in the thread, and the site recovers once fewer than the
quorum fail. A place whose worker never answers is unknown, not failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from badgateway.bot import metrics, storage
from badgateway.bot.alerts.monitor import (
    monitor_site,
    place_probe_functions,
    probe_from_places,
)
from badgateway.bot.alerts.places import combine
from badgateway.bot.config import QueueTuning
from badgateway.bot.history_store import RedisHistory
from badgateway.bot.queue.saq_queue import QueueHub
from badgateway.checks.places import place_queue
from badgateway.checks.settings import Site
from tests.lab import REPO
from tests.lab.alerts import CHANNEL, App, RecordingCarrier, lab_settings, make_incidents, until
from tests.lab.fixtures_dns import ZoneServer
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.process import ManagedProcess

PLACES = ("eu-west", "us-east", "ap-south")
NAME = "shop.places.test"
UP = "127.0.0.1"  # where the app listens
NOWHERE = "127.0.0.2"  # the same port on another loopback address: refused


def _records(address: str) -> str:
    return f"shop 5 IN A {address}\n"


def _vantage_sites(path: Path, url: str, resolver: str) -> Path:
    """A vantage's own sites file: the site by the same name and URL, resolved with the
    place's own resolver."""
    path.write_text(
        f"""
[settings]
resolvers = ["{resolver}"]
allow_networks = ["127.0.0.0/8"]
timeout_s = 3

[[site]]
name = "shop"
url = "{url}"
channel = "{CHANNEL}"
""",
        encoding="utf-8",
    )
    return path


class Vantages:
    """One vantage worker process per place, each with its resolver (a BIND of its own)."""

    def __init__(self, directory: Path, redis_url: str, url: str) -> None:
        self.directory, self.redis_url, self.url = directory, redis_url, url
        self.zones: dict[str, ZoneServer] = {}
        self.workers: dict[str, ManagedProcess] = {}

    async def start(self, **places: str) -> None:
        """A vantage per place (``eu_west="127.0.0.1"``: its resolver's answer), started
        together; returns once each takes jobs."""
        for name, address in places.items():
            self._spawn(name.replace("_", "-"), address)
        await asyncio.gather(*(self._ready(name.replace("_", "-")) for name in places))

    def _spawn(self, place: str, address: str) -> None:
        zone = ZoneServer(self.directory / f"zone-{place}", "places.test", _records(address))
        self.zones[place] = zone
        sites = _vantage_sites(self.directory / f"{place}.toml", self.url, zone.address)
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BADGATEWAY_"))},
            "PYTHONPATH": path,
            "REDIS_URL": self.redis_url,
            "BADGATEWAY_SITES": str(sites),
            "BADGATEWAY_SINK": "badgateway.bot.assemble.worker:log_sink",
            "BADGATEWAY_WORKER_NAME": f"vantage-{place}",
        }
        argv = [sys.executable, "-m", "badgateway.bot.cli", "worker", "--queues"]
        self.workers[place] = ManagedProcess(
            [*argv, place_queue(place)], self.directory / f"{place}.log", env=env, cwd=str(REPO)
        )

    async def _ready(self, place: str) -> None:
        worker, queue = self.workers[place], place_queue(place)
        info = storage.key("saq", queue, "worker_info", f"vantage-{place}-{queue}")
        redis = Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 20
        try:
            while not await redis.exists(info):
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vantage {place} did not start:\n{worker.output()}")
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()

    def stop(self) -> None:
        for worker in self.workers.values():  # all told at once, then each waited for
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.proc.pid, signal.SIGTERM)
        for worker in self.workers.values():
            worker.stop()
        for zone in self.zones.values():
            zone.stop()


@pytest.fixture
def vantages(tmp_path: Path, redis_url: str, app: App) -> Iterator[Vantages]:
    lab = Vantages(tmp_path, redis_url, f"http://{NAME}:{app.port}/")
    try:
        yield lab
    finally:
        lab.stop()


class Monitor:
    """The monitor's side in this process: each ``round()`` is one ``monitor_site`` job (as
    the cron's tick enqueues it), probing through the places' queues, which the vantage
    worker processes serve; the site's history keeps each place's point."""

    def __init__(
        self, redis: Redis, redis_url: str, slack_api: SlackStandIn, site: Site, resolver: str
    ) -> None:
        self.site = site
        self.history = RedisHistory(redis)
        # The monitor's own resolver: an incident's diagnosis resolves the site here.
        # Probes get 5 s (the monitor waits 13 s for a place): a loaded test machine is slow
        # (once, under CI's four test processes, a place's answer seemed to miss 9 s), and a
        # slow answer here is not what the test is about.
        settings = dataclasses.replace(lab_settings(site), resolvers=(resolver,), timeout_s=5)
        self.incidents = make_incidents(
            redis, slack_api, settings, RecordingCarrier(), history=self.history
        )
        self.hub = QueueHub(Redis.from_url(redis_url, decode_responses=True), QueueTuning())

    async def round(self) -> dict[str, Any]:
        ctx = {"alerts": self.incidents, "history": self.history, "place_queue": self.hub.get}
        return await monitor_site(ctx, site=self.site.name)

    async def kept(self) -> list[str]:
        """Each kept probe point as "place:ok" or "place:down", oldest first."""
        loaded = await self.history.load(self.site.name)
        return [f"{p.place}:{'ok' if p.ok else 'down'}" for p in loaded.probes]

    async def close(self) -> None:
        await self.hub.close()


@pytest_asyncio.fixture
async def monitor(
    redis: Redis, redis_url: str, slack_api: SlackStandIn, app: App, vantages: Vantages
) -> AsyncIterator[Monitor]:
    """Three places, us-east's resolver answering where nothing listens: the site fails from
    there only."""
    await vantages.start(eu_west=UP, us_east=NOWHERE, ap_south=UP)
    site = dataclasses.replace(_site(app), vantages=PLACES)
    watcher = Monitor(redis, redis_url, slack_api, site, vantages.zones["eu-west"].address)
    # Each vantage's first job (its connections, the queue's scripts) out of the way: the
    # rounds below then count as the monitor counts them, answered in time.
    warm = await probe_from_places(watcher.hub.get, site, PLACES, 20)
    assert all(warm.values()), warm
    try:
        yield watcher
    finally:
        await watcher.close()


def _site(app: App) -> Site:
    return Site("shop", f"http://{NAME}:{app.port}/", channel=CHANNEL, interval_s=0.5)


async def test_one_place_failing_pages_nobody_two_open_an_incident_that_says_where(
    slack_api: SlackStandIn, vantages: Vantages, monitor: Monitor
) -> None:
    before = {p: probes_counted(p) for p in PLACES}
    for _ in range(3):  # two failing rounds in a row open an incident; one place is not enough
        done = await monitor.round()
        assert done["places"] == {"eu-west": "fine", "us-east": "down", "ap-south": "fine"}
        assert done["ok"] is True and done["incident"] is None
    assert (await monitor.kept())[-3:] == ["eu-west:ok", "us-east:down", "ap-south:ok"]
    # The probe counter says from where: three rounds, each place once a round.
    after = {p: probes_counted(p) for p in PLACES}
    counted = {p: (after[p][0] - before[p][0], after[p][1] - before[p][1]) for p in PLACES}
    assert counted == {"eu-west": (3, 0), "us-east": (0, 3), "ap-south": (3, 0)}
    assert slack_api.roots() == []

    vantages.zones["ap-south"].serve(_records(NOWHERE))  # a second place fails: the quorum
    for _ in range(2):
        done = await monitor.round()
    assert done["ok"] is False and done["incident"]
    await until(lambda: len(slack_api.roots()) == 1, within_s=5, what="the alert")
    root = slack_api.roots()[0].text
    assert "*shop* is failing" in root
    assert "*Where:* down from us-east, ap-south; fine from eu-west" in root
    assert "(down from us-east, ap-south; fine from eu-west)" in root  # what failed, where

    vantages.zones["ap-south"].serve(_records(UP))  # ap-south recovers, us-east does not
    done = await monitor.round()
    assert done["places"] == {"eu-west": "fine", "us-east": "down", "ap-south": "fine"}, done
    thread = [m.text for m in slack_api.thread(root_ts(slack_api))]
    assert any("Fine again from ap-south" in t for t in thread)
    assert not any("recovered after" in t for t in thread)  # one round: not yet recovered
    await monitor.round()
    thread = [m.text for m in slack_api.thread(root_ts(slack_api))]
    recovered = [t for t in thread if "recovered after" in t]
    assert len(recovered) == 1
    assert recovered[0].endswith("— down from us-east; fine from eu-west, ap-south")
    assert len(slack_api.roots()) == 1


def probes_counted(place: str) -> tuple[float, float]:
    """This process's monitoring probes of shop from ``place``: (ok, failed)."""
    found = {"ok": 0.0, "failed": 0.0}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "badgateway_monitor_probes_total" and labels.get("site") == "shop":
                if labels.get("place") == place:
                    found[labels["result"]] += sample.value
    return found["ok"], found["failed"]


def root_ts(slack_api: SlackStandIn) -> str:
    return slack_api.roots()[0].ts


async def test_a_place_without_a_worker_is_unknown_not_failing(
    redis: Redis, redis_url: str, app: App, vantages: Vantages
) -> None:
    await vantages.start(eu_west=UP)
    hub = QueueHub(Redis.from_url(redis_url, decode_responses=True), QueueTuning())
    try:
        started = time.monotonic()
        answers = await probe_from_places(hub.get, _site(app), ["eu-west", "us-east"], 2.0)
        waited = time.monotonic() - started
        assert answers["us-east"] is None  # nobody serves probe@us-east
        assert answers["eu-west"] is not None and answers["eu-west"].ok
        assert waited < 4  # bounded by the wait, not by the missing place
        # The missing place's probe was taken back: nothing waits on its queue.
        assert await hub.get(place_queue("us-east")).count("queued") == 0
        judged = combine(answers, 2)
        assert judged is not None and judged.ok
        assert judged.places == {"eu-west": "fine", "us-east": "no answer"}
    finally:
        await hub.close()


async def test_the_place_probe_answers_what_this_worker_sees(app: App) -> None:
    """The job a vantage worker runs: this worker's settings, its outcome as JSON."""
    site = _site(app)
    settings = lab_settings(Site(site.name, app_url(app), channel=CHANNEL))
    [(name, run)] = place_probe_functions(settings)
    answer = await run({}, site="shop", url="http://127.0.0.1:9/", place="eu-west")
    assert name == "bgw.monitor_probe"
    assert answer["ok"] is True and answer["place"] == "eu-west"  # the site as it is here
    json.dumps(answer)  # it travels through SAQ's job record
    # A vantage without the site in a sites file of its own probes the URL it was sent.
    elsewhere = await run({}, site="blog", url="http://127.0.0.1:9/", place="eu-west")
    assert elsewhere["ok"] is False and "127.0.0.1:9" in elsewhere["what"]


def app_url(app: App) -> str:
    return f"http://127.0.0.1:{app.port}/"
