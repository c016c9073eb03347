"""Two installs on one Redis: with different BADGATEWAY_REDIS_PREFIX each one's workers take
only its own jobs, and every key either writes (the bot's and SAQ's) is under its prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from badgateway.bot import storage
from badgateway.bot.config import ConfigError, load_config
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.carrier import QueueCarrier
from badgateway.checks.runner import prepare
from tests.lab.fixtures_redis import LAB_TUNING, QueueLab, step_calls

LAB_KEYS = {b"lab:calls"}  # the lab sink's record of what reached it, not the bot's


@pytest.fixture
def default_prefix() -> Iterator[None]:
    yield
    storage.use_prefix(storage.DEFAULT_PREFIX)  # the prefix is per process: leave it as found


async def _diagnose_as(lab: QueueLab, prefix: str) -> str:
    """Submit one diagnosis as a web process of the install ``prefix`` would."""
    storage.use_prefix(prefix)
    carrier = QueueCarrier(lab.config, lab.settings, LAB_TUNING)
    try:
        request = DiagnosisRequest.new(
            await prepare(lab.http.url(0), lab.settings), steps=["lab_ping"]
        )
        await carrier.submit(request)
    finally:
        await carrier.close()
    return request.id


async def test_two_prefixes_share_one_redis(queue_lab: QueueLab, default_prefix: None) -> None:
    queue_lab.start_worker("alpha-1", env={"BADGATEWAY_REDIS_PREFIX": "alpha"})
    queue_lab.start_worker("beta-1", env={"BADGATEWAY_REDIS_PREFIX": "beta"})

    first = await _diagnose_as(queue_lab, "alpha")
    second = await _diagnose_as(queue_lab, "beta")
    calls = await queue_lab.wait_concluded([first, second], within_s=20)

    assert step_calls(calls) == {(first, "lab_ping"): 1, (second, "lab_ping"): 1}
    workers = {c["id"]: c["worker"] for c in calls if c["kind"] == "verdict"}
    assert workers == {first: "alpha-1", second: "beta-1"}  # each install ran its own

    client = queue_lab.redis_server.client()
    try:
        keys = set(cast("list[bytes]", client.keys("*"))) - LAB_KEYS
    finally:
        client.close()
    outside = sorted(k for k in keys if not k.startswith((b"alpha:", b"beta:")))
    assert outside == []
    for prefix in (b"alpha:", b"beta:"):
        # Both the bot's records and SAQ's queue keys are there, under each prefix.
        assert any(k.startswith(prefix + b"saq:job:default:") for k in keys)
        assert any(k.startswith(prefix + b"saq:default:worker_info:") for k in keys)
        assert any(k.startswith(prefix + b"diag:") for k in keys)


def test_the_prefix_defaults_to_bgw() -> None:
    assert load_config({}, dotenv_path=None).redis_prefix == "bgw"
    assert load_config({"BADGATEWAY_REDIS_PREFIX": "team-b"}, dotenv_path=None).redis_prefix == (
        "team-b"
    )


@pytest.mark.parametrize("bad", ["a:b", "bgw*", "-x", "x" * 33])
def test_a_bad_prefix_is_one_line(bad: str) -> None:
    with pytest.raises(ConfigError, match="BADGATEWAY_REDIS_PREFIX"):
        load_config({"BADGATEWAY_REDIS_PREFIX": bad}, dotenv_path=None)
