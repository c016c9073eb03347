"""The probe steps from several places, in one process (no queue): each place's part runs
with that place's own Settings (its own resolver, a real BIND serving its view of the zone),
against real servers; then the parts are assembled and judged as a worker would.

Place A's resolver answers the address where the site is served; place B's answers one
where nothing listens (refused) or, in the network-namespace test, a host behind a DROP rule.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Cause, Finding, Status, StepResult, Verdict, Weight
from badgateway.checks.place_names import HERE
from badgateway.checks.places import QUEUE, failing_places, table_lines
from badgateway.checks.runner import assemble_parts, part_places, prepare, run_part
from badgateway.checks.settings import Settings, Site
from badgateway.checks.steps import ANYWHERE, step_named
from badgateway.checks.target import parse_target
from badgateway.checks.verdict import decide
from tests.lab.fixtures_dns import ZoneServer
from tests.lab.fixtures_netns import NetnsListener
from tests.lab.fixtures_upstreams import Upstream

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
PROBE_STEPS = ("reload", "dns", "firewall")
HOST = "www.shop.test"


def place_settings(
    resolver: str,
    *extra: ipaddress.IPv4Network,
    places: tuple[str, ...] = ("eu-west", "us-east"),
) -> Settings:
    """One place's settings: its resolver, the lab's networks opened, a short budget."""
    return Settings(
        resolvers=(resolver,),
        allow_networks=(LOOPBACK, *extra),
        timeout_s=1.5,
        reload_attempts=2,
        reload_spacing_s=0.05,
        diagnosis_budget_s=6.0,
        vantages=places,
    )


@pytest.fixture
def live_site() -> Iterator[Upstream]:
    """The site as place A reaches it: a real HTTP server on 127.0.0.1."""
    with Upstream("ok") as site:
        yield site


@pytest.fixture
def zones(zone_server: Callable[[str, str], ZoneServer]) -> Callable[[str], str]:
    """``zones(address)``: a BIND of its own answering www.shop.test with ``address``."""

    def serve(address: str) -> str:
        return zone_server("shop.test", f"www 60 IN A {address}\n").address

    return serve


async def from_places(
    url: str, asker: Settings, views: Mapping[str, Settings], *, asker_reports: bool = False
) -> dict[str, StepResult]:
    """Each probe step's parts run at each place with that place's settings (the context
    travels as JSON, as it does to a vantage worker), then assembled where the asker is."""
    ctx = await prepare(url, asker)
    ctx.asker_reports_failure = asker_reports
    ctx.deadline = time.monotonic() + asker.diagnosis_budget_s
    results = {}
    for name in PROBE_STEPS:
        step = step_named(name)
        assert step is not None and step.parts is not None
        parts: dict[str, dict[str, Any]] = {}
        for place in part_places(step, ctx):
            if place != ANYWHERE and place not in views:
                parts[place] = {"missing": "did not answer within 8 s"}
                continue
            there = ProbeContext.from_dict(ctx.to_dict(), views.get(place, asker))
            there.deadline = ctx.deadline
            parts[place] = json.loads(json.dumps(await run_part(step, there, place)))
        results[name] = assemble_parts(step, ctx, parts)
    return results


async def same_everywhere(
    site: Upstream, resolver: str, *, asker_reports: bool = False
) -> dict[str, StepResult]:
    """Both places (and the asker) resolve through ``resolver``."""
    views = {place: place_settings(resolver) for place in ("eu-west", "us-east")}
    url = f"http://{HOST}:{site.port}/"
    return await from_places(url, place_settings(resolver), views, asker_reports=asker_reports)


def verdict_of(results: Mapping[str, StepResult]) -> Verdict:
    return decide(results.values())


def coded(result: StepResult, code: str) -> Finding:
    found = [f for f in result.findings if f.code == code]
    assert len(found) == 1, [f.code for f in result.findings]
    return found[0]


def test_the_probe_steps_go_to_the_probe_queues_and_only_with_places() -> None:
    settings = Settings(allow_networks=(LOOPBACK,))
    site = Site(name="shop", url="http://127.0.0.1/", upstreams=("127.0.0.1:9",))
    settings = replace(settings, sites=(site,))
    target = parse_target("shop", settings)
    alone = ProbeContext(target=target, settings=settings)
    placed = replace(alone, places=("eu-west", "us-east"))
    for name in PROBE_STEPS:
        step = step_named(name)
        assert step is not None and step.parts is not None
        assert part_places(step, alone) == ()  # no places: the step runs whole, as before
        assert step.parts.queue_at("eu-west") == f"{QUEUE}@eu-west" == "probe@eu-west"
    firewall = step_named("firewall")
    assert firewall is not None
    # The edge from each place; the upstreams stay with the default workers.
    assert part_places(firewall, placed) == ("eu-west", "us-east", ANYWHERE)


async def test_failing_from_one_place_is_regional_naming_it(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    good, moved = zones("127.0.0.1"), zones("127.0.0.2")  # nothing listens on 127.0.0.2
    url = f"http://{HOST}:{live_site.port}/"
    three = ("ap-south", "eu-west", "us-east")
    views = {
        "ap-south": place_settings(good, places=three),
        "eu-west": place_settings(good, places=three),
        "us-east": place_settings(moved, places=three),
    }
    results = await from_places(url, place_settings(good, places=three), views)

    verdict = verdict_of(results)
    assert verdict.cause is Cause.REGIONAL
    assert failing_places(results.values()) == ("us-east",)
    regional = coded(results["reload"], "regional")
    assert regional.data["failing"] == ["us-east"]
    assert regional.data["working"] == ["ap-south", "eu-west"]
    assert regional.weight is Weight.OBSERVED  # us-east's own connects were refused
    assert "connection refused" in regional.message and "127.0.0.2" in regional.message
    # us-east's own cause findings are context now: the verdict does not say "unreachable".
    refused = coded(results["firewall"], "tcp_refused")
    assert refused.cause is None and refused.data["cause_at_place"] == "unreachable"
    assert refused.data["places"] == ["us-east"] and "(from us-east)" in refused.message
    assert coded(results["firewall"], "regional").data["failing"] == ["us-east"]
    # The place whose resolver answers another address is named in the DNS step.
    differs = coded(results["dns"], "dns_differs_by_place")
    assert "us-east resolves 127.0.0.2, the other places 127.0.0.1" in differs.message
    assert differs.severity is Status.WARN
    # The table: one line per place, with its status, timings, DNS answers.
    step = step_named("reload")
    assert step is not None and step.evidence is not None
    lines = step.evidence(results["reload"])
    assert lines[1].startswith("eu-west · ok · resolve ") and "DNS 127.0.0.1" in lines[1]
    assert " · connect " in lines[1] and " · first byte " in lines[1] and " · probe " in lines[1]
    assert lines[2].startswith("us-east · fail · resolve ") and "DNS 127.0.0.2" in lines[2]
    assert any(line.startswith("1. [ap-south bot] 200") for line in lines)
    # Each place's requests carry the place in their mark, for the logs step.
    marks = {r.mark for r in results["reload"].sent}
    assert len(marks) == 9 and any(".us-east.r" in m for m in marks)


async def test_a_server_error_from_one_place_is_regional_and_observed(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    """us-east's resolver sends it to another server of the site that answers 500."""
    with Upstream("error500", host="127.0.0.2", port=live_site.port):
        good, other = zones("127.0.0.1"), zones("127.0.0.2")
        views = {"eu-west": place_settings(good), "us-east": place_settings(other)}
        results = await from_places(f"http://{HOST}:{live_site.port}/", views["eu-west"], views)

    assert verdict_of(results).cause is Cause.REGIONAL
    regional = coded(results["reload"], "regional")
    assert (
        regional.weight is Weight.OBSERVED and "us-east sees 127.0.0.2: all 3" in regional.message
    )
    assert "500" in regional.data["seen"]["us-east"]
    # The network path works from both: only the answer differs.
    assert not [f for f in results["firewall"].findings if f.code == "regional"]


