"""Block Kit rendering: escaping, redaction, Slack's size limits, and the text view of it."""

from __future__ import annotations

from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.render.slack_text import blocks_to_text, mrkdwn_to_text
from badgateway.checks.model import Cause, Diagnosis, Finding, Status, StepResult, Verdict


def _huge_result() -> StepResult:
    hostile = "<!channel> <@U123> & <https://evil.example|x> password=hunter2 Cookie: sid=abc"
    findings = [Finding(f"f{i}", f"{hostile} #{i}", Status.FAIL) for i in range(40)]
    details = {
        "attempts": [{"status": 502, "total_ms": i, "server": hostile} for i in range(500)],
        "per_resolver": {f"10.0.0.{i}": [f"192.0.2.{j}" for j in range(30)] for i in range(30)},
        "raw": "\n".join(hostile * 5 for _ in range(300)),
        "note": "x" * 10000,
        "nested": {"tls": {"subject": hostile, "chain": [{"cn": hostile}] * 100}},
    }
    return StepResult.from_findings("logs", hostile * 50, findings, details=details)


def test_step_message_is_escaped_redacted_and_within_limits() -> None:
    message = blocks.step_message(_huge_result())
    assert blocks.block_kit_problems(message) == []
    flat = str(message)
    assert "<!channel>" not in flat and "<@U123>" not in flat and "<https://evil" not in flat
    assert "&lt;!channel&gt;" in flat
    assert "hunter2" not in flat and "sid=abc" not in flat
    assert "…and" in flat and "more" in flat
    assert message["text"].startswith("logs: ")


def test_root_and_verdict_messages_within_limits() -> None:
    result = _huge_result()
    verdict = Verdict(Cause.UPSTREAM_REFUSED, "x" * 5000, ["do <this> & that"] * 30)
    diagnosis = Diagnosis("t" * 500, "https://t.example/", verdict, [result], 1200, "2024-05-01")
    root = blocks.root_message(
        target="t" * 500,
        url="https://t.example/",
        requester="U1",
        steps=[f"s{i}" for i in range(200)],
        results={},
        verdict=verdict,
        taken_by="U2",
    )
    for message in (
        root,
        blocks.verdict_message(diagnosis, "1.2"),
        blocks.escalation_message(diagnosis, "U3"),
    ):
        assert blocks.block_kit_problems(message) == [], message
    verdict_message = blocks.verdict_message(diagnosis, "1.2")
    assert verdict_message["blocks"][-1]["type"] == "actions"  # buttons survive the cut
    assert "do &lt;this&gt; &amp; that" in str(verdict_message)


def test_block_kit_problems_finds_violations() -> None:
    too_many = {"text": "x", "blocks": [blocks.section("a")] * 51}
    assert blocks.block_kit_problems(too_many)
    long_section = {
        "text": "x",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}],
    }
    assert blocks.block_kit_problems(long_section)
    assert blocks.block_kit_problems(blocks.fit(too_many)) == []
    long_menu = blocks.site_menu("x" * 149)
    long_menu["elements"][0]["placeholder"]["text"] += "xx"  # as if built past the cut
    assert blocks.block_kit_problems({"text": "x", "blocks": [long_menu]})
    assert blocks.block_kit_problems({"text": "x", "blocks": [blocks.site_menu("x" * 500)]}) == []
    assert blocks.options_problems([blocks.option("a", "v")] * 101)
    assert blocks.options_problems([blocks.option("a", "v" * 151)])
    assert blocks.options_problems([blocks.option("a" * 500, "v")]) == []  # cut to 75


def test_a_menu_reads_as_its_placeholder_in_text() -> None:
    menu = {"text": "x", "blocks": [blocks.site_menu("Show a site…")]}
    assert blocks_to_text(menu) == "[Show a site… ▾]"


def test_text_view_reads_like_the_thread() -> None:
    assert mrkdwn_to_text(
        "<@U1> &lt;b&gt; <https://x.example|site> <!date^1^{date}|2024-01-01>", {"U1": "you"}
    ) == ("@you <b> site (https://x.example) 2024-01-01")
    verdict = Verdict(Cause.HEALTHY, "fine", [])
    diagnosis = Diagnosis("t", "https://t.example/", verdict, [], 5, "2024-05-01")
    text = blocks_to_text(blocks.verdict_message(diagnosis, "1.2"))
    assert "Verdict: The site answers normally" in text
    assert "[Re-run] [I'm on it] [Escalate to host] [Resolved]" in text
