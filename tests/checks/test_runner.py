"""The runner's guarantees: a crashing or hanging step is that step's error, not the run's;
results come back in runbook order whatever order they finish in."""

import asyncio
import ipaddress
import time

import pytest

from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import TargetRefused
from badgateway.checks.model import Status, StepResult
from badgateway.checks.runner import prepare, run_steps
from badgateway.checks.settings import Settings
from badgateway.checks.steps import Step, all_steps
from badgateway.checks.target import parse_target
from tests.lab.fixtures_dns import DnsLab

LOOPBACK = Settings(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), diagnosis_budget_s=1.0)


async def crashing(ctx: ProbeContext) -> StepResult:
    raise RuntimeError("boom")


async def hanging(ctx: ProbeContext) -> StepResult:
    await asyncio.sleep(60)
    raise AssertionError("unreachable")


async def quick(ctx: ProbeContext) -> StepResult:
    return StepResult.from_findings("quick", "fine", [])


async def test_crash_and_hang_are_contained() -> None:
    ctx = ProbeContext(parse_target("http://127.0.0.1:9/", LOOPBACK), LOOPBACK)
    steps = [
        Step("hang", 1, "Hang", hanging),
        Step("crash", 2, "Crash", crashing),
        Step("quick", 3, "Quick", quick),
    ]
    seen: list[str] = []
    started = time.monotonic()
    results = await run_steps(ctx, steps, on_step=lambda r: seen.append(r.name))
    assert time.monotonic() - started < 5
    assert [r.name for r in results] == ["hang", "crash", "quick"]  # runbook order
    assert seen[-1] == "hang"  # reported as it finished: last
    assert results[0].status is Status.ERROR and "budget" in results[0].summary
    assert results[1].status is Status.ERROR and "boom" in results[1].summary
    assert results[2].status is Status.OK


async def test_unresolvable_name_is_not_refused_but_explained(dns_lab: DnsLab) -> None:
    settings = Settings(resolvers=(dns_lab.primary,), allow_networks=LOOPBACK.allow_networks)
    ctx = await prepare("http://missing.test/", settings)
    assert ctx.addresses == () and ctx.resolve_kind == "nxdomain"


async def test_a_name_that_resolves_to_a_private_address_is_refused(dns_lab: DnsLab) -> None:
    settings = Settings(resolvers=(dns_lab.primary,), allow_networks=LOOPBACK.allow_networks)
    with pytest.raises(TargetRefused, match="private"):
        await prepare("http://mixed.test/", settings)


def test_the_runbook_order() -> None:
    names = [s.name for s in all_steps()]
    expected = [n for n in ["reload", "dns", "firewall", "logs", "host"] if n in names]
    assert names == expected
