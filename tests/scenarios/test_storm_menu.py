"""A grouped alert's menu of sites, through the real Bolt app: signed block_suggestion requests
(typing in the menu) get the storm's sites as options, and a signed block_actions (a site
chosen) posts that site's full diagnosis in the storm's thread — once, however often it is
chosen. Also over Socket Mode. The storm (150 sites, more than a static menu's 100 options)
lives in a real Redis; its diagnoses are recorded as the alert sink would keep them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from badgateway.bot.alerts.chat import AlertChat
from badgateway.bot.alerts.incidents import Incidents, ProbeOutcome
from badgateway.bot.alerts.store import Incident
from badgateway.bot.assemble.web import build_web
from badgateway.bot.config import BotConfig
from badgateway.bot.render.slack_blocks import (
    SHOW_SITE_ACTION,
    block_kit_problems,
    options_problems,
)
from badgateway.bot.slack.chatops import NO_GROUP_TEXT
from badgateway.bot.slack.server import socket_mode_handler, socket_mode_url
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, MemoryStore
from badgateway.checks.model import Cause, Diagnosis, Finding, Status, StepResult, Weight
from badgateway.checks.settings import Settings, Site
from badgateway.checks.verdict import decide
from tests.lab.alerts import CHANNEL, RecordingCarrier, bot_config, lab_settings, make_incidents
from tests.lab.fixtures_slack import (
    BotUnderTest,
    SlackSigner,
    SlackStandIn,
    socket_payload,
)

SITES = 150  # more than the 100 options a static menu (or one answer) holds
RECOVERED = 3  # site000…site002 recover: listed after the failing ones
STALE_TS = "1700000000.000100"  # no grouped alert has this root


def site(n: int) -> Site:
    return Site(f"site{n:03d}", "http://127.0.0.1:9/")


def diagnosis_of(incident: Incident) -> Diagnosis:
    """What the sink keeps for a storm site: one check, refused upstream."""
    finding = Finding(
        "upstream_refused",
        f"{incident.site}'s upstream refused",
        Status.FAIL,
        Cause.UPSTREAM_REFUSED,
        Weight.OBSERVED,
    )
    steps = [StepResult.from_findings("reload", "the proxy answered 502", [finding])]
    return Diagnosis(
        incident.site, incident.url, decide(steps), steps, 120, "2026-12-01T20:00:00+00:00"
    )


@dataclass
class Storm:
    incidents: Incidents
    chat: AlertChat
    settings: Settings
    root_ts: str


@pytest_asyncio.fixture
async def storm(redis: Redis, slack_api: SlackStandIn) -> AsyncIterator[Storm]:
    """A posted grouped alert of SITES sites, each diagnosed, three of them recovered."""
    settings = lab_settings(*[site(n) for n in range(SITES)])
    carrier = RecordingCarrier()
    incidents = make_incidents(redis, slack_api, settings, carrier)
    failing = ProbeOutcome(ok=False, what="HTTP 502")
    for _ in range(2):
        await asyncio.gather(*(incidents.observe(site(n), failing) for n in range(SITES)))
    await incidents.flush(force=True)
    [root] = slack_api.roots(CHANNEL)
    for request in carrier.requests:
        incident = await incidents.store.get(str(request.origin["incident"]))
        assert incident is not None
        diagnosis = diagnosis_of(incident)
        await incidents.diagnosed(
            incident.id,
            diagnosis.verdict.cause.value,
            diagnosis.verdict.summary,
            diagnosis_id=request.id,
            requested_at=request.created_at,
            doc=diagnosis.to_dict(),
        )
    passing = ProbeOutcome(ok=True, what="HTTP 200")
    for _ in range(2):
        await asyncio.gather(*(incidents.observe(site(n), passing) for n in range(RECOVERED)))
    client = make_web_client(bot_config(slack_api))
    chat = AlertChat(incidents, BotState(MemoryStore()), client, carrier)
    try:
        yield Storm(incidents, chat, settings, root.ts)
    finally:
        await incidents.posts.drain()


async def menu(bot: BotUnderTest, root_ts: str, typed: str) -> list[dict[str, Any]]:
    """Type in the root's menu: the options the app answers."""
    built = bot.signer.block_suggestion(
        SHOW_SITE_ACTION, typed, message_ts=root_ts, channel=CHANNEL
    )
    sent = await bot.send(built)
    assert sent.status == 200, sent.text
    options: list[dict[str, Any]] = sent.json()["options"]
    assert options_problems(options) == [], options_problems(options)
    return options


async def choose(bot: BotUnderTest, root_ts: str, chosen: str) -> None:
    built = bot.signer.block_action(
        SHOW_SITE_ACTION, "", message_ts=root_ts, channel=CHANNEL, chosen=chosen
    )
    sent = await bot.send(built)
    assert sent.status == 200 and sent.text == "", sent.text


def values(options: list[dict[str, Any]]) -> list[str]:
    return [str(o["value"]) for o in options]


async def test_the_root_carries_a_menu_within_block_kits_limits(
    storm: Storm, slack_api: SlackStandIn
) -> None:
    await storm.incidents.posts.drain()  # the table's last rewrite
    root = slack_api.message(storm.root_ts)
    assert block_kit_problems({"text": root.text, "blocks": root.blocks}) == []
    [menu_block] = [b for b in root.blocks if b["type"] == "actions"]
    [element] = menu_block["elements"]
    assert element["type"] == "external_select" and element["action_id"] == SHOW_SITE_ACTION
    assert len(root.blocks) <= 50


