"""Many people, one incident, under Slack's rate limits (issue 11, items 1 and 2).

The same `/502` typed in many channels at once, against the Web API stand-in enforcing Slack's
documented limits: every channel gets its root and a complete thread (every step reply and
the verdict, nothing twice), the site is diagnosed once (its probes are counted), no 429 is
ignored, and root updates stay within a budget. With an open alert the roots link to its
thread, which gets one note, not the diagnoses. Re-run is always a fresh run. Fewer channels
than the issue's fifty keep each test to seconds; ``python -m bench.many_askers_bench`` runs
the fifty. The workspace here has four times Slack's documented rates, and the bot is told so
(``BADGATEWAY_SLACK_RATE_SCALE``): the same race, run four times faster.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import badgateway.bot.pipeline
import badgateway.checks.runner
import badgateway.checks.steps
from badgateway.bot.threads import ThreadLink
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Finding, Status, StepResult
from badgateway.checks.steps import Step
from tests.lab.fixtures_slack import BotUnderTest, SlackStandIn, loopback_settings
from tests.lab.slack_limits import SlackLimits

pytestmark = pytest.mark.slack_limits  # the bot's real pace, against the limits it paces to

RATE_SCALE = 4.0  # the stand-in's limits and the bot's pace, both: Slack's times this

CHANNELS = [f"C0ASK{n:04d}" for n in range(8)]
STEP_NAMES = ["first", "second", "third"]
ALERTS = "C0ALERTS1"


class Probes:
    """Test checks that count how often the site is probed."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    def steps(self) -> tuple[Step, ...]:
        def check(name: str, delay_s: float) -> Step:
            async def run(ctx: ProbeContext) -> StepResult:
                self.runs[name] += 1
                await asyncio.sleep(delay_s)
                finding = Finding(f"{name}_seen", f"{name} saw a 502", Status.FAIL)
                return StepResult.from_findings(name, f"{name}: 502", [finding])

            return Step(name, 10 * (STEP_NAMES.index(name) + 1), name.title(), run)

        return tuple(check(name, 0.1 * i) for i, name in enumerate(STEP_NAMES))


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> Probes:
    counted = Probes()
    registry = counted.steps()
    for module in (badgateway.checks.steps, badgateway.checks.runner, badgateway.bot.pipeline):
        monkeypatch.setattr(module, "all_steps", lambda: registry)
    return counted


def _names(slack: SlackStandIn, root_ts: str) -> list[str]:
    return [m.text.split(":")[0] for m in slack.thread(root_ts)]


def _complete(slack: SlackStandIn, channels: list[str]) -> bool:
    roots = [r for c in channels for r in slack.roots(c)]
    return len(roots) == len(channels) and all(
        _names(slack, r.ts) == [*STEP_NAMES, "verdict"] for r in roots
    )


async def _ask_everywhere(bot: BotUnderTest, target: str, channels: list[str]) -> None:
    sent = await asyncio.gather(
        *(bot.command(target, channel=c, user=f"U0ASK{c[-4:]}") for c in channels)
    )
    assert all(s.status == 200 for s in sent)
    await bot.slack.wait_for(
        lambda: _complete(bot.slack, channels), within_s=45, what="every thread complete"
    )
    await bot.settle()


async def _limited(slack_bot: Callable[..., Any], **extra: Any) -> BotUnderTest:
    """The bot, against a stand-in that enforces Slack's rate limits from now on."""
    bot: BotUnderTest = await slack_bot(loopback_settings(), rate_scale=RATE_SCALE, **extra)
    bot.slack.limits = SlackLimits(scale=RATE_SCALE)
    return bot


def _assert_posted_once(slack: SlackStandIn) -> None:
    keys = [(m.channel, m.metadata["event_payload"]["key"]) for m in slack.messages if m.metadata]
    assert len(keys) == len(set(keys)), "a message was posted twice"


