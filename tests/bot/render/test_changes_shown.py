"""What changed since the last healthy check, under a verdict: in Block Kit within Slack's
limits (strong changes in bold, the rest as context, a long list cut) and in the terminal."""

from __future__ import annotations

import io

from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.render.terminal import TerminalReport
from badgateway.checks.model import Cause, Change, Diagnosis, Verdict

BASELINE = "Compared with the last healthy check, at 12:01:00 UTC: 12 changes."


def changed_diagnosis() -> Diagnosis:
    changes = [
        Change(
            fact=f"header.server{n}",
            layer="edge",
            message=f"Server <nginx/1.{n}> & co " + "x" * 400,
            before="a",
            now="b",
            seen_before_at="2026-12-01T12:01:00+00:00",
            seen_now_at="2026-12-01T12:03:00+00:00",
            at_failing_layer=n == 0,
        )
        for n in range(12)
    ]
    verdict = Verdict(Cause.UNREACHABLE, "Nothing answers.", ["Start it."], [], changes, BASELINE)
    return Diagnosis("shop", "http://shop.test/", verdict, [], 10, "2026-12-01T12:03:00+00:00")


def test_changes_in_block_kit_within_limits() -> None:
    message = blocks.verdict_message(changed_diagnosis(), "1.2")
    assert blocks.block_kit_problems(message) == []
    flat = str(message["blocks"])
    assert "*What changed*" in flat and "…and 4 more" in flat
    assert "• *Server &lt;nginx/1.0&gt; &amp; co" in flat  # strong: bold, escaped
    assert "• Server &lt;nginx/1.1&gt;" in flat  # context: plain
    assert BASELINE in flat
    assert message["blocks"][-1]["type"] == "actions"


def test_changes_in_the_terminal() -> None:
    out = io.StringIO()
    TerminalReport(out, color=False).finish(changed_diagnosis())
    text = out.getvalue()
    assert "What changed:" in text and text.count("Server <nginx/1.") == 12
    assert "  ✘ Server <nginx/1.0>" in text and "  · Server <nginx/1.1>" in text
    assert text.rstrip().endswith(BASELINE)
