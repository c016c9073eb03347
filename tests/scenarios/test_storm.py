"""A storm under Slack's rate limits: 200 sites behind one real nginx (a port each, one error
log) fail at once; one process diagnoses them all and the grouped alert accounts for every
site — one root table, a reply per cause, each site's full diagnosis on demand."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from badgateway.bot import metrics
from badgateway.bot.alerts.chat import AlertChat, AlertThreadOwner
from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.sink import IncidentVerdicts
from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.flights import SiteFlights
from badgateway.bot.pipeline import InProcessCarrier
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, open_store
from badgateway.checks.settings import LogSource, Site
from tests.lab.alerts import CHANNEL, FAST, bot_config, lab_settings, probe, shown, until
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.shared_nginx import SharedNginx, running_shared_nginx
from tests.lab.slack_limits import SlackLimits

pytestmark = pytest.mark.slack_limits  # Slack's real pace, against its real limits

SITES = 200
# Which upstream each site is behind, by its number: three causes, three groups.
GROUPS = {
    "refused": "upstream_refused",
    "garbage": "upstream_invalid",
    "close_mid_response": "upstream_closed",
}
OWN_CHANNEL = "C0SITE007"  # site007 has its own channel: `show` goes there


def behind(n: int) -> str:
    """The upstream kind site ``n`` is behind: most refuse, some answer garbage, a few close."""
    return "garbage" if n % 10 == 3 else "close_mid_response" if n % 25 == 7 else "refused"


@dataclass
class Storm:
    nginx: SharedNginx
    sites: list[Site]


@pytest.fixture
def storm_sites(tmp_path: Path) -> Iterator[Storm]:
    apps = {kind: Upstream(kind).start() for kind in GROUPS}
    names = [f"site{n:03d}" for n in range(SITES)]
    try:
        with running_shared_nginx(
            tmp_path, {name: apps[behind(n)].address for n, name in enumerate(names)}
        ) as nginx:
            logs = (LogSource(str(nginx.error_log)),)
            sites = [
                Site(
                    name,
                    nginx.url(name),
                    upstreams=(apps[behind(n)].address,),
                    logs=logs,
                    channel=OWN_CHANNEL if n == 7 else None,
                )
                for n, name in enumerate(names)
            ]
            yield Storm(nginx, sites)
    finally:
        for app in apps.values():
            app.stop()


@dataclass
class Bot:
    incidents: Incidents
    carrier: InProcessCarrier
    chat: AlertChat


@pytest_asyncio.fixture
async def storm_bot(
    redis: Redis, redis_url: str, slack_api: SlackStandIn, storm_sites: Storm
) -> AsyncIterator[Bot]:
    """One process with the alerting side and a diagnosing carrier, Slack as it limits."""
    slack_api.limits = SlackLimits()
    settings = lab_settings(*storm_sites.sites, budget_s=6.0)
    client = make_web_client(bot_config(slack_api))
    state = BotState(open_store(redis_url))
    incidents = Incidents(IncidentStore(redis), SlackNotifier(client), settings, FAST)
    carrier = InProcessCarrier(settings, IncidentVerdicts(SlackSink(client, state), incidents))
    incidents.posts.carrier = carrier
    incidents.posts.flights = SiteFlights(state, carrier)  # each site's run is its flight
    try:
        yield Bot(incidents, carrier, AlertChat(incidents, state, client, carrier))
    finally:
        await carrier.close()
        await incidents.posts.drain()
        await state.store.close()


async def fail_together(incidents: Incidents, sites: list[Site]) -> None:
    """Two failed probes of every site, as the monitor's jobs would report them."""
    for _ in range(2):
        await asyncio.gather(*(probe(incidents, site) for site in sites))


async def test_a_200_site_storm_is_one_table_within_slacks_limits(
    storm_bot: Bot, storm_sites: Storm, slack_api: SlackStandIn
) -> None:
    incidents, sites = storm_bot.incidents, storm_sites.sites
    await fail_together(incidents, sites)
    started = time.monotonic()
    await incidents.flush(force=True)
    [root] = slack_api.roots(CHANNEL)

    def accounted() -> bool:
        return f"*Diagnosed:* {SITES} of {SITES}" in shown(slack_api.message(root.ts))

    await until(accounted, 60, "every site's cause on the root")
    took = time.monotonic() - started
    await storm_bot.carrier.drain()
    await incidents.posts.drain()

    table = shown(slack_api.message(root.ts))
    for n, site in enumerate(sites):  # every site, with its own cause (not site000's)
        row = [line for line in table.splitlines() if f"*{site.name}*" in line]
        assert f"*{site.name}* · `{GROUPS[behind(n)]}` · since" in table, row or site.name
    assert len(slack_api.roots()) == 1
    posts = slack_api.calls_of("chat.postMessage", ok_only=True)
    assert len(posts) <= 30, len(posts)
    # One reply for what they share, then one per cause group, naming how many sites.
    replies = [m.text for m in slack_api.thread(root.ts)]
    assert replies[0].startswith(":link: *What they share:*")
    counts = {
        cause: sum(1 for n in range(SITES) if GROUPS[behind(n)] == cause)
        for cause in GROUPS.values()
    }
    for cause, count in counts.items():
        [group] = [r for r in replies if f"*`{cause}`*" in r]
        assert f"— {count} sites:" in group
    assert slack_api.limits is not None and slack_api.limits.unhonoured == 0
    print(f"storm of {SITES}: accounted for in {took:.1f} s, {len(posts)} posts")


