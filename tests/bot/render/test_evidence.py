"""Step replies show readable evidence, from a real diagnosis (nginx in front of a stopped app)."""

import json

import pytest

from badgateway.bot.demo import demo_site
from badgateway.bot.render.evidence import step_evidence
from badgateway.bot.render.slack_blocks import block_kit_problems, step_message
from badgateway.checks.model import StepResult
from badgateway.checks.runner import diagnose


@pytest.fixture(scope="module")
def demo_steps() -> dict[str, StepResult]:
    import asyncio

    with demo_site() as settings:
        diagnosis = asyncio.run(diagnose("demo-shop", settings))
    return {s.name: s for s in diagnosis.steps}


def text_of(result: StepResult) -> str:
    return json.dumps(step_message(result)["blocks"], ensure_ascii=False)


def test_reload_shows_each_attempt_with_status_timings_and_producer(
    demo_steps: dict[str, StepResult],
) -> None:
    lines = step_evidence(demo_steps["reload"])
    assert lines is not None and len(lines) == len(demo_steps["reload"].details["attempts"])
    assert all("502 Bad Gateway" in line and "from nginx" in line for line in lines)
    assert any("[browser]" in line for line in lines) and "first byte" in lines[0]


def test_firewall_shows_edge_and_the_refusing_upstream(demo_steps: dict[str, StepResult]) -> None:
    lines = step_evidence(demo_steps["firewall"]) or []
    assert any(line.startswith("TCP 127.0.0.1:") and "open" in line for line in lines)
    assert any(line.startswith("upstream 127.0.0.1:") and "refused" in line for line in lines)


def test_logs_show_the_classified_line_itself(demo_steps: dict[str, StepResult]) -> None:
    text = text_of(demo_steps["logs"])
    assert "upstream_refused ×" in text
    assert "connect() failed (111: Connection refused)" in text


def test_host_shows_the_provider_summary_as_a_block(demo_steps: dict[str, StepResult]) -> None:
    text = text_of(demo_steps["host"])
    assert "```Target: http://127.0.0.1:" in text


def test_every_reply_fits_block_kit(demo_steps: dict[str, StepResult]) -> None:
    for result in demo_steps.values():
        assert block_kit_problems(step_message(result)) == []


def test_an_unknown_step_falls_back_to_the_generic_rendering() -> None:
    other = StepResult.from_findings("custom", "x", [], details={"answer": 42})
    assert step_evidence(other) is None
    assert "answer: 42" in text_of(other)
