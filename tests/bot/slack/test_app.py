"""The real Bolt app over HTTP, with requests signed as Slack signs them, posting to a local
stand-in of the Slack Web API: the thread a `/502` produces, buttons, mentions, refusals.

Most tests install three small checks of their own (they probe a real loopback HTTP server and
finish out of runbook order on purpose), so that ordering and updates can be asserted whatever
checks the engine has; ``test_real_checks_*`` runs the engine's own registry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import badgateway.bot.pipeline
import badgateway.checks.runner
import badgateway.checks.steps
from badgateway.bot.render.slack_blocks import block_kit_problems
from badgateway.bot.threads import ThreadLink
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.settings import Settings, Site
from badgateway.checks.steps import Step
from tests.lab.fixtures_slack import BOT_USER_ID, BotUnderTest, SlackStandIn

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
CHANNEL = "C0OPS0001"


# Checks of the tests' own, finishing out of order ------------------------------------------------
async def _get_status(ctx: ProbeContext) -> tuple[int, int]:
    if not ctx.addresses:  # the name did not resolve: nothing to ask (never the system DNS)
        return 0, 0
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as client:
        response = await client.get(ctx.target.url)
    return response.status_code, round((time.monotonic() - started) * 1000)


async def _alpha(ctx: ProbeContext) -> StepResult:
    await asyncio.sleep(0.4)  # finishes last
    status, ms = await _get_status(ctx)
    finding = Finding(
        "got_status", f"GET answered {status}", Status.FAIL if status >= 500 else Status.OK
    )
    return StepResult.from_findings(
        "alpha",
        f"the site answered {status}",
        [finding],
        details={"attempts": [{"status": status, "total_ms": ms, "server": "nginx"}]},
    )


async def _beta(ctx: ProbeContext) -> StepResult:
    finding = Finding("beta_warn", "something looks odd", Status.WARN)  # finishes first
    return StepResult.from_findings("beta", "a warning", [finding])


async def _gamma(ctx: ProbeContext) -> StepResult:
    await asyncio.sleep(0.15)
    status, _ms = await _get_status(ctx)
    lines = [
        f"2024/05/01 10:00:{i:02d} [error] connect() failed (111: Connection refused) "
        f"<!channel> token=xoxb-1234-SECRET & <https://evil.example|click> " + "x" * 150
        for i in range(200)
    ]
    finding = Finding(
        "log_upstream_refused",
        "<!here> upstream refused (from a log) & more",
        Status.FAIL,
        Cause.UPSTREAM_REFUSED,
        Weight.OBSERVED,
        {"count": 200},
    )
    details = {
        "lines": lines,
        "classified": [{"line": line, "class": "refused"} for line in lines],
        "raw": "\n".join(lines),
        "status_seen": status,
    }
    return StepResult.from_findings(
        "gamma", "log lines blame the upstream", [finding], details=details
    )


TEST_STEPS = (
    Step("alpha", 10, "Alpha probe", _alpha),
    Step("beta", 20, "Beta check", _beta),
    Step("gamma", 30, "Gamma logs", _gamma),
)
NAMES = [s.name for s in TEST_STEPS]


@pytest.fixture
def test_steps(monkeypatch: pytest.MonkeyPatch) -> tuple[Step, ...]:
    """Replace the step registry with the three test checks everywhere it is read."""

    def registry() -> tuple[Step, ...]:
        return TEST_STEPS

    for module in (badgateway.checks.steps, badgateway.checks.runner, badgateway.bot.pipeline):
        monkeypatch.setattr(module, "all_steps", registry)
    return TEST_STEPS


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "allow_networks": LOOPBACK,
        "reload_attempts": 1,
        "reload_spacing_s": 0,
        "timeout_s": 2,
        "diagnosis_budget_s": 8,
    }
    base.update(overrides)
    return Settings(**base)


def verdicts(slack: SlackStandIn, root_ts: str) -> list[Any]:
    return [m for m in slack.thread(root_ts) if m.text.startswith("verdict:")]


async def run_diagnosis(bot: BotUnderTest, target: str) -> str:
    """`/502 target` until its verdict is posted; returns the root message's ts."""
    sent = await bot.command(target)
    assert sent.status == 200, sent.text
    await bot.slack.wait_for(lambda: len(bot.slack.roots()) == 1, what="the root message")
    root = bot.slack.roots()[0]
    await bot.slack.wait_for(lambda: verdicts(bot.slack, root.ts), what="the verdict")
    await bot.settle()
    return root.ts


