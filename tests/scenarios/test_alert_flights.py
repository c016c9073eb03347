"""An alert's diagnosis and `/502`s share the site's one run (its flight): an open alert and a
`/502 shop` at the same moment make one run whose results reach both threads; a monitor
re-check inside the window opens the next incident on the same run; *Re-run* runs afresh.

Runs are counted where they happen: the site is a real server on loopback answering 502, and
every request a diagnosis sends carries its run's mark (``?_bgw=<run>.<n>``), so the distinct
marks it saw are the runs. The carrier's submits are counted too.

In queue mode too (``queue_bot``: the real web app, `badgateway worker` processes, a real
redis-server): the alert comes in by its webhook and the `/502` by a signed slash command at
the same moment — to one web process, or one each to two (the flight is claimed in Redis) —
and the workers run the site's one diagnosis, which both threads show."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from badgateway.bot.alerts.chat import AlertChat
from badgateway.bot.alerts.incidents import Incidents, ProbeOutcome
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.sink import IncidentVerdicts
from badgateway.bot.alerts.store import Incident, IncidentStore
from badgateway.bot.flights import SiteFlights
from badgateway.bot.pipeline import DiagnosisRequest, InProcessCarrier
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import connect_redis
from badgateway.bot.slack.diagnosis_threads import DiagnosisThreads
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, open_store
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Site, load_settings
from tests.lab.alerts import FAST, bot_config, lab_settings, until
from tests.lab.fixtures_redis import LAB_TUNING
from tests.lab.fixtures_slack import Message, SlackStandIn
from tests.lab.process import serve_app
from tests.lab.queue_web import OPS, QueueBot, fire_alert, lab_sites

ALERTS = "C0SHOPALERTS"
ASKER_CHANNEL = "C0OPS0001"
WINDOW_S = 30.0
ALICE = "U0ALICE01"


@dataclass
class CountingCarrier:
    """The in-process carrier, counting what it is given to run."""

    inner: InProcessCarrier | None = None
    submitted: list[DiagnosisRequest] = field(default_factory=list)

    async def submit(self, request: DiagnosisRequest) -> None:
        self.submitted.append(request)
        assert self.inner is not None
        await self.inner.submit(request)

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


@dataclass
class Lab:
    site: Site
    runs_seen: set[str]  # the run marks the site's server saw
    incidents: Incidents
    diagnoses: DiagnosisThreads
    carrier: CountingCarrier
    chat: AlertChat
    sink: SlackSink

    async def settled(self) -> None:
        assert self.carrier.inner is not None
        await self.carrier.inner.drain()
        await self.sink.roots.settle()
        await self.incidents.posts.drain()

    async def incident(self) -> Incident:
        incident = await self.incidents.incident_for_site(self.site.name)
        assert incident is not None
        return incident


@pytest_asyncio.fixture
async def lab(redis: Redis, redis_url: str, slack_api: SlackStandIn) -> AsyncIterator[Lab]:
    """One process: the alerting side and `/502` threads over one Redis, sharing flights."""
    runs_seen: set[str] = set()

    async def bad_gateway(request: web.Request) -> web.Response:
        mark = request.query.get("_bgw", "")
        if mark:
            runs_seen.add(mark.rpartition(".")[0])
        return web.Response(status=502, text="<h1>502 Bad Gateway</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", bad_gateway)
    runner, port = await serve_app(app)
    site = Site("shop", f"http://127.0.0.1:{port}/", channel=ALERTS)
    settings = lab_settings(site)
    client = make_web_client(bot_config(slack_api))
    state = BotState(open_store(redis_url))
    sink = SlackSink(client, state)
    carrier = CountingCarrier()
    incidents = Incidents(
        IncidentStore(redis), SlackNotifier(client), settings, FAST, show_run=sink.show
    )
    carrier.inner = InProcessCarrier(settings, IncidentVerdicts(sink, incidents))
    incidents.posts.carrier = carrier
    incidents.posts.flights = SiteFlights(state, carrier, WINDOW_S)
    chat = AlertChat(incidents, state, client, carrier)
    diagnoses = DiagnosisThreads(
        client, state, carrier, settings, sink=sink, links=[chat], share_window_s=WINDOW_S
    )
    try:
        yield Lab(site, runs_seen, incidents, diagnoses, carrier, chat, sink)
    finally:
        await carrier.close()
        await incidents.posts.drain()
        await sink.roots.close()
        await state.store.close()
        await runner.cleanup()


async def open_incident(lab: Lab) -> None:
    """Two failed probes, as the monitor's jobs report them: the incident waits to be posted."""
    for _ in range(2):
        await lab.incidents.observe(lab.site, ProbeOutcome(ok=False, what="HTTP 502"))


