"""bot.history_store's markers: kept per site in a state file, in Redis and in memory,
bounded by the history's retention (how many, how many days), and read by the keeper into a
failing verdict; the marker window is a setting."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from badgateway.bot.config import HistoryRetention
from badgateway.bot.history_store import FileHistory, HistoryKeeper, MemoryHistory, RedisHistory
from badgateway.bot.storage import key
from badgateway.checks.markers import Marker
from badgateway.checks.model import Cause, Diagnosis, Verdict
from tests.lab.fixtures_redis import RedisServer

RETENTION = HistoryRetention(keep=5, days=7)


def marker(n: int, *, day: int = 1, target: str = "shop") -> Marker:
    """The n-th marker, n minutes after noon."""
    return Marker(target, f"deployed shop v1.{n}", f"2026-12-{day:02d}T12:{n:02d}:00+00:00", "CI")


async def mark_twelve(store: FileHistory | MemoryHistory | RedisHistory) -> list[str]:
    """More markers than the five kept; what a bounded store keeps of them."""
    for n in range(12):
        await store.mark(marker(n))
    await store.mark(marker(3, target="blog"))
    history = await store.load("shop")
    assert [m.text for m in (await store.load("blog")).markers] == ["deployed shop v1.3"]
    return [m.text for m in history.markers]


KEPT = [f"deployed shop v1.{n}" for n in range(7, 12)]


async def test_a_state_file_keeps_a_bounded_list_of_markers(tmp_path: Path) -> None:
    store = FileHistory(tmp_path / "state.json", RETENTION)
    assert await mark_twelve(store) == KEPT
    again = FileHistory(tmp_path / "state.json", RETENTION)  # another run of the command
    assert [m.text for m in (await again.load("shop")).markers] == KEPT


async def test_memory_keeps_a_bounded_list_of_markers() -> None:
    assert await mark_twelve(MemoryHistory(RETENTION)) == KEPT


async def test_redis_keeps_a_bounded_list_of_markers(redis_server: RedisServer) -> None:
    redis: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await mark_twelve(RedisHistory(redis, RETENTION)) == KEPT
        assert await redis.llen(key("markers", "shop")) == 5  # type: ignore[misc]
        assert 0 < await redis.ttl(key("markers", "shop")) <= 7 * 86400
    finally:
        await redis.aclose()


async def test_markers_older_than_the_retention_days_are_dropped() -> None:
    store = MemoryHistory(HistoryRetention(keep=50, days=2))
    for day in (1, 2, 3, 4):
        await store.mark(marker(0, day=day))
    kept = [m.at[:10] for m in (await store.load("shop")).markers]
    assert kept == ["2026-12-02", "2026-12-03", "2026-12-04"]


def failing_at(started_at: str) -> Diagnosis:
    verdict = Verdict(Cause.UPSTREAM_REFUSED, "The app refuses connections.", [])
    return Diagnosis("shop", "http://shop.test/", verdict, [], 10, started_at, site="shop")


async def test_the_keeper_puts_a_recent_marker_into_a_failing_verdict() -> None:
    store = MemoryHistory(HistoryRetention(marker_window_hours=1))
    await store.mark(marker(0))  # 12:00
    keeper = HistoryKeeper(store)
    line = "Just before it started: deployed shop v1.0 by CI at 12:00:00 UTC, 30 min before"
    first = (await keeper.compare_and_keep(failing_at("2026-12-01T12:30:00+00:00"), "a")).verdict
    assert line in first.summary
    # An hour later the same failure goes on: it still started 30 min after the deploy.
    later = (await keeper.compare_and_keep(failing_at("2026-12-01T13:30:00+00:00"), "b")).verdict
    assert line in later.summary


async def test_a_marker_longer_before_than_the_window_is_only_context() -> None:
    store = MemoryHistory(HistoryRetention(marker_window_hours=1))
    await store.mark(marker(0))  # 12:00
    shown = await HistoryKeeper(store).compare_and_keep(failing_at("2026-12-01T13:30:00+00:00"))
    assert "Just before" not in shown.verdict.summary
    assert "Earlier: deployed shop v1.0 by CI at 12:00:00 UTC." in shown.verdict.baseline


def test_the_marker_window_setting_and_its_default() -> None:
    assert HistoryRetention.from_env({}).marker_window_hours == 2.0
    env = {"BADGATEWAY_MARKER_WINDOW_HOURS": "0.5"}
    assert HistoryRetention.from_env(env).marker_window_hours == 0.5