async def test_show_posts_one_sites_diagnosis_on_demand(
    storm_bot: Bot, storm_sites: Storm, slack_api: SlackStandIn
) -> None:
    incidents, sites = storm_bot.incidents, storm_sites.sites
    await fail_together(incidents, sites)
    await incidents.flush(force=True)
    [root] = slack_api.roots(CHANNEL)
    await storm_bot.carrier.drain()
    await incidents.posts.drain()  # the table and the groups' replies are final
    owner = await storm_bot.chat.owner(CHANNEL, root.ts)
    assert isinstance(owner, AlertThreadOwner)
    private: list[str] = []

    async def reply(text: str) -> None:
        private.append(text)

    before = len(slack_api.thread(root.ts))
    await owner.show("site043", "U0ALICE", reply)
    [posted] = slack_api.thread(root.ts)[before:]  # one message, naming its site
    assert posted.text.startswith("site043: verdict: upstream_invalid")  # it answers garbage
    text = shown(posted)
    assert "*site043*: its full diagnosis" in text
    assert all(f"(`{step}`)" in text for step in ("reload", "dns", "firewall", "logs", "host"))
    assert not [b for b in posted.blocks if b["type"] == "actions"]  # no buttons for all sites
    # A site with its own channel: its diagnosis goes there, linked from the storm's thread.
    await owner.show("site007", "U0ALICE", reply)
    [own] = slack_api.roots(OWN_CHANNEL)
    assert own.text.startswith("site007: verdict: upstream_closed")
    assert f"archives/{OWN_CHANNEL}/p" in slack_api.thread(root.ts)[-1].text
    await owner.show("nosuch", "U0ALICE", reply)
    assert private == ["nosuch is not one of this grouped alert's sites."]
    assert slack_api.limits is not None and slack_api.limits.unhonoured == 0


def monitor_diagnoses() -> float:
    """The diagnoses this process ran for monitoring's incidents, whatever their cause."""
    return sum(
        s.value
        for family in metrics.REGISTRY.collect()
        if family.name == "badgateway_diagnoses"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["trigger"] == "monitor"
    )


async def test_a_storms_diagnoses_start_while_its_alerts_are_held(
    storm_bot: Bot, storm_sites: Storm, slack_api: SlackStandIn
) -> None:
    """The hold groups the posts, not the work: once enough sites fail to make a storm, their
    diagnoses start, one run a site, before the grouped alert is posted."""
    incidents, sites = storm_bot.incidents, storm_sites.sites[:40]
    incidents.posts.policy = dataclasses.replace(FAST, storm_hold_s=2.0)
    before = monitor_diagnoses()
    await fail_together(incidents, sites)
    assert await incidents.settle() == len(sites)  # the hold, then one grouped alert
    [root] = slack_api.roots(CHANNEL)
    [root_post] = [
        c
        for c in slack_api.calls_of("chat.postMessage", ok_only=True)
        if not c.params.get("thread_ts") and c.params.get("channel") == CHANNEL
    ]
    root_posted_at = time.time() - (time.monotonic() - root_post.at)  # the stand-in's clock

    def accounted() -> bool:
        return f"*Diagnosed:* {len(sites)} of {len(sites)}" in shown(slack_api.message(root.ts))

    await until(accounted, 60, "every site's cause on the root")
    await storm_bot.carrier.drain()
    await incidents.posts.drain()

    members = [await incidents.store.current(site.name) for site in sites]
    requested = [i.diagnosis_requested_at for i in members if i is not None]
    assert len(requested) == len(sites) and all(r is not None for r in requested)
    late = [i.site for i in members if i and (i.diagnosis_requested_at or 0) >= root_posted_at]
    assert not late, f"diagnosed only after the root was posted: {late}"
    assert len({i.diagnosis_id for i in members if i}) == len(sites)  # a run of its own each
    assert monitor_diagnoses() - before == len(sites)  # and no second run once it was posted
    table = shown(slack_api.message(root.ts))
    for n, site in enumerate(sites):
        assert f"*{site.name}* · `{GROUPS[behind(n)]}` · since" in table, site.name
    assert slack_api.limits is not None and slack_api.limits.unhonoured == 0