def verdicts(slack: SlackStandIn, root_ts: str) -> list[Message]:
    return [m for m in slack.thread(root_ts) if m.text.startswith("verdict:")]


@pytest.mark.parametrize("first", ["alert", "/502", "together"])
async def test_an_alert_and_a_502_at_the_same_moment_make_one_run(
    lab: Lab, slack_api: SlackStandIn, first: str
) -> None:
    await open_incident(lab)
    ctx = await prepare(lab.site.name, lab.incidents.settings)
    answers: list[str] = []

    async def reply(text: str) -> None:
        answers.append(text)

    alert = lab.incidents.flush(force=True)
    asked = lab.diagnoses.start(ctx, user=ALICE, channel=ASKER_CHANNEL, reply=reply)
    if first == "together":
        await asyncio.gather(alert, asked)
    else:  # one joins the other's run while it runs
        for step in (alert, asked) if first == "alert" else (asked, alert):
            await step
    [alert_root] = slack_api.roots(ALERTS)
    [asked_root] = slack_api.roots(ASKER_CHANNEL)
    await slack_api.wait_for(lambda: verdicts(slack_api, alert_root.ts), what="alert verdict")
    await slack_api.wait_for(lambda: verdicts(slack_api, asked_root.ts), what="/502 verdict")
    await lab.settled()

    assert len(lab.carrier.submitted) == 1 and len(lab.runs_seen) == 1  # one run
    # Each thread shows that run once: every check, then one verdict.
    for root in (alert_root, asked_root):
        assert len(verdicts(slack_api, root.ts)) == 1
        names = [m.text.split(":")[0] for m in slack_api.thread(root.ts) if ":" in m.text]
        assert all(names.count(step) <= 1 for step in ("reload", "dns", "firewall", "logs"))
    incident = await lab.incident()
    [run] = lab.carrier.submitted
    assert incident.diagnosis == "diagnosed" and incident.diagnosis_id == run.id
    if first != "together":  # whose run it is: the alert's, or the `/502`'s it joined
        assert bool(run.origin.get("incident")) == (first == "alert")
    cause = verdicts(slack_api, asked_root.ts)[0].text.split()[1]
    assert incident.cause == cause
    assert f"`{cause}`" in slack_api.message(alert_root.ts).text  # the alert's root says so
    assert answers == []
    if first == "alert":  # the `/502` found the alert: its root links there, one note there
        notes = [m for m in slack_api.thread(alert_root.ts) if "Asked with `/502`" in m.text]
        assert len(notes) == 1 and f"<@{ALICE}>" in notes[0].text