async def test_the_menu_lists_the_storms_sites_as_typed_failing_first(
    storm: Storm, slack_bot: Callable[..., Any]
) -> None:
    bot: BotUnderTest = await slack_bot(storm.settings, other_threads=[storm.chat])
    started = time.monotonic()
    everything = await menu(bot, storm.root_ts, "")
    print(f"menu of {SITES} sites: answered in {(time.monotonic() - started) * 1000:.0f} ms")
    assert len(everything) == 100  # Slack's most per answer; typing narrows it
    assert everything[0]["text"]["text"] == "site003 · upstream_refused"
    assert not {"site000", "site001", "site002"} & set(values(everything))  # recovered: last
    assert values(await menu(bot, storm.root_ts, "SITE04")) == [f"site04{n}" for n in range(10)]
    recovered = await menu(bot, storm.root_ts, "site00")
    assert values(recovered)[-3:] == ["site000", "site001", "site002"]
    assert recovered[-1]["text"]["text"] == "site002 · recovered"
    assert await menu(bot, storm.root_ts, "nosuch") == []
    assert await menu(bot, STALE_TS, "") == []  # not a grouped alert's root


async def test_a_chosen_site_is_shown_in_the_thread_once(
    storm: Storm, slack_bot: Callable[..., Any], slack_api: SlackStandIn
) -> None:
    bot: BotUnderTest = await slack_bot(storm.settings, other_threads=[storm.chat])
    before = len(slack_api.thread(storm.root_ts))

    def shown_for(name: str) -> list[Any]:
        return [m for m in slack_api.thread(storm.root_ts) if m.text.startswith(f"{name}: ")]

    await choose(bot, storm.root_ts, "site042")
    await slack_api.wait_for(lambda: shown_for("site042"), what="site042's diagnosis")
    [posted] = shown_for("site042")
    assert posted.text.startswith("site042: verdict: upstream_refused")
    assert "*site042*: its full diagnosis" in str(posted.blocks)
    assert block_kit_problems({"text": posted.text, "blocks": posted.blocks}) == []
    # Chosen again, and by two people at once: no second post, a private link instead.
    await choose(bot, storm.root_ts, "site042")
    await asyncio.gather(*(choose(bot, storm.root_ts, "site077") for _ in range(2)))
    await slack_api.wait_for(lambda: len(slack_api.responses) >= 2, what="private answers")
    await slack_api.wait_for(lambda: shown_for("site077"), what="site077's diagnosis")
    assert len(shown_for("site042")) == 1 and len(shown_for("site077")) == 1
    assert len(slack_api.thread(storm.root_ts)) == before + 2
    private = [r["text"] for r in slack_api.responses]
    assert "site042's latest diagnosis is already shown" in private[0]
    assert f"archives/{CHANNEL}/p{posted.ts.replace('.', '')}" in private[0]
    assert "site077's latest diagnosis is already shown" in private[1]
    assert all(r["response_type"] == "ephemeral" for r in slack_api.responses)


async def test_a_site_not_in_the_storm_or_a_stale_root_gets_a_private_line(
    storm: Storm, slack_bot: Callable[..., Any], slack_api: SlackStandIn
) -> None:
    bot: BotUnderTest = await slack_bot(storm.settings, other_threads=[storm.chat])
    posts = len(slack_api.calls_of("chat.postMessage"))
    await choose(bot, storm.root_ts, "nosuch")
    await slack_api.wait_for(lambda: slack_api.responses, what="the private answer")
    await choose(bot, STALE_TS, "site042")
    await slack_api.wait_for(lambda: len(slack_api.responses) == 2, what="the second answer")
    assert [r["text"] for r in slack_api.responses] == [
        "nosuch is not one of this grouped alert's sites.",
        NO_GROUP_TEXT,
    ]
    assert len(slack_api.calls_of("chat.postMessage")) == posts  # nothing posted


async def test_the_menu_works_over_socket_mode(storm: Storm, slack_api: SlackStandIn) -> None:
    config = BotConfig(
        slack_bot_token="xoxb-socket-mode",
        slack_app_token="xapp-1-A0BGW0001-1234-socketmodetoken",
        slack_api_url=slack_api.base_url,
    )
    process = build_web(config, storm.settings, other_threads=[storm.chat])
    url, problem = await socket_mode_url(process.client, config)
    assert problem is None
    handler = socket_mode_handler(process.app, config, url)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    signer = SlackSigner("", slack_api.response_url)  # builds bodies only: no signatures here
    try:
        await slack_api.socket.wait_connected()
        typed = signer.block_suggestion(
            SHOW_SITE_ACTION, "site14", message_ts=storm.root_ts, channel=CHANNEL
        )
        envelope = await slack_api.socket.push(
            "interactive", socket_payload(typed), accepts_response_payload=True
        )
        await slack_api.socket.acked(envelope)
        assert envelope.ack_payload is not None
        assert values(envelope.ack_payload["options"]) == [f"site14{n}" for n in range(10)]
        chosen = signer.block_action(
            SHOW_SITE_ACTION, "", message_ts=storm.root_ts, channel=CHANNEL, chosen="site143"
        )
        await slack_api.socket.acked(
            await slack_api.socket.push("interactive", socket_payload(chosen))
        )
        await slack_api.wait_for(
            lambda: [m for m in slack_api.thread(storm.root_ts) if m.text.startswith("site143: ")],
            what="site143's diagnosis",
        )
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        await process.close()
