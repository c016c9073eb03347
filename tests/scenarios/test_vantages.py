"""Issue 14 end to end: network namespaces as places (tests.lab.fixtures_places), each with
its own vantage worker process, routes and resolver, reaching one site.

The lab's own step (``lab_place``, routed like the probe steps) shows the plumbing: each
place probes from where it is, with its own resolver, through its own worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

import badgateway.checks.steps
from badgateway.bot.config import BotConfig
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.carrier import QueueCarrier
from badgateway.checks.runner import prepare
from badgateway.checks.settings import load_settings
from tests.lab.fixtures_places import PlacesLab
from tests.lab.fixtures_redis import CALLS_KEY, LAB_TUNING
from tests.lab.place_steps import install_place_step

pytestmark = pytest.mark.netns


@pytest.fixture
def place_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Recorded so that the registry is the real one again after this test.
    monkeypatch.setattr(badgateway.checks.steps, "all_steps", badgateway.checks.steps.all_steps)
    install_place_step()
    yield


async def _lab_place(lab: PlacesLab) -> list[str]:
    """Submit ``lab_place`` for the site from here; the messages of its one reply."""
    settings = load_settings(lab.sites_path)
    config = BotConfig(redis_url=lab.redis.url)
    carrier = QueueCarrier(config, settings, LAB_TUNING)
    try:
        request = DiagnosisRequest.new(await prepare("shop", settings), steps=["lab_place"])
        await carrier.submit(request)
    finally:
        await carrier.close()
    client = lab.redis.client()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            raw = cast("list[bytes]", client.lrange(CALLS_KEY, 0, -1))
            calls: list[dict[str, Any]] = [json.loads(c) for c in raw]
            if any(c["kind"] == "verdict" and c["id"] == request.id for c in calls):
                [step] = [c for c in calls if c["kind"] == "step" and c["id"] == request.id]
                return list(step["messages"])
            await asyncio.sleep(0.05)
    finally:
        client.close()
    raise TimeoutError("lab_place did not conclude")


async def test_each_place_probes_with_its_own_resolver_and_route(
    places_lab: PlacesLab, place_step: None
) -> None:
    site, old = places_lab.site.address, places_lab.old_address
    us = places_lab.places["us-east"].address
    assert await _lab_place(places_lab) == [
        f"eu-west by v-eu-west resolving with the system: HTTP 200 from {site}",
        f"us-east by v-us-east resolving with {us}:53: HTTP 200 from {site}",
    ]
    with places_lab.firewall_from("eu-west"), places_lab.answers("us-east", old):
        assert await _lab_place(places_lab) == [
            f"eu-west by v-eu-west resolving with the system: {site} failed: ConnectTimeout",
            f"us-east by v-us-east resolving with {us}:53: {old} failed: ConnectError",
        ]