async def test_an_address_the_guard_refuses_is_not_probed_from_that_place(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    """The SSRF guard vets each place's own answers: us-east resolves a private address,
    which is named and never connected to (the suite's network guard would fail the test)."""
    good, private = zones("127.0.0.1"), zones("10.0.0.5")
    views = {"eu-west": place_settings(good), "us-east": place_settings(private)}
    results = await from_places(f"http://{HOST}:{live_site.port}/", views["eu-west"], views)

    assert verdict_of(results).cause is Cause.REGIONAL
    for name in ("reload", "firewall"):
        refused = coded(results[name], "place_address_refused")
        assert "10.0.0.5" in refused.message and "a private address" in refused.message
        assert refused.data["places"] == ["us-east"]
        assert coded(results[name], "regional").data["failing"] == ["us-east"]
    assert not [e for e in results["firewall"].details["edge"] if e["address"] == "10.0.0.5"]
    # The lookups themselves ran there, and say what us-east resolves.
    assert "us-east resolves 10.0.0.5" in coded(results["dns"], "dns_differs_by_place").message


async def test_failing_from_every_place_is_the_cause_as_today(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    results = await same_everywhere(live_site, zones("127.0.0.2"))

    assert verdict_of(results).cause is Cause.UNREACHABLE
    assert failing_places(results.values()) == ("eu-west", "us-east")
    refused = coded(results["firewall"], "tcp_refused")
    assert refused.cause is Cause.UNREACHABLE and refused.data["places"] == ["eu-west", "us-east"]
    assert refused.message.endswith("(from eu-west, us-east)")
    assert not [f for r in results.values() for f in r.findings if f.code == "regional"]
    assert results["reload"].summary.startswith("from eu-west, us-east: all 3 attempts failed")


async def test_working_everywhere_while_the_asker_fails_is_client_side(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    good = zones("127.0.0.1")
    reported = await same_everywhere(live_site, good, asker_reports=True)
    verdict = verdict_of(reported)
    assert verdict.cause is Cause.CLIENT_SIDE
    assert "It works from everywhere but where you are" in verdict.summary
    assert coded(reported["reload"], "client_side").data["working"] == ["eu-west", "us-east"]
    # Monitoring (nobody reports a failure): healthy, as from one place.
    monitored = await same_everywhere(live_site, good)
    assert verdict_of(monitored).cause is Cause.HEALTHY
    assert failing_places(monitored.values()) == ()


async def test_only_here_failing_is_client_side(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    """``diagnose --from`` probes from the terminal too, as place ``here``: when only that
    view fails, the trouble is on the asker's side."""
    good, moved = zones("127.0.0.1"), zones("127.0.0.2")
    url = f"http://{HOST}:{live_site.port}/"
    asker = replace(place_settings(good), vantages=("eu-west", "us-east", HERE))
    views = {"eu-west": place_settings(good), "us-east": place_settings(good)}
    views[HERE] = place_settings(moved)
    results = await from_places(url, asker, views)

    assert verdict_of(results).cause is Cause.CLIENT_SIDE
    here = coded(results["reload"], "client_side")
    assert "fails only from here" in here.message and here.weight is Weight.OBSERVED
    assert coded(results["firewall"], "tcp_refused").cause is None  # here's own: context
    assert (
        "here resolves 127.0.0.2, the other places 127.0.0.1"
        in coded(results["dns"], "dns_differs_by_place").message
    )


async def test_a_place_that_does_not_answer_is_named_and_the_others_decide(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    good = zones("127.0.0.1")
    url = f"http://{HOST}:{live_site.port}/"
    results = await from_places(url, place_settings(good), {"eu-west": place_settings(good)})

    assert verdict_of(results).cause is Cause.HEALTHY
    for name in PROBE_STEPS:
        gap = coded(results[name], "place_missing")
        assert gap.severity is Status.WARN and gap.cause is None
        assert gap.message == "no result from us-east: did not answer within 8 s"
    lines = table_lines(results["dns"].details)
    assert lines[-1] == "us-east · missing · did not answer within 8 s"


async def test_no_place_answering_leaves_the_verdict_to_the_other_steps(
    live_site: Upstream, zones: Callable[[str], str]
) -> None:
    good = zones("127.0.0.1")
    results = await from_places(f"http://{HOST}:{live_site.port}/", place_settings(good), {})
    assert all(r.status is Status.WARN for r in results.values())
    assert results["reload"].summary == "no place answered (eu-west, us-east)"
    assert verdict_of(results).cause is Cause.UNKNOWN


@pytest.mark.netns
async def test_a_drop_rule_against_one_place_is_regional_with_the_drop_seen(
    netns_http_server: NetnsListener, zones: Callable[[str], str]
) -> None:
    """us-east's resolver sends it to a host whose firewall drops the connection; eu-west
    reaches the site on loopback, on the same port."""
    lab = netns_http_server.lab
    port = netns_http_server.port
    with Upstream("ok", port=port), lab.firewall(port, "drop"):
        good, dropped = zones("127.0.0.1"), zones(lab.address)
        url = f"http://{HOST}:{port}/"
        views = {
            "eu-west": place_settings(good, lab.network),
            "us-east": place_settings(dropped, lab.network),
        }
        results = await from_places(url, place_settings(good, lab.network), views)

    assert verdict_of(results).cause is Cause.REGIONAL
    regional = coded(results["firewall"], "regional")
    assert regional.data["failing"] == ["us-east"] and regional.weight is Weight.OBSERVED
    assert lab.address in regional.message and "no answer within" in regional.message
    timeout = coded(results["firewall"], "tcp_timeout")
    assert timeout.data["cause_at_place"] == "firewall_drop" and timeout.cause is None
