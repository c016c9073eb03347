"""The whole bot in queue mode, deployed as it runs in production: a real redis-server, the
real web process (`python -m badgateway.bot.cli serve`), real `python -m badgateway.bot.cli worker`
processes, the local Slack Web API stand-in, and sites that are real nginx servers in front of
misbehaving upstreams. Requests arrive signed as Slack signs them, alerts as Alertmanager sends
them.

Each piece has its own tests; these check that they fit: the web process posts the root and
enqueues, the workers probe and post every step into that thread exactly once (also when one
of them is SIGKILLed mid-diagnosis), an alert opens one thread that the workers' diagnosis
lands in, and logs kept on two hosts are read by the workers there into one logs reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.slack.root_updates import PER_ROOT_S
from badgateway.bot.state import BotState, open_store
from badgateway.checks.steps import step_names
from tests.lab import REPO
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_redis import LAB_QUEUE_ENV, RedisServer
from tests.lab.fixtures_slack import SIGNING_SECRET, Message, SlackSigner, SlackStandIn, sign
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import ManagedProcess, free_port
from tests.lab.slack_limits import UNLIMITED_ENV

OPS = "C0OPS0001"  # where people type /502
ALERTS = "C0ALERTS01"  # the alerting site's channel
ALERTS_TOKEN = "alerts-token-integration"
BOT_TOKEN = "xoxb-integration-token"
STEPS = step_names()  # the engine's real runbook: reload, dns, firewall, logs, host
# Settings the deployment is started with; everything else is inherited from the test run.
OWN_ENV = ("SLACK_APP_TOKEN", "BADGATEWAY_SINK", "BADGATEWAY_LAB_REJECT", "BADGATEWAY_PROFILE")


def sites_toml(sites: list[dict[str, Any]]) -> str:
    """A sites file: loopback allowed, short probes, and each site's nginx log and upstream.
    The monitoring interval is long so that scheduled probes never open an incident here."""
    text = f"""
[settings]
allow_networks = ["127.0.0.0/8"]
timeout_s = 5
reload_attempts = 1
reload_spacing_s = 0
diagnosis_budget_s = 10
log_window_s = 300
default_channel = "{ALERTS}"
"""
    for site in sites:
        channel = f'channel = "{site["channel"]}"\n' if site.get("channel") else ""
        # A site's logs: its nginx's error log, or as given ({path, format, host?} each).
        logs = site.get("logs") or [{"path": site["proxy"].error_log, "format": "nginx"}]
        entries = ", ".join(
            "{ " + ", ".join(f'{key} = "{value}"' for key, value in entry.items() if value) + " }"
            for entry in logs
        )
        text += f"""