async def test_one_site_asked_from_many_channels_is_diagnosed_once(
    slack_bot: Callable[..., Any], failing_site: str, probes: Probes
) -> None:
    bot = await _limited(slack_bot)
    slack = bot.slack
    await _ask_everywhere(bot, failing_site, CHANNELS)

    assert probes.runs == dict.fromkeys(STEP_NAMES, 1)  # one diagnosis for everyone
    for channel in CHANNELS:
        (root,) = slack.roots(channel)
        assert "Verdict:" in str(root.blocks)  # the final state landed on every root
    # Every reply in every thread comes from the one run (its id leads each message's key).
    keys = [str(m.metadata["event_payload"]["key"]) for m in slack.messages if m.metadata]
    replies = [k for k in keys if not k.startswith("root:")]
    assert len(replies) == len(CHANNELS) * (len(STEP_NAMES) + 1)
    assert len({k.split(":")[0] for k in replies}) == 1
    _assert_posted_once(slack)
    assert slack.limits is not None and slack.limits.unhonoured == 0
    # Root updates are a budget: at most a couple per root (posted with every step pending,
    # then the final state), never one per step per root.
    updates = len(slack.calls_of("chat.update"))
    assert len(CHANNELS) <= updates <= 2 * len(CHANNELS), updates
    assert len(slack.roots()) == len(CHANNELS)


async def test_with_an_open_alert_roots_link_to_it_and_it_gets_one_note(
    slack_bot: Callable[..., Any], failing_site: str, probes: Probes
) -> None:
    class OpenAlert:
        ts = ""

        async def open_thread(self, ctx: ProbeContext) -> ThreadLink | None:
            return ThreadLink(ALERTS, self.ts)

    alert = OpenAlert()
    bot = await _limited(slack_bot, links=[alert])
    slack = bot.slack
    alert.ts = str((await bot.runtime.client.chat_postMessage(channel=ALERTS, text="alert"))["ts"])
    await _ask_everywhere(bot, failing_site, CHANNELS)

    assert probes.runs == dict.fromkeys(STEP_NAMES, 1)
    for channel in CHANNELS:
        (root,) = slack.roots(channel)
        assert f"archives/{ALERTS}/p{alert.ts.replace('.', '')}" in str(root.blocks)
    # One summarising note in the alert's thread (updated as people ask), no diagnosis there.
    await slack.wait_for(
        lambda: all(f"<#{c}>" in slack.thread(alert.ts)[0].text for c in CHANNELS),
        within_s=10,
        what="the note naming every asker",
    )
    (note,) = slack.thread(alert.ts)
    assert all(f"<@U0ASK{i:04d}>" in note.text for i in range(len(CHANNELS)))
    _assert_posted_once(slack)
    assert slack.limits is not None and slack.limits.unhonoured == 0


async def test_rerun_is_fresh_and_later_askers_share_it(
    slack_bot: Callable[..., Any], failing_site: str, probes: Probes
) -> None:
    bot = await _limited(slack_bot)
    slack = bot.slack
    await _ask_everywhere(bot, failing_site, CHANNELS[:2])
    assert probes.runs["first"] == 1
    # Within the window: shares the finished run (caught up at once), no new probe.
    await _ask_everywhere(bot, failing_site, CHANNELS[2:3])
    assert probes.runs["first"] == 1

    (root,) = slack.roots(CHANNELS[0])
    verdict = slack.thread(root.ts)[-1]
    press = bot.signer.block_action(
        "bgw_rerun", root.ts, message_ts=verdict.ts, thread_ts=root.ts, channel=CHANNELS[0]
    )
    assert (await bot.send(press)).status == 200
    await slack.wait_for(
        lambda: _names(slack, root.ts).count("verdict") == 2, within_s=20, what="re-run verdict"
    )
    assert probes.runs["first"] == 2  # a fresh run, although the window is open
    # The other threads keep their run; a new asker now shares the re-run.
    assert _names(slack, slack.roots(CHANNELS[1])[0].ts).count("verdict") == 1
    await _ask_everywhere(bot, failing_site, CHANNELS[3:4])
    assert probes.runs["first"] == 2
    # After the window a request starts a new run.
    bot.runtime.chatops.diagnoses.share_window_s = 0.0
    await asyncio.sleep(0.05)
    await _ask_everywhere(bot, failing_site, CHANNELS[4:5])
    assert probes.runs["first"] == 3
    _assert_posted_once(slack)
    assert slack.limits is not None and slack.limits.unhonoured == 0
