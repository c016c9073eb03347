"""bot.history_store: each target's history kept bounded (in a state file, in Redis, in
memory), a redelivered snapshot kept once, a corrupt file one warning, a store that is down
costing the comparison and never the verdict."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from badgateway.bot.config import ConfigError, HistoryRetention
from badgateway.bot.history_store import FileHistory, HistoryKeeper, MemoryHistory, RedisHistory
from badgateway.bot.storage import key
from badgateway.checks.baseline import Snapshot
from badgateway.checks.model import Cause, Diagnosis, Verdict
from tests.lab.fixtures_redis import RedisServer

RETENTION = HistoryRetention(keep=5, days=7)


def snapshot(n: int, *, healthy: bool = False, target: str = "shop") -> Snapshot:
    """The n-th check, n minutes after the first."""
    return Snapshot(
        target=target,
        taken_at=f"2026-12-01T{12 + n // 60:02d}:{n % 60:02d}:00+00:00",
        healthy=healthy,
        cause="healthy" if healthy else "upstream_refused",
        facts={"upstream@127.0.0.1:9000": "open" if healthy else "refused"},
    )


async def keep_twelve(store: FileHistory | MemoryHistory | RedisHistory) -> None:
    """One healthy check, then eleven failing ones: more than the five kept."""
    await store.keep(snapshot(0, healthy=True))
    for n in range(1, 12):
        await store.keep(snapshot(n))
    await store.keep(snapshot(11))  # delivered twice: kept once


async def assert_bounded(store: FileHistory | MemoryHistory | RedisHistory) -> None:
    history = await store.load("shop")
    assert [s.taken_at for s in history.recent] == [snapshot(n).taken_at for n in range(7, 12)]
    assert history.last_good == snapshot(0, healthy=True)  # kept, however many failures since
    assert (await store.load("blog")).last_good is None


async def test_a_state_file_keeps_a_bounded_history(tmp_path: Path) -> None:
    store = FileHistory(tmp_path / "state" / "state.json", RETENTION)
    await keep_twelve(store)
    await assert_bounded(store)
    document = json.loads(store.path.read_text())
    assert document["version"] == 1 and len(document["targets"]["shop"]["recent"]) == 5
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["state.json"]  # no temp file


async def test_memory_keeps_a_bounded_history() -> None:
    store = MemoryHistory(RETENTION)
    await keep_twelve(store)
    await assert_bounded(store)


async def test_redis_keeps_a_bounded_history(redis_server: RedisServer) -> None:
    redis: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    store = RedisHistory(redis, RETENTION)
    try:
        await keep_twelve(store)
        await assert_bounded(store)
        assert await redis.llen(key("history", "shop")) == 5  # type: ignore[misc]
        assert 0 < await redis.ttl(key("history", "shop")) <= 7 * 86400
        assert await redis.ttl(key("baseline", "shop")) == -1  # a site's: kept however old
        await store.keep(snapshot(0, healthy=True, target="http://127.0.0.1:9/"))
        assert 0 < await redis.ttl(key("baseline", "http://127.0.0.1:9/")) <= 7 * 86400
    finally:
        await store.aclose()


async def test_snapshots_older_than_the_retention_days_are_dropped() -> None:
    store = MemoryHistory(HistoryRetention(keep=50, days=1))
    old = snapshot(0, healthy=True)
    await store.keep(old)
    await store.keep(replace(snapshot(1), taken_at="2026-12-03T12:00:00+00:00"))
    history = await store.load("shop")
    assert len(history.recent) == 1 and history.last_good == old


async def test_a_corrupt_state_file_is_one_warning_and_then_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"\x00\xff not a state file")
    warnings: list[str] = []
    store = FileHistory(path, RETENTION, warn=warnings.append)
    assert (await store.load("shop")).last_good is None
    await store.keep(snapshot(0, healthy=True))
    assert len(warnings) == 1 and "cannot be read" in warnings[0]
    assert (await FileHistory(path, RETENTION).load("shop")).last_good == snapshot(0, healthy=True)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BADGATEWAY_HISTORY_KEEP": "0"}, "BADGATEWAY_HISTORY_KEEP"),
        ({"BADGATEWAY_HISTORY_KEEP": "many"}, "BADGATEWAY_HISTORY_KEEP"),
        ({"BADGATEWAY_HISTORY_DAYS": "-1"}, "BADGATEWAY_HISTORY_DAYS"),
    ],
)
def test_a_malformed_retention_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        HistoryRetention.from_env(env)


def test_retention_settings_and_their_defaults() -> None:
    assert HistoryRetention.from_env({}) == HistoryRetention(keep=50, days=7.0)
    env = {"BADGATEWAY_HISTORY_KEEP": "200", "BADGATEWAY_HISTORY_DAYS": "1.5"}
    assert HistoryRetention.from_env(env) == HistoryRetention(keep=200, days=1.5)


async def test_with_redis_down_the_verdict_goes_on_uncompared(redis_server: RedisServer) -> None:
    store = RedisHistory(Redis.from_url(redis_server.url, decode_responses=True), RETENTION)
    redis_server.stop()
    failing = Diagnosis(
        "shop",
        "http://shop.test/",
        Verdict(Cause.UNREACHABLE, "Nothing answers.", ["Start it."]),
        [],
        10,
        "2026-12-01T12:00:00+00:00",
        site="shop",
    )
    try:
        assert await HistoryKeeper(store).compare_and_keep(failing) is failing
    finally:
        await store.aclose()


async def test_two_runs_alike_are_two_checks_and_one_run_delivered_twice_is_one() -> None:
    store = MemoryHistory(RETENTION)
    first, second = replace(snapshot(1), run="run-1"), replace(snapshot(1), run="run-2")
    for kept_snapshot in (first, second, first):
        await store.keep(kept_snapshot)
    assert [s.run for s in (await store.load("shop")).recent] == ["run-1", "run-2"]