[[site]]
name = "{site["name"]}"
url = "{site.get("url") or site["proxy"].url}"
upstreams = ["{site["upstream"].address}"]
logs = [{entries}]
interval_s = 3600
{channel}"""
    return text


@dataclass
class Deployment:
    """The web process and its workers, all real processes sharing one Redis."""

    slack: SlackStandIn
    redis_server: RedisServer
    directory: Path
    env: dict[str, str]
    port: int
    web: ManagedProcess | None = None
    workers: dict[str, ManagedProcess] = field(default_factory=dict)
    signer: SlackSigner = field(init=False)

    def __post_init__(self) -> None:
        self.signer = SlackSigner(SIGNING_SECRET, self.slack.response_url)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "badgateway.bot.cli", *args]
        log = self.directory / f"{name}.log"
        return ManagedProcess(argv, log, env=self.env, cwd=str(REPO))

    async def start_web(self) -> None:
        self.web = self._spawn("web", "serve")
        await self.web.until_ok(f"{self.base}/healthz")

    async def start_workers(self, *names: str) -> None:
        """Workers of the default queue; a name like ``logs@web-1`` is a worker on web-1
        that serves only that host's log queue."""
        queues = {name: name if name.startswith("logs@") else "default" for name in names}
        for name in names:
            env = {**self.env, "BADGATEWAY_WORKER_NAME": name}
            self.workers[name] = ManagedProcess(
                [sys.executable, "-m", "badgateway.bot.cli", "worker", "--queues", queues[name]],
                self.directory / f"worker-{name}.log",
                env=env,
                cwd=str(REPO),
            )
        redis = Redis.from_url(self.redis_server.url)
        deadline = time.monotonic() + 20
        try:
            for name, process in self.workers.items():
                info = f"bgw:saq:{queues[name]}:worker_info:{name}-{queues[name]}"
                while not await redis.exists(info):
                    if process.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"worker {name} did not start:\n{process.output()}")
                    await asyncio.sleep(0.05)
        finally:
            await redis.aclose()

    def kill(self, name: str) -> None:
        process = self.workers[name]
        os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait(10)

    def logs(self) -> str:
        parts = [f"--- web\n{self.web.output()[-4000:]}"] if self.web else []
        parts += [f"--- {n}\n{p.output()[-4000:]}" for n, p in self.workers.items()]
        return "\n".join(parts)

    def stop(self) -> None:
        for process in [*self.workers.values(), *([self.web] if self.web else [])]:
            process.stop(signal.SIGTERM, timeout=15)

    async def post(self, path: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base}{path}", data=body.encode(), headers=headers) as response,
        ):
            return response.status, await response.text()

    async def send(self, built: tuple[str, str]) -> tuple[int, str]:
        """A request to /slack/events, signed as Slack signs it."""
        body, content_type = built
        headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}
        return await self.post("/slack/events", body, headers)

    async def alert(self, payload: dict[str, Any], token: str = ALERTS_TOKEN) -> int:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        status, _ = await self.post("/alerts/alertmanager", json.dumps(payload), headers)
        return status

    async def checked_at(self, diagnosis_id: str) -> str:
        """When a finished diagnosis ran, as the Slack sink recorded it (bot.state)."""
        state = BotState(open_store(self.redis_server.url))
        try:
            doc = await state.diagnosis_doc(diagnosis_id)
        finally:
            await state.store.close()
        assert doc is not None, diagnosis_id
        return str(doc["started_at"])

    async def until_latest(self, root_ts: str, diagnosis_id: str, what: str) -> None:
        """Until the alert incident of the thread at ``root_ts`` names that diagnosis its
        latest (set when the verdict reaches the alerting side, after it is posted)."""
        redis = Redis.from_url(self.redis_server.url, decode_responses=True)
        store = IncidentStore(redis)
        try:
            deadline = time.monotonic() + 15
            while True:
                incident = await store.by_thread(ALERTS, root_ts)
                if incident is not None and incident.diagnosis_id == diagnosis_id:
                    return
                if time.monotonic() > deadline:
                    latest = incident.diagnosis_id if incident else None
                    raise AssertionError(f"timed out waiting for {what}: {latest}\n{self.logs()}")
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()

    async def until(self, condition: Callable[[], bool], what: str, within_s: float = 30) -> None:
        try:
            await self.slack.wait_for(condition, within_s, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


@pytest_asyncio.fixture
async def deploy(
    slack_api: SlackStandIn, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """``await deploy(sites, workers=("a",))``: serve + workers running with these sites."""
    started: list[Deployment] = []

    async def start(sites: list[dict[str, Any]], workers: tuple[str, ...] = ("a",)) -> Deployment:
        sites_path = tmp_path / "sites.toml"
        sites_path.write_text(sites_toml(sites), encoding="utf-8")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in OWN_ENV}
        env.update(LAB_QUEUE_ENV)
        env.update(UNLIMITED_ENV)  # the stand-in enforces no limits here
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack_api.base_url,
                "REDIS_URL": redis_server.url,
                "PORT": str(port),
                "BADGATEWAY_SITES": str(sites_path),
                "ALERTS_TOKEN": ALERTS_TOKEN,
                "BADGATEWAY_ALERT_STORM_HOLD_S": "0.2",
            }
        )
        deployment = Deployment(slack_api, redis_server, tmp_path, env, port)
        started.append(deployment)
        await asyncio.gather(deployment.start_web(), deployment.start_workers(*workers))
        return deployment

    try:
        yield start
    finally:
        for deployment in started:
            # Blocking waits in a thread: the stand-in (this loop) must keep answering.
            await asyncio.to_thread(deployment.stop)


