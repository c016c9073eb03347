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
from tests.lab.fixtures_places import HOST_WAIT_S, PlacesLab, finished
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


def _verdict(doc: dict[str, Any]) -> tuple[str, str]:
    return str(doc["verdict"]["cause"]), str(doc["verdict"]["summary"])


def _findings(doc: dict[str, Any], step: str) -> list[str]:
    [found] = [s for s in doc["steps"] if s["name"] == step]
    return [str(f["message"]) for f in found["findings"]]


async def _diagnosis(lab: PlacesLab, ns: str | None = None) -> dict[str, Any]:
    return await asyncio.to_thread(lab.diagnosis, "eu-west", "us-east", ns=ns)


async def test_every_place_reaching_the_site_is_healthy_from_each(places_lab: PlacesLab) -> None:
    doc = await _diagnosis(places_lab)
    assert _verdict(doc)[0] == "healthy"
    assert _findings(doc, "reload") == [
        "All 4 attempts answered without a server error (200, 200, 200, 200) "
        "(from here, eu-west, us-east)"
    ]


async def test_a_firewall_dropping_one_place_is_regional_naming_that_place(
    places_lab: PlacesLab,
) -> None:
    with places_lab.firewall_from("eu-west"):
        doc = await _diagnosis(places_lab)
    site = places_lab.site.address
    cause, summary = _verdict(doc)
    assert cause == "regional", summary
    first = doc["verdict"]["evidence"][0]
    assert first["data"]["failing"] == ["eu-west"]
    assert first["data"]["working"] == ["here", "us-east"]
    assert first["message"].startswith(
        f"Reload fails from eu-west and works from here, us-east: eu-west sees {site}: "
        "all 4 attempts failed: 4× connect timed out"
    )
    # Compared with the site's history in Redis, as the worker compares it.
    assert doc["verdict"]["baseline"].startswith(
        ("Compared with the last healthy check", "shop has not been seen healthy")
    ), doc["verdict"]["baseline"]


async def test_a_resolver_answering_an_old_address_in_one_place_is_named(
    places_lab: PlacesLab,
) -> None:
    old = places_lab.old_address
    with places_lab.answers("us-east", old):
        doc = await _diagnosis(places_lab)
    cause, summary = _verdict(doc)
    assert cause == "regional", summary
    assert doc["verdict"]["evidence"][0]["data"]["failing"] == ["us-east"]
    assert doc["verdict"]["evidence"][0]["data"]["addresses"]["us-east"] == [old]
    dns = _findings(doc, "dns")
    assert any("us-east" in m and old in m for m in dns), dns


async def test_every_place_reaching_the_site_but_the_asker_is_client_side(
    places_lab: PlacesLab,
) -> None:
    """The terminal runs in a namespace that cannot reach the site (its VPN, its firewall):
    both vantages reach it, so the trouble is on the asker's side."""
    with places_lab.blocked(places_lab.asker):
        doc = await _diagnosis(places_lab, ns=places_lab.asker.name)
    cause, summary = _verdict(doc)
    assert cause == "client_side", summary
    assert "fails only from here" in summary, summary


async def test_every_place_answering_right_but_the_askers_resolver_is_client_side(
    places_lab: PlacesLab,
) -> None:
    """The asker's own resolver still answers the site's old address (a stale cache, a VPN's
    DNS): the places resolve and reach the site, the terminal's own view does not."""
    old = places_lab.old_address
    with places_lab.answers("asker", old):
        doc = await _diagnosis(places_lab)
    cause, summary = _verdict(doc)
    assert cause == "client_side", summary
    assert "fails only from here" in summary, summary
    assert f"(here resolves {old}, the other places" in summary, summary
    asker_resolver = f"{places_lab.asker.address}:53"
    dns = _findings(doc, "dns")
    assert any(old in m and asker_resolver in m and "(from here)" in m for m in dns), dns


async def test_a_vantage_killed_mid_run_is_named_and_the_verdict_still_comes(
    places_lab: PlacesLab,
) -> None:
    """us-east's worker is SIGKILLed while its parts run (the site drops its packets, so
    they take a while): the reply names us-east, and the verdict comes within the wait."""
    try:
        with places_lab.firewall_from("us-east"):
            started = time.monotonic()
            run = places_lab.diagnose("eu-west", "us-east")
            deadline = time.monotonic() + 20
            while places_lab.active("probe@us-east") == 0:
                assert time.monotonic() < deadline, "us-east never took a part"
                await asyncio.sleep(0.02)
            places_lab.kill("v-us-east")
            doc = await asyncio.to_thread(finished, run)
            took_s = time.monotonic() - started
    finally:
        places_lab.start_vantage("us-east")
    # How long is a figure (no timed assert): the bound is the host wait the reply names.
    print(f"verdict {took_s:.1f} s after asking (host wait {HOST_WAIT_S} s)")
    gone = (
        f"no result from us-east: did not answer within {HOST_WAIT_S} s; "
        "is `badgateway worker --vantage us-east` running?"
    )
    # Its dropped connects keep reload and firewall running past the kill (its DNS part,
    # answered by its own resolver, may have come in before).
    for step in ("reload", "firewall"):
        assert gone in _findings(doc, step), _findings(doc, step)
    assert _verdict(doc)[0] == "healthy"  # eu-west and here reach the site
