"""The bot's state stores: the same behaviour in memory and in a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from badgateway.bot.state import (
    BotState,
    DiagnosisThread,
    Flight,
    MemoryStore,
    RedisStore,
    StateStore,
)
from badgateway.checks.model import Status, StepResult
from tests.lab.process import ManagedProcess, free_port, require_binary, wait_for_port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("redis-server")
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    server = ManagedProcess(argv, workdir / "redis.log")
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    made: StateStore
    if request.param == "memory":
        made = MemoryStore()
    else:
        made = RedisStore(request.getfixturevalue("redis_url"))
        await made.redis.flushdb()  # type: ignore[attr-defined]
    try:
        yield made
    finally:
        await made.close()


async def test_incidents_results_and_ledger(store: StateStore) -> None:
    state = BotState(store)
    incident = DiagnosisThread("C1", "1.1", "shop", "https://shop/", "U1", 100.0, current="d1")
    await state.save_thread(incident)
    assert [i.root_ts for i in await state.open_threads()] == ["1.1"]
    incident.resolved_by, incident.resolved_at = "U2", 200.0
    await state.save_thread(incident)
    assert await state.open_threads() == []
    loaded = await state.thread("C1", "1.1")
    assert loaded is not None and loaded.resolved_by == "U2"

    await state.record_result("d1", StepResult("dns", Status.WARN, "odd"))
    await state.record_result("d1", StepResult("dns", Status.OK, "fine now"))
    assert (await state.results("d1"))["dns"].summary == "fine now"
    await state.record_posted("d1", "C1", "1.1", "dns", "1.2")
    await state.record_posted("d1", "C2", "7.7", "dns", "7.8")  # the same run in another thread
    assert await state.posted("d1", "C1", "1.1") == {"dns": "1.2"}
    assert await state.posted("d1", "C2", "7.7") == {"dns": "7.8"}


async def test_a_result_recorded_then_its_sharers_read_in_one_call(store: StateStore) -> None:
    state = BotState(store)
    replaced, sharers = await state.record_result_then_sharers(
        "d1", StepResult("dns", Status.WARN, "odd")
    )
    assert (replaced, sharers) == (None, [])
    await state.add_sharer("d1", "C1", "1.1")
    replaced, sharers = await state.record_result_then_sharers(
        "d1", StepResult("dns", Status.OK, "fine now")
    )
    assert replaced is not None and replaced.summary == "odd"
    assert sharers == [("C1", "1.1")]
    assert (await state.results("d1"))["dns"].summary == "fine now"


async def test_a_flight_is_shared_while_it_runs_and_for_a_window_after(store: StateStore) -> None:
    state = BotState(store)
    url = "https://shop.example.com/"
    assert await state.flight(url) is None
    async with state.flight_lock(url):
        await state.save_flight(url, Flight("d1", started_at=time.time()))
    flight = await state.flight(url)
    assert flight is not None and flight.shareable(time.time(), window_s=30)
    await state.land_flight(url, "d0")  # not the site's current run: nothing changes
    assert (await state.flight(url)) == flight
    await state.land_flight(url, "d1")
    landed = await state.flight(url)
    assert landed is not None and landed.finished_at is not None
    assert landed.shareable(landed.finished_at + 29, window_s=30)
    assert not landed.shareable(landed.finished_at + 31, window_s=30)
    await state.add_sharer("d1", "C1", "1.1")
    await state.add_sharer("d1", "C2", "2.2")
    await state.add_sharer("d1", "C1", "1.1")  # once per thread
    assert sorted(await state.sharers("d1")) == [("C1", "1.1"), ("C2", "2.2")]


async def test_events_are_claimed_once(store: StateStore) -> None:
    state = BotState(store)
    assert await state.first_time("Ev1") is True
    assert await state.first_time("Ev1") is False
    assert await state.first_time("Ev2") is True


async def test_thread_lock_serialises(store: StateStore) -> None:
    state = BotState(store)
    inside: list[int] = []
    overlaps: list[int] = []

    async def worker(n: int) -> None:
        async with state.thread_lock("C1", "1.1"):
            if inside:
                overlaps.append(n)
            inside.append(n)
            await asyncio.sleep(0.02)
            inside.remove(n)

    await asyncio.gather(*(worker(n) for n in range(5)))
    assert overlaps == []