def all_posted_messages_fit(slack: SlackStandIn) -> None:
    for call in slack.calls_of("chat.postMessage") + slack.calls_of("chat.update"):
        message = {"text": call.params.get("text"), "blocks": call.params.get("blocks") or []}
        assert block_kit_problems(message) == [], (call.method, block_kit_problems(message))


# The thread --------------------------------------------------------------------------------------
async def test_slash_command_posts_one_root_and_step_replies_in_order(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    sent = await bot.command(failing_site)
    assert sent.status == 200
    assert sent.elapsed_s < 1.5, f"ack took {sent.elapsed_s:.2f} s"
    slack = bot.slack
    await slack.wait_for(lambda: len(slack.roots()) == 1, what="root")
    root = slack.roots()[0]
    assert root.channel == CHANNEL
    await slack.wait_for(lambda: verdicts(slack, root.ts), what="verdict")
    await bot.settle()

    assert len(slack.roots()) == 1
    thread = slack.thread(root.ts)
    # One reply per step in runbook order (they finished beta, gamma, alpha), then the verdict.
    assert [m.text.split(":")[0] for m in thread] == [*NAMES, "verdict"]
    assert all(m.thread_ts == root.ts for m in thread)
    posts = slack.calls_of("chat.postMessage")
    assert all(c.params.get("thread_ts") == root.ts for c in posts[1:])
    # The root was posted with every step pending, then updated (coalesced: the latest state
    # wins, at most one update per root every couple of seconds; not one per step), and shows
    # the marks and the verdict at the end.
    assert "⏳" in str(posts[0].params["blocks"])
    root_updates = [c for c in slack.calls_of("chat.update") if c.params["ts"] == root.ts]
    assert 1 <= len(root_updates) <= 3, len(root_updates)
    final = str(slack.message(root.ts).blocks)
    assert "❌" in final and "⚠️" in final and "✅" not in final
    assert "Verdict:" in final and "upstream_refused" in final
    # The verdict reply has the four buttons.
    verdict = verdicts(slack, root.ts)[0]
    actions = next(b for b in verdict.blocks if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [
        "bgw_rerun",
        "bgw_take",
        "bgw_escalate",
        "bgw_resolve",
    ]
    # Evidence from the site and logs is escaped and cut to Slack's limits.
    gamma = thread[2]
    gamma_text = str(gamma.blocks)
    assert "<!channel>" not in gamma_text and "<!here>" not in gamma_text
    assert "&lt;!channel&gt;" in gamma_text
    assert "<https://evil.example|click>" not in gamma_text
    assert "xoxb-1234-SECRET" not in gamma_text  # redacted
    assert "more" in gamma_text  # "…and N more"
    assert "GET answered 502" in str(thread[0].blocks)
    all_posted_messages_fit(slack)
    assert all(
        c.headers.get("Authorization") == "Bearer xoxb-test-token"
        for c in slack.calls
        if c.method != "auth.test" or c.status == 200
    )


async def test_link_form_and_site_name_are_targets(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    site = Site(name="shop", url=failing_site)
    bot: BotUnderTest = await slack_bot(settings(sites=(site,)))
    host = failing_site.removeprefix("http://").rstrip("/")
    root_ts = await run_diagnosis(bot, f"<{failing_site}|{host}>")
    assert failing_site in str(bot.slack.message(root_ts).blocks)
    sent = await bot.command("shop")
    assert sent.status == 200
    await bot.slack.wait_for(lambda: len(bot.slack.roots()) == 2, what="second root")
    assert "shop" in bot.slack.roots()[1].text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "Give me a target"),
        ("not a host", "without spaces"),
        ("ftp://files.example.com/", "only http and https"),
        ("http://10.0.0.1/", "private address"),
        ("169.254.169.254", "metadata"),
        ("http://user:pw@example.com/", "user name or password"),
    ],
)
async def test_bad_targets_get_an_ephemeral_answer_and_nothing_runs(
    slack_bot: Callable[..., Any], text: str, expected: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(Settings())  # the guard's defaults: no loopback
    sent = await bot.command(text)
    assert sent.status == 200 and sent.elapsed_s < 2.5
    answer = sent.json()
    assert answer["response_type"] == "ephemeral"
    assert expected in answer["text"]
    await asyncio.sleep(0.1)
    assert bot.slack.calls_of("chat.postMessage") == []


async def test_loopback_is_refused_without_allow_networks(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(Settings())
    sent = await bot.command(failing_site)
    assert "loopback" in sent.json()["text"]
    assert bot.slack.calls_of("chat.postMessage") == []


async def test_help_sites_and_status(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    site = Site(name="shop", url="https://shop.example.com/", channel="#ops-shop")
    bot: BotUnderTest = await slack_bot(settings(sites=(site,)))
    help_text = (await bot.command("help")).json()["text"]
    assert "/502" in help_text and "rerun dns" in help_text and "alpha, beta, gamma" in help_text
    sites = (await bot.command("sites")).json()["text"]
    assert "`shop`" in sites and "https://shop.example.com/" in sites
    assert (await bot.command("status")).json()["text"] == "No open incidents."
    await run_diagnosis(bot, failing_site)
    status = (await bot.command("status")).json()["text"]
    assert "Open incidents" in status and "upstream_refused" in status
    assert len(bot.slack.roots()) == 1  # help/sites/status post nothing


# Who may use it ----------------------------------------------------------------------------------
async def test_channel_and_user_allow_lists(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(
        settings(allowed_channels=("#ops",), allowed_users=("U0ALICE01", "S0ONCALL1"))
    )
    bot.slack.usergroups["S0ONCALL1"] = ["U0BOB0001"]
    elsewhere = await bot.command(failing_site, channel="C0RANDOM1", channel_name="random")
    assert "not enabled in this channel" in elsewhere.json()["text"]
    stranger = await bot.command(failing_site, user="U0MALLORY")
    assert "not on badgateway's list" in stranger.json()["text"]
    assert bot.slack.calls_of("chat.postMessage") == []
    # A member of an allowed user group may.
    sent = await bot.command(failing_site, user="U0BOB0001")
    assert sent.text == ""
    await bot.slack.wait_for(lambda: len(bot.slack.roots()) == 1, what="root")
    await bot.settle()
    # Buttons are refused to strangers too, privately, through response_url.
    root = bot.slack.roots()[0]
    await bot.slack.wait_for(lambda: verdicts(bot.slack, root.ts), what="verdict")
    before = len(bot.slack.messages)
    press = bot.signer.block_action(
        "bgw_take", root.ts, message_ts=root.ts, thread_ts=root.ts, user="U0MALLORY"
    )
    assert (await bot.send(press)).status == 200
    await bot.slack.wait_for(lambda: bot.slack.responses, what="ephemeral refusal")
    assert "not on badgateway's list" in bot.slack.responses[-1]["text"]
    assert bot.slack.responses[-1]["response_type"] == "ephemeral"
    assert len(bot.slack.messages) == before


async def test_private_channel_not_joined_gets_its_thread_in_a_direct_message(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    slack = bot.slack
    slack.channel_errors["G0PRIVATE"] = "channel_not_found"
    sent = await bot.command(
        failing_site, channel="G0PRIVATE", channel_name="privategroup", user="U0BOB0001"
    )
    assert sent.status == 200
    await slack.wait_for(lambda: slack.responses, what="where the diagnosis is")
    assert "direct messages" in slack.responses[0]["text"]
    assert "/invite @badgateway" in slack.responses[0]["text"]
    assert slack.responses[0]["response_type"] == "ephemeral"
    # The root and the whole thread are in the direct message with the asker.
    await slack.wait_for(lambda: len(slack.roots("D0BOB0001")) == 1, what="root in the DM")
    root = slack.roots("D0BOB0001")[0]
    await slack.wait_for(lambda: verdicts(slack, root.ts), what="verdict in the DM")
    await bot.settle()
    assert [m.text.split(":")[0] for m in slack.thread(root.ts)] == [*NAMES, "verdict"]
    assert slack.roots("G0PRIVATE") == [] and len(slack.roots()) == 1


async def test_no_channel_and_no_direct_message_says_how_to_invite(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    bot.slack.channel_errors["G0PRIVATE"] = "channel_not_found"
    bot.slack.channel_errors["D0BOB0001"] = "not_in_channel"  # the DM refused as well
    await bot.command(failing_site, channel="G0PRIVATE", user="U0BOB0001")
    await bot.slack.wait_for(lambda: bot.slack.responses, what="invite hint")
    assert "/invite @badgateway" in bot.slack.responses[0]["text"]
    assert "direct messages" not in bot.slack.responses[0]["text"]
    await bot.settle()
    assert bot.slack.messages == []


async def test_public_channel_not_joined_still_gets_the_thread(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    # chat:write.public: Slack accepts posts to public channels the bot has not joined.
    bot: BotUnderTest = await slack_bot(settings())
    await run_diagnosis(bot, failing_site)
    assert bot.slack.roots()[0].channel == CHANNEL
    assert not bot.slack.calls_of("conversations.join")


# Signatures and events ---------------------------------------------------------------------------
async def test_bad_or_stale_signature_is_401_and_does_nothing(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    forged = await bot.send(bot.signer.slash_command(failing_site), secret="not-the-secret")
    assert forged.status == 401
    stale = await bot.send(
        bot.signer.slash_command(failing_site), timestamp=int(time.time()) - 6 * 60
    )
    assert stale.status == 401
    unsigned = await bot.send(bot.signer.slash_command(failing_site), signed=False)
    assert unsigned.status == 401
    await asyncio.sleep(0.2)
    assert bot.slack.calls == []  # not even auth.test: no work at all


async def test_url_verification_answers_the_challenge(slack_bot: Callable[..., Any]) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    sent = await bot.send(
        bot.signer.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    )
    assert sent.status == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in sent.text


# Buttons -----------------------------------------------------------------------------------------
async def test_buttons_take_escalate_rerun_resolve(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    slack = bot.slack
    root_ts = await run_diagnosis(bot, failing_site)
    verdict_ts = verdicts(slack, root_ts)[0].ts

    async def press(action: str, user: str = "U0BOB0001") -> None:
        built = bot.signer.block_action(
            action, root_ts, message_ts=verdict_ts, thread_ts=root_ts, user=user
        )
        sent = await bot.send(built)
        assert sent.status == 200 and sent.elapsed_s < 1.5

    await press("bgw_take")
    await slack.wait_for(lambda: "is on it" in str(slack.message(root_ts).blocks), what="taken")
    assert "<@U0BOB0001> is on it" in str(slack.message(root_ts).blocks)
    # The note in the thread follows the root's update.
    await slack.wait_for(
        lambda: any("is on it" in m.text for m in slack.thread(root_ts)), what="taken note"
    )

    await press("bgw_escalate")
    await slack.wait_for(
        lambda: any("escalation" in m.text for m in slack.thread(root_ts)), what="escalation"
    )
    escalation = next(m for m in slack.thread(root_ts) if "escalation" in m.text)
    assert f"Site: {failing_site}" in str(escalation.blocks)
    assert "xoxb-1234-SECRET" not in str(escalation.blocks)

    await press("bgw_rerun")
    await slack.wait_for(lambda: len(verdicts(slack, root_ts)) == 2, what="second verdict")
    await bot.settle()
    assert len(slack.roots()) == 1  # never a second root
    texts = [m.text.split(":")[0] for m in slack.thread(root_ts)]
    assert texts.count("alpha") == 2 and texts.count("verdict") == 2
    assert "re-run" in str(slack.message(root_ts).blocks)

    await press("bgw_resolve", user="U0CAROL01")
    await slack.wait_for(
        lambda: "resolved by" in str(slack.message(root_ts).blocks), what="resolved"
    )
    root_blocks = str(slack.message(root_ts).blocks)
    assert "resolved by <@U0CAROL01>" in root_blocks and "<!date^" in root_blocks
    assert (await bot.command("status")).json()["text"] == "No open incidents."
    all_posted_messages_fit(slack)


# Mentions ----------------------------------------------------------------------------------------
async def test_mentions_in_the_thread_and_retried_events(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    slack = bot.slack
    root_ts = await run_diagnosis(bot, failing_site)
    before = len(slack.thread(root_ts))

    event = bot.signer.app_mention(
        f"<@{BOT_USER_ID}> rerun beta", thread_ts=root_ts, event_id="Ev0RERUN01"
    )
    sent = await bot.send(event)
    assert sent.status == 200 and sent.elapsed_s < 1.5
    await slack.wait_for(lambda: len(verdicts(slack, root_ts)) == 2, what="second verdict")
    await bot.settle()
    new = [m.text.split(":")[0] for m in slack.thread(root_ts)[before:]]
    assert new[-2:] == ["beta", "verdict"] and "alpha" not in new and "gamma" not in new
    # Only beta re-ran; the root still lists every check with the kept results.
    assert "Alpha probe" in str(slack.message(root_ts).blocks)

    # Slack retries the same event: 2xx, nothing done again.
    again = await bot.send(
        event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert again.status == 200
    await asyncio.sleep(0.5)
    await bot.settle()
    assert len(verdicts(slack, root_ts)) == 2

    # An unknown check name: a private answer, nothing posted.
    count = len(slack.messages)
    await bot.send(bot.signer.app_mention(f"<@{BOT_USER_ID}> rerun nosuch", thread_ts=root_ts))
    await slack.wait_for(lambda: slack.ephemerals, what="ephemeral")
    assert "no check called `nosuch`" in slack.ephemerals[0]["text"]
    assert len(slack.messages) == count

    await bot.send(bot.signer.app_mention(f"<@{BOT_USER_ID}> help", thread_ts=root_ts))
    await slack.wait_for(lambda: len(slack.messages) == count + 1, what="help reply")
    assert "/502" in slack.messages[-1].text and slack.messages[-1].thread_ts == root_ts
    # The thread already holds a diagnosis: no hint to start one.
    assert "Start a diagnosis" not in slack.messages[-1].text
    await bot.send(bot.signer.app_mention(f"<@{BOT_USER_ID}> help", thread_ts=None))  # channel
    await slack.wait_for(lambda: len(slack.messages) == count + 2, what="channel help reply")
    assert "Start a diagnosis with `/502 TARGET`" in slack.messages[-1].text
    assert len(slack.calls_of("auth.test", ok_only=True)) >= 1


# Slack failing -----------------------------------------------------------------------------------
async def test_rate_limits_and_server_errors_lose_nothing_and_post_nothing_twice(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    slack = bot.slack
    slack.fail("chat.postMessage", status=429, times=3, retry_after=0)
    slack.fail("chat.postMessage", status=500, times=1, posted_anyway=True)
    slack.fail("chat.update", status=503, times=1)
    slack.fail("chat.postMessage", status=429, times=3, retry_after=0)
    root_ts = await run_diagnosis(bot, failing_site)
    # The root catches up after the verdict reply (coalesced, and retried past the 503): under
    # load that can be after run_diagnosis's settle, so wait for it here (bounded).
    await slack.wait_for(
        lambda: "Verdict:" in str(slack.message(root_ts).blocks), what="the root's verdict"
    )
    await bot.settle()
    unspent = [(f.method, f.status, f.times) for f in slack.failures if f.times]
    # Under load the fake steps can finish before the root is posted (after its 429s and the
    # 500): the root is then posted showing the verdict and never updated, so the scripted
    # chat.update 503 has nothing to refuse. Any update made must have met it.
    if not slack.calls_of("chat.update", ok_only=False):
        unspent.remove(("chat.update", 503, 1))
    assert not unspent, (unspent, [(c.method, c.status) for c in slack.calls])
    assert len(slack.roots()) == 1
    thread = slack.thread(root_ts)
    assert [m.text.split(":")[0] for m in thread] == [*NAMES, "verdict"]
    keys = [m.metadata["event_payload"]["key"] for m in slack.messages if m.metadata]
    assert len(keys) == len(set(keys))  # every message exactly once
    assert len(slack.calls_of("chat.postMessage", ok_only=False)) >= 4 + 6  # the retries happened
    # The 500 came after Slack had posted the root: the bot found it instead of posting again.
    assert len(slack.calls_of("conversations.history")) == 1
    assert "Verdict:" in str(slack.message(root_ts).blocks)


# The engine's own checks -------------------------------------------------------------------------
async def test_real_checks_post_one_reply_each_in_runbook_order(
    slack_bot: Callable[..., Any], failing_site: str
) -> None:
    bot: BotUnderTest = await slack_bot(settings())
    root_ts = await run_diagnosis(bot, failing_site)
    expected = [s.name for s in badgateway.checks.steps.all_steps()]
    thread = bot.slack.thread(root_ts)
    assert [m.text.split(":")[0] for m in thread] == [*expected, "verdict"]
    all_posted_messages_fit(bot.slack)


async def test_a_slow_resolver_does_not_hold_the_ack(
    slack_bot: Callable[..., Any], test_steps: Any
) -> None:
    # A DNS server that never answers: vetting outlasts the wait, so the bot acks first and
    # posts the root once the lookup gives up (the DNS check then explains the failure).
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = f"127.0.0.1:{silent.getsockname()[1]}"
        bot: BotUnderTest = await slack_bot(settings(resolvers=(resolver,), timeout_s=2.5))
        sent = await bot.command("shop.example.com")
        assert sent.status == 200 and sent.text == ""
        assert 1.0 < sent.elapsed_s < 2.5  # waited for DNS a little, never Slack's 3 s
        await bot.slack.wait_for(lambda: len(bot.slack.roots()) == 1, what="root after DNS")
        await bot.settle()
        assert "shop.example.com" in bot.slack.roots()[0].text
    finally:
        silent.close()


class _AlertSide:
    """Stands in for bot.alerts' AlertChat (tested with its own lab): another kind of thread
    (bot.threads.ThreadKind) and a `/502 mute` command, recording what reaches it."""

    def __init__(self) -> None:
        self.alert_root = ""
        self.actions: list[str] = []

    async def owner(self, channel: str, ts: str) -> Any:
        return self if ts == self.alert_root else None

    async def status_text(self) -> str:
        return "alerts: shop is down"

    async def open_thread(self, ctx: Any) -> ThreadLink | None:
        return ThreadLink(CHANNEL, self.alert_root)

    async def mute(self, words: list[str], user: str) -> str:
        return "muted shop"

    async def take(self, user: str, reply: Any) -> None:
        self.actions.append("take")

    async def resolve(self, user: str, reply: Any) -> None:
        self.actions.append("resolve")

    async def rerun(
        self, user: str, reply: Any, step: str | None = None, trigger: str = "rerun"
    ) -> None:
        self.actions.append("rerun")

    async def escalate(self, user: str, reply: Any) -> None:
        self.actions.append("escalate")


async def test_alert_hooks_come_first(
    slack_bot: Callable[..., Any], failing_site: str, test_steps: Any
) -> None:
    alerts = _AlertSide()
    bot: BotUnderTest = await slack_bot(
        settings(), other_threads=[alerts], commands={"mute": alerts.mute}, links=[alerts]
    )
    alert_root = await bot.runtime.client.chat_postMessage(channel=CHANNEL, text="alert: shop")
    alerts.alert_root = str(alert_root["ts"])
    assert (await bot.command("mute shop 1h")).json()["text"] == "muted shop"
    status = (await bot.command("status")).json()["text"]
    assert "No open incidents." in status and "alerts: shop is down" in status
    # `/502 URL` for an alerting site: answered where it was typed, with a link to the alert's
    # thread; the alert's thread gets a note naming the asker, not a copy of the diagnosis.
    await bot.command(failing_site, channel="C0WEB0001", user="U0BOB0001")
    slack = bot.slack
    await slack.wait_for(lambda: len(slack.roots("C0WEB0001")) == 1, what="the /502 root")
    root = slack.roots("C0WEB0001")[0]
    await slack.wait_for(lambda: verdicts(slack, root.ts), what="verdict in its own thread")
    await bot.settle()
    assert [m.text.split(":")[0] for m in slack.thread(root.ts)] == [*NAMES, "verdict"]
    permalink = slack.calls_of("chat.getPermalink")[0]
    assert permalink.params["message_ts"] == alerts.alert_root
    assert f"p{alerts.alert_root.replace('.', '')}" in str(root.blocks)
    in_alert = slack.thread(alerts.alert_root)
    assert len(in_alert) == 1 and "<@U0BOB0001> in <#C0WEB0001>" in in_alert[0].text
    assert not verdicts(slack, alerts.alert_root)
    press = bot.signer.block_action(
        "bgw_take", alerts.alert_root, message_ts=alerts.alert_root, thread_ts=alerts.alert_root
    )
    await bot.send(press)
    await bot.slack.wait_for(lambda: alerts.actions == ["take"], what="alert hook")
    # `@badgateway rerun` in the alert's thread goes to the alerting side too.
    await bot.send(bot.signer.app_mention(f"<@{BOT_USER_ID}> rerun", thread_ts=alerts.alert_root))
    await bot.slack.wait_for(lambda: alerts.actions == ["take", "rerun"], what="mention hook")
    # Help in the alert's thread: like a `/502` thread, it already has a diagnosis, so no hint
    # to start one (before issue 10 only `/502` threads dropped the hint).
    count = len(bot.slack.messages)
    await bot.send(bot.signer.app_mention(f"<@{BOT_USER_ID}> help", thread_ts=alerts.alert_root))
    await bot.slack.wait_for(lambda: len(bot.slack.messages) == count + 1, what="help reply")
    assert bot.slack.messages[-1].thread_ts == alerts.alert_root
    assert "Start a diagnosis" not in bot.slack.messages[-1].text
