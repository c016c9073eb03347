"""`/502 shop from eu-west`: a run limited to some of the site's places, through the real Bolt
app over HTTP (requests signed as Slack signs them) against the Slack stand-in.

One check of the test's own records the context it ran with (its places, whether a person
reports the failure), so that what reaches the steps is asserted whatever checks the engine
has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

import badgateway.bot.pipeline
import badgateway.checks.runner
import badgateway.checks.steps
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Finding, Status, StepResult
from badgateway.checks.settings import Settings, Site
from badgateway.checks.steps import Step
from tests.lab.fixtures_slack import BotUnderTest, SlackStandIn, loopback_settings

PLACES = ("eu-west", "us-east")
SEEN: list[tuple[tuple[str, ...], bool]] = []  # (places, asker_reports_failure) per run


async def _where(ctx: ProbeContext) -> StepResult:
    SEEN.append((ctx.places, ctx.asker_reports_failure))
    finding = Finding("where", f"from {', '.join(ctx.places)}", Status.OK)
    return StepResult.from_findings("where", "ran", [finding])


STEPS = (Step("where", 10, "Where from", _where),)


@pytest.fixture
def where_step(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], bool]]:
    """The step registry is the one recording check everywhere it is read."""
    for module in (badgateway.checks.steps, badgateway.checks.runner, badgateway.bot.pipeline):
        monkeypatch.setattr(module, "all_steps", lambda: STEPS)
    SEEN.clear()
    return SEEN


def _settings(url: str) -> Settings:
    base: Settings = loopback_settings()
    return dataclasses.replace(
        base,
        vantages=PLACES,
        sites=(Site("shop", url), Site("blog", url + "blog", vantages=())),
    )


def _verdicts(slack: SlackStandIn, root_ts: str) -> list[Any]:
    return [m for m in slack.thread(root_ts) if m.text.startswith("verdict:")]


async def _asked(bot: BotUnderTest, text: str, roots: int) -> str:
    """`/502 TEXT` until its thread (the ``roots``-th) has its verdict; the root's ts."""
    sent = await bot.command(text)
    assert sent.status == 200 and not sent.text, sent.text  # no private answer: it runs
    await bot.slack.wait_for(lambda: len(bot.slack.roots()) == roots, what="the root")
    root = bot.slack.roots()[-1]
    await bot.slack.wait_for(lambda: _verdicts(bot.slack, root.ts), what="the verdict")
    await bot.settle()
    return root.ts


async def test_from_a_place_limits_the_run_and_is_a_flight_of_its_own(
    slack_bot: Callable[..., Any], failing_site: str, where_step: list[Any]
) -> None:
    bot: BotUnderTest = await slack_bot(_settings(failing_site))
    limited = await _asked(bot, "shop from eu-west", 1)
    assert where_step == [(("eu-west",), True)]  # that place only; a person says it fails
    assert "shop from eu-west" in str(bot.slack.message(limited).blocks)

    # The whole site is another run: it does not join the run from one place.
    await _asked(bot, "shop", 2)
    assert where_step[1] == (PLACES, True)
    # The same place again shares the limited run.
    await _asked(bot, "shop   from eu-west", 3)
    await _asked(bot, "shop from us-east,eu-west", 4)  # every place: the whole run, shared
    assert len(where_step) == 2

    # Re-run keeps the places and that a person reports the failure.
    verdict = _verdicts(bot.slack, limited)[0]
    pressed = bot.signer.block_action(
        "bgw_rerun", limited, message_ts=verdict.ts, thread_ts=limited
    )
    assert (await bot.send(pressed)).status == 200
    await bot.slack.wait_for(lambda: len(_verdicts(bot.slack, limited)) == 2, what="re-run")
    assert where_step[2] == (("eu-west",), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shop from ap-south", "unknown place ap-south; the places are: eu-west, us-east"),
        ("shop from eu-west,mars", "unknown place mars; the places are: eu-west, us-east"),
        ("blog from eu-west", "unknown place eu-west; the places are: none are configured"),
        ("shop from", "Name the places after `from`"),
    ],
)
async def test_an_unknown_place_is_one_private_line_and_nothing_starts(
    slack_bot: Callable[..., Any],
    failing_site: str,
    where_step: list[Any],
    text: str,
    expected: str,
) -> None:
    bot: BotUnderTest = await slack_bot(_settings(failing_site))
    sent = await bot.command(text)
    answer = sent.json()
    assert answer["response_type"] == "ephemeral"
    assert expected in answer["text"]
    assert answer["text"].count("\n") == 0  # one line
    assert bot.slack.calls_of("chat.postMessage") == []
    assert where_step == []


async def test_sites_and_help_name_the_places(
    slack_bot: Callable[..., Any], failing_site: str, where_step: list[Any]
) -> None:
    bot: BotUnderTest = await slack_bot(_settings(failing_site))
    sites = (await bot.command("sites")).json()["text"]
    assert "`shop`" in sites and "from eu-west, us-east" in sites
    assert "`blog`" in sites and sites.count("· from") == 1
    assert "/502 shop from eu-west" in (await bot.command("help")).json()["text"]