async def test_a_recheck_in_the_window_shares_the_run_and_rerun_runs_afresh(
    lab: Lab, slack_api: SlackStandIn
) -> None:
    await open_incident(lab)
    await lab.incidents.flush(force=True)
    [first_root] = slack_api.roots(ALERTS)
    await slack_api.wait_for(lambda: verdicts(slack_api, first_root.ts), what="first verdict")
    await lab.settled()
    first = await lab.incident()
    assert len(lab.carrier.submitted) == 1

    # Resolved, and the monitor finds the site failing again within the window: a new
    # incident, a new alert thread, the same run (its results caught up in the new thread).
    await lab.incidents.resolve(first.id, ALICE)
    await open_incident(lab)
    await lab.incidents.flush(force=True)
    second_root = next(m for m in slack_api.roots(ALERTS) if m.ts != first_root.ts)
    await slack_api.wait_for(lambda: verdicts(slack_api, second_root.ts), what="caught up")
    await lab.settled()
    second = await lab.incident()
    assert second.id != first.id
    assert len(lab.carrier.submitted) == 1 and len(lab.runs_seen) == 1  # no new run
    assert second.diagnosis == "diagnosed" and second.diagnosis_id == first.diagnosis_id
    assert second.cause == first.cause
    assert len(verdicts(slack_api, second_root.ts)) == 1

    # Re-run (the button) is a fresh run, whatever the window says.
    owner = await lab.chat.owner(ALERTS, second_root.ts)
    assert owner is not None

    async def reply(text: str) -> None:
        raise AssertionError(text)

    await owner.rerun(ALICE, reply)
    await until(lambda: len(verdicts(slack_api, second_root.ts)) == 2, 15, "the re-run's verdict")
    await lab.settled()
    assert len(lab.carrier.submitted) == 2 and len(lab.runs_seen) == 2
    rerun = await lab.incident()
    assert rerun.diagnosis_id == lab.carrier.submitted[1].id != first.diagnosis_id


# -- queue mode: the web app, worker processes, Redis --------------------------------------


def _runs_seen(queue_bot: QueueBot) -> set[str]:
    """The runs whose requests reached the site (each carries ``_bgw=<run>.<n>``)."""
    with queue_bot.lab.http.lock:
        paths = [path for _, path in queue_bot.lab.http.requests]
    marks = [m for p in paths for m in parse_qs(urlsplit(p).query).get("_bgw", [])]
    return {mark.rpartition(".")[0] for mark in marks}


def _verdict_runs(slack: SlackStandIn, root_ts: str) -> list[str]:
    """The diagnosis id of each verdict in the thread (from the key its metadata carries)."""
    return [
        str(m.metadata["event_payload"]["key"]).split(":")[0]
        for m in verdicts(slack, root_ts)
        if m.metadata
    ]


@pytest.mark.parametrize("webs", [1, 2])
async def test_in_queue_mode_an_alert_and_a_502_at_the_same_moment_make_one_run(
    queue_bot: QueueBot, tmp_path: Path, webs: int
) -> None:
    slack = queue_bot.slack
    sites = lab_sites(tmp_path / "alerting.toml", queue_bot.lab.http.url(0) + "/shop")
    settings = load_settings(sites)
    await queue_bot.stop_web(queue_bot.bot)  # the fixture's knows no monitored site
    front = [await queue_bot.start_web(settings) for _ in range(webs)]
    for name in ("flight1", "flight2"):  # monitoring workers: alerts' verdicts reach them
        await queue_bot.start_worker(name, BADGATEWAY_SITES=str(sites))

    asked, _ = await asyncio.gather(
        front[0].command("shop", channel=OPS, user=ALICE), fire_alert(front[-1], "shop")
    )
    assert asked.status == 200
    await slack.wait_for(lambda: len(slack.roots(OPS)) == 2, 10, "the /502 root and the alert")
    alert_root = next(m for m in slack.roots(OPS) if "is failing since" in m.text)
    asked_root = next(m for m in slack.roots(OPS) if m is not alert_root)
    await slack.wait_for(lambda: verdicts(slack, asked_root.ts), 30, "the /502 verdict")
    await slack.wait_for(lambda: verdicts(slack, alert_root.ts), 30, "the alert's verdict")
    await slack.wait_for(lambda: "Diagnosed:" in alert_root.text, 10, "the alert's root")

    # One run: the site saw one run's requests, the queue ran one diagnosis, and both
    # threads show its verdict, once each.
    assert len(_runs_seen(queue_bot)) == 1, queue_bot.logs()
    redis = connect_redis(queue_bot.lab.redis_server.url, 4, LAB_TUNING)
    try:
        jobs = await DiagnosisStore(redis, LAB_TUNING.keep_s).recent_jobs()
    finally:
        await redis.aclose()
    diagnose_jobs = {j["key"] for j in jobs if j["function"] == "bgw.diagnose"}
    assert len(diagnose_jobs) == 1, jobs
    [run] = _verdict_runs(slack, asked_root.ts)
    assert _verdict_runs(slack, alert_root.ts) == [run]
