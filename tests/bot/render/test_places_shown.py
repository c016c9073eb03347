"""A step probed from several places shows its table of places, one line per place, in
Slack and in the terminal; the renderers only cap and escape what the step's reader says."""

import io
import json
from typing import Any

from badgateway.bot.render.slack_blocks import block_kit_problems, step_message
from badgateway.bot.render.terminal import TerminalReport
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.settings import Settings
from badgateway.checks.steps.firewall import assemble
from badgateway.checks.target import parse_target


def part(place: str, address: str, finding: Finding) -> dict[str, Any]:
    result = StepResult.from_findings(
        "firewall",
        finding.message,
        [finding],
        details={"edge": [{"address": address, "port": 443, "state": "x"}], "tls": {}},
    )
    return {
        "place": place,
        "result": result.to_dict(),
        "addresses": [address],
        "answers": [address],
        "resolver": "system",
        "resolve_error": None,
        "phases": {"resolve": 4, "probe": 1500},
    }


def regional() -> StepResult:
    settings = Settings(vantages=("eu-west", "us-east"))
    ctx = ProbeContext(parse_target("https://shop.example/", settings), settings)
    dropped = Finding(
        "tcp_timeout", "<dropped> & gone", Status.FAIL, Cause.FIREWALL_DROP, Weight.OBSERVED
    )
    parts = {
        "eu-west": part("eu-west", "203.0.113.7", Finding("tcp_open", "open")),
        "us-east": part("us-east", "198.51.100.9", dropped),
    }
    return assemble(ctx, parts, {"ap-south": "did not answer within 8 s"})


def test_slack_shows_one_escaped_line_per_place() -> None:
    message = step_message(regional())
    assert not block_kit_problems(message)
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "eu-west · ok · resolve 4 ms · probe 1500 ms · DNS 203.0.113.7 · open" in text
    assert "us-east · fail · resolve 4 ms · probe 1500 ms · DNS 198.51.100.9" in text
    assert "&lt;dropped&gt; &amp; gone" in text and "<dropped>" not in text
    assert "ap-south · missing · did not answer within 8 s" in text


def test_the_terminal_shows_one_line_per_place() -> None:
    out = io.StringIO()
    TerminalReport(out, color=False).step(regional())
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("✘ firewall  fails from us-east, works from eu-west")
    assert (
        "    us-east · fail · resolve 4 ms · probe 1500 ms · DNS 198.51.100.9 · <dropped> & gone"
        in lines
    )
    assert "    ap-south · missing · did not answer within 8 s" in lines