def failing_once(proxy: Proxy, pattern: str) -> None:
    """The failure users saw before anyone asked the bot: it is in the proxy's error log."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(proxy.url, timeout=10)
    proxy.wait_for_log(pattern, timeout=10)


def thread_names(slack: SlackStandIn, root_ts: str) -> list[str]:
    """What each reply in the thread is: a step's name or "verdict" (the text's first word)."""
    return [m.text.split(":")[0] for m in slack.thread(root_ts)]


def verdicts(slack: SlackStandIn, root_ts: str) -> list[Message]:
    return [m for m in slack.thread(root_ts) if m.text.startswith("verdict:")]


def escalations(slack: SlackStandIn, root_ts: str) -> list[Message]:
    return [m for m in slack.thread(root_ts) if m.text.startswith("escalation summary")]


def diagnosis_id(verdict: Message) -> str:
    """The id of the diagnosis a verdict reply shows: its metadata key is "<id>:verdict"."""
    assert verdict.metadata is not None
    return str(verdict.metadata["event_payload"]["key"]).removesuffix(":verdict")


def posts_per_step(slack: SlackStandIn, root_ts: str) -> dict[str, int]:
    """chat.postMessage calls (as sent, retries included) per step name in one thread."""
    counts: dict[str, int] = {}
    for call in slack.calls_of("chat.postMessage"):
        if call.params.get("thread_ts") == root_ts:
            name = str(call.params.get("text") or "").split(":")[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


def root_updates(slack: SlackStandIn, root_ts: str) -> int:
    return sum(1 for c in slack.calls_of("chat.update", ok_only=True) if c.params["ts"] == root_ts)


async def test_slash_command_runs_on_workers_into_one_thread_and_reruns_there(
    deploy: Callable[..., Any],
    upstream: Callable[..., Upstream],
    nginx_proxy: Callable[..., Proxy],
) -> None:
    app = upstream("refused")
    proxy = nginx_proxy(app)
    failing_once(proxy, r"Connection refused")
    bot: Deployment = await deploy(
        [{"name": "shop", "proxy": proxy, "upstream": app}], workers=("a", "b")
    )
    slack = bot.slack

    started = time.monotonic()
    status, _ = await bot.send(bot.signer.slash_command("shop", channel=OPS))
    assert status == 200 and time.monotonic() - started < 3
    await bot.until(lambda: len(slack.roots(OPS)) == 1, "the root message")
    root = slack.roots(OPS)[0]
    await bot.until(lambda: len(verdicts(slack, root.ts)) == 1, "the verdict")

    assert thread_names(slack, root.ts) == [*STEPS, "verdict"], bot.logs()
    assert posts_per_step(slack, root.ts) == {**dict.fromkeys(STEPS, 1), "verdict": 1}
    verdict = verdicts(slack, root.ts)[0]
    assert verdict.text.startswith("verdict: upstream_refused"), bot.logs()
    await bot.until(lambda: "verdict upstream_refused" in root.text, "the root's verdict")
    updates_before = root_updates(slack, root.ts)
    # Updated as results came, coalesced (issue 11): at least once, never more than once per
    # step and the verdict (each worker process keeps its own spacing).
    assert 1 <= updates_before <= len(STEPS) + 1

    # Re-run, pressed on the verdict: a new verdict in the same thread, never a second root.
    rerun = bot.signer.block_action(
        "bgw_rerun", root.ts, message_ts=verdict.ts, thread_ts=root.ts, channel=OPS
    )
    status, _ = await bot.send(rerun)
    assert status == 200
    await bot.until(lambda: len(verdicts(slack, root.ts)) == 2, "the second verdict")
    assert len(slack.roots(OPS)) == 1
    assert all(m.thread_ts == root.ts for m in slack.thread(root.ts))
    names = thread_names(slack, root.ts)
    second_run = names[names.index("verdict") + 1 :]
    assert [n for n in second_run if n in STEPS or n == "verdict"] == [*STEPS, "verdict"]
    counts = posts_per_step(slack, root.ts)
    assert {n: counts.get(n, 0) for n in (*STEPS, "verdict")} == {
        **dict.fromkeys(STEPS, 2),
        "verdict": 2,
    }
    assert verdicts(slack, root.ts)[1].text.startswith("verdict: upstream_refused")
    await bot.until(
        lambda: "re-run 1×" in json.dumps(root.blocks, ensure_ascii=False), "the root's re-run note"
    )
    assert root_updates(slack, root.ts) > updates_before


async def _holder_of(redis: Redis, step: str, held_for_s: float) -> tuple[str, str] | None:
    """(diagnosis id, worker) once a worker has been running ``step``'s job for
    ``held_for_s`` with its result not in yet, and no thread lock is held; else None."""
    async for key in redis.scan_iter(match=f"bgw:saq:job:default:*:{step}"):
        raw = await redis.get(key)
        if not raw:
            continue
        job = json.loads(raw)
        if job.get("status") != "active" or not job.get("started"):
            continue
        diagnosis_id = key.decode().split(":")[3]
        if time.time() * 1000 - job["started"] < held_for_s * 1000:
            continue
        stored = cast(Awaitable[bool], redis.hexists(f"bgw:diag:{diagnosis_id}:results", step))
        if await stored:
            continue
        if [k async for k in redis.scan_iter(match="bgw:lock:thread:*")]:
            continue  # killing a worker mid-post is another test's subject
        return diagnosis_id, str(job["worker_id"]).removesuffix("-default")
    return None


async def test_worker_killed_mid_diagnosis_another_finishes_each_step_posted_once(
    deploy: Callable[..., Any],
    upstream: Callable[..., Upstream],
    nginx_proxy: Callable[..., Proxy],
) -> None:
    app = upstream("slow", delay_s=6)
    proxy = nginx_proxy(app, read_timeout_s=3)  # every request through it takes 3 s
    logged = threading.Thread(target=failing_once, args=(proxy, r"upstream timed out"))
    logged.start()
    try:
        bot: Deployment = await deploy(
            [{"name": "slowshop", "proxy": proxy, "upstream": app}], workers=("a", "b")
        )
    finally:
        await asyncio.to_thread(logged.join)
    slack = bot.slack

    status, _ = await bot.send(bot.signer.slash_command("slowshop", channel=OPS))
    assert status == 200
    redis = Redis.from_url(bot.redis_server.url)
    try:
        deadline = time.monotonic() + 15
        while (held := await _holder_of(redis, "reload", held_for_s=1.0)) is None:
            assert time.monotonic() < deadline, f"no worker held the reload step\n{bot.logs()}"
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
    _diagnosis_id, holder = held
    bot.kill(holder)
    killed_at = time.monotonic()
    survivor = next(name for name in bot.workers if name != holder)

    root = slack.roots(OPS)[0]
    await bot.until(lambda: len(verdicts(slack, root.ts)) == 1, "the verdict after the kill")
    recovered_s = time.monotonic() - killed_at
    await asyncio.sleep(1.0)  # anything posted twice would arrive now

    assert len(slack.roots(OPS)) == 1
    assert thread_names(slack, root.ts) == [*STEPS, "verdict"], bot.logs()
    assert posts_per_step(slack, root.ts) == {**dict.fromkeys(STEPS, 1), "verdict": 1}
    assert verdicts(slack, root.ts)[0].text.startswith("verdict: upstream_timeout"), bot.logs()
    assert f"worker {survivor} taking jobs" in bot.workers[survivor].output()
    print(f"\nworker {holder} killed holding the reload step; verdict {recovered_s:.1f} s later")


def alertmanager_payload(
    site: str,
    status: str = "firing",
    alertname: str = "SiteBadGateway",
    fingerprint: str = "4a1d3f2b9c8e7d6a",
) -> dict[str, Any]:
    """A version 4 webhook as Alertmanager sends it, for one alert naming the site."""
    labels = {"alertname": alertname, "site": site, "severity": "page"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SiteBadGateway"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "badgateway",
        "groupLabels": {"alertname": "SiteBadGateway"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{site} answers 502"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"{site} answers 502"},
                "startsAt": "2024-05-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


async def test_alertmanager_alert_opens_one_thread_diagnosed_by_the_workers(
    deploy: Callable[..., Any],
    upstream: Callable[..., Upstream],
    nginx_proxy: Callable[..., Proxy],
) -> None:
    app = upstream("refused")
    proxy = nginx_proxy(app)
    failing_once(proxy, r"Connection refused")
    site = {"name": "alertshop", "proxy": proxy, "upstream": app, "channel": ALERTS}
    bot: Deployment = await deploy([site], workers=("a",))
    slack = bot.slack

    assert await bot.alert(alertmanager_payload("alertshop")) == 202
    await bot.until(lambda: len(slack.roots(ALERTS)) == 1, "the alert's root message")
    root = slack.roots(ALERTS)[0]
    assert "alertshop" in root.text and "answers 502" in root.text
    await bot.until(lambda: len(verdicts(slack, root.ts)) == 1, "the verdict in the alert thread")
    step_replies = [n for n in thread_names(slack, root.ts) if n in (*STEPS, "verdict")]
    assert step_replies == [*STEPS, "verdict"], bot.logs()
    assert posts_per_step(slack, root.ts) == {**dict.fromkeys(STEPS, 1), "verdict": 1}
    assert verdicts(slack, root.ts)[0].text.startswith("verdict: upstream_refused")
    await bot.until(lambda: "upstream_refused" in root.text, "the cause on the alert's root")
    assert "Diagnosed:" in root.text

    # A second firing alert for the same site goes into the same thread (the first one sent
    # again, as Alertmanager repeats a group, is not announced again).
    replies_before = len(slack.thread(root.ts))
    second = alertmanager_payload("alertshop", alertname="SiteSlow", fingerprint="5b2e")
    assert await bot.alert(alertmanager_payload("alertshop")) == 202
    assert await bot.alert(second) == 202
    await bot.until(lambda: len(slack.thread(root.ts)) > replies_before, "the second alert")
    assert len(slack.thread(root.ts)) == replies_before + 1
    assert "Another alert" in slack.thread(root.ts)[-1].text
    await bot.until(lambda: "2 of 2" in root.text, "the root listing two alerts")
    assert len(slack.roots(ALERTS)) == 1 and len(slack.roots()) == 1

    # The verdict's buttons act on the incident: Escalate posts the provider-ready summary,
    # Re-run diagnoses again on the workers, into the same thread.
    verdict = verdicts(slack, root.ts)[0]
    escalate = bot.signer.block_action(
        "bgw_escalate", root.ts, message_ts=verdict.ts, thread_ts=root.ts, channel=ALERTS
    )
    assert (await bot.send(escalate))[0] == 200
    await bot.until(
        lambda: len(escalations(slack, root.ts)) == 1, "the escalation summary in the alert thread"
    )
    summary = escalations(slack, root.ts)[0]
    assert "upstream_refused" in json.dumps(summary.blocks)
    rerun = bot.signer.block_action(
        "bgw_rerun", root.ts, message_ts=verdict.ts, thread_ts=root.ts, channel=ALERTS
    )
    assert (await bot.send(rerun))[0] == 200
    await bot.until(lambda: len(verdicts(slack, root.ts)) == 2, "the re-run's verdict")
    counts = posts_per_step(slack, root.ts)
    assert {n: counts.get(n, 0) for n in (*STEPS, "verdict")} == {
        **dict.fromkeys(STEPS, 2),
        "verdict": 2,
    }
    await bot.until(lambda: "Diagnosed:" in root.text, "the re-run's cause on the root")
    assert len(slack.roots()) == 1
    assert not [e for e in slack.ephemerals if "no longer have a record" in str(e)]
    assert not [r for r in slack.responses if "no longer have a record" in str(r)]

    # `/502 alertshop` from another channel while the incident is open (issue 11): answered
    # there, its root linking to the alert's thread, which gets a note naming the asker and
    # no copy of the diagnosis.
    status, _ = await bot.send(bot.signer.slash_command("alertshop", channel=OPS))
    assert status == 200
    await bot.until(lambda: len(slack.roots(OPS)) == 1, "the /502 root where it was typed")
    asked = slack.roots(OPS)[0]
    await bot.until(lambda: len(verdicts(slack, asked.ts)) == 1, "the /502 verdict in its thread")
    assert f"archives/{ALERTS}/p{root.ts.replace('.', '')}" in json.dumps(asked.blocks)
    await bot.until(
        lambda: any("Asked with `/502`" in m.text for m in slack.thread(root.ts)),
        "the note in the alert's thread",
    )
    assert len(verdicts(slack, root.ts)) == 2  # the alert's own runs only

    # A wrong token: 401, and Slack hears nothing of it.
    # Let the last root updates land (coalesced: up to their spacing late, PER_ROOT_S at
    # Slack's pace, a few ms at this deployment's), until Slack has heard nothing for a while.
    calls_before = -1
    for _ in range(20):
        if calls_before == len(slack.calls):
            break
        calls_before = len(slack.calls)
        await asyncio.sleep(PER_ROOT_S / float(UNLIMITED_ENV["BADGATEWAY_SLACK_RATE_SCALE"]) + 1.0)
    calls_before = len(slack.calls)
    assert await bot.alert(alertmanager_payload("alertshop"), token="wrong-token") == 401
    await asyncio.sleep(1.0)
    assert len(slack.calls) == calls_before


@pytest.mark.parametrize("users_first", [True, False], ids=["after-users", "quiet-site"])
async def test_logs_on_two_hosts_are_read_by_their_workers_into_one_logs_reply(
    deploy: Callable[..., Any],
    php_fpm: Callable[..., Any],
    nginx_proxy: Callable[..., Proxy],
    users_first: bool,
) -> None:
    """nginx's log on web-1 and php-fpm's on app-1, each read only by the worker there: one
    logs reply names both, and php-fpm's timeout on one machine explains nginx's 502 on the
    other in the verdict — also on a quiet site, where the workers on web-1 and app-1 read
    their logs only once the diagnosis's own requests have come back."""
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    proxy = nginx_proxy(php=fpm, read_timeout_s=4)
    url = proxy.url + "sleep.php?s=3"
    if users_first:
        with contextlib.suppress(httpx.HTTPError):
            await asyncio.to_thread(httpx.get, url, timeout=10)  # the failure users saw
        fpm.wait_for_log(r"execution timed out")
        proxy.wait_for_log(r"Connection reset|prematurely closed")
    else:
        assert "execution timed out" not in fpm.read_log()
    site = {
        "name": "phpshop",
        "url": url,
        "proxy": proxy,
        "upstream": fpm,
        "logs": [
            {"path": proxy.error_log, "format": "nginx", "host": "web-1"},
            {"path": fpm.error_log, "format": "php-fpm", "host": "app-1"},
        ],
    }
    bot: Deployment = await deploy([site], workers=("a", "logs@web-1", "logs@app-1"))
    slack = bot.slack

    assert (await bot.send(bot.signer.slash_command("phpshop", channel=OPS)))[0] == 200
    await bot.until(lambda: len(slack.roots(OPS)) == 1, "the root message")
    root = slack.roots(OPS)[0]
    await bot.until(lambda: len(verdicts(slack, root.ts)) == 1, "the verdict")
    assert thread_names(slack, root.ts) == [*STEPS, "verdict"], bot.logs()
    assert posts_per_step(slack, root.ts) == {**dict.fromkeys(STEPS, 1), "verdict": 1}
    [logs_reply] = [m for m in slack.thread(root.ts) if m.text.startswith("logs:")]
    shown = json.dumps(logs_reply.blocks)
    assert f"web-1:{proxy.error_log}" in shown and f"app-1:{fpm.error_log}" in shown
    assert "not read" not in logs_reply.text
    assert verdicts(slack, root.ts)[0].text.startswith("verdict: app_timeout"), bot.logs()
    # Every request of the diagnosis that came back in time (the reload step's two, and the
    # host step's when it is back too) was found in web-1's log by its mark.
    found = re.search(r"(\d+) of our (\d+) requests found", logs_reply.text)
    assert found and found[1] == found[2] and int(found[1]) >= 2, logs_reply.text
