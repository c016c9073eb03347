"""bot.threads: one owner lookup over every kind of thread, status and divert in order."""

from __future__ import annotations

from typing import Any

from bot.threads import Reply, Threads


class _Kind:
    def __init__(self, name: str, roots: set[str], diverts: bool = False) -> None:
        self.name, self.roots, self.diverts = name, roots, diverts

    async def owner(self, channel: str, ts: str) -> Any:
        return (self.name, ts) if ts in self.roots else None

    async def status_text(self) -> str:
        return f"{self.name}: fine"

    async def divert(self, ctx: Any, *, user: str, reply: Reply) -> bool:
        return self.diverts


async def _nothing(_: str) -> None:
    return None


async def test_owner_asks_each_kind_in_turn() -> None:
    threads = Threads([_Kind("diagnoses", {"1.1"}), _Kind("alerts", {"2.2"})])
    assert await threads.owner("C1", "1.1") == ("diagnoses", "1.1")
    assert await threads.owner("C1", "2.2") == ("alerts", "2.2")
    assert await threads.owner("C1", "3.3") is None


async def test_status_joins_every_kind_and_divert_takes_the_first_yes() -> None:
    threads = Threads([_Kind("diagnoses", set()), _Kind("alerts", set(), diverts=True)])
    assert await threads.status_text() == "diagnoses: fine\n\nalerts: fine"
    assert await threads.divert(None, user="U1", reply=_nothing) is True
    assert (
        await Threads([_Kind("diagnoses", set())]).divert(None, user="U1", reply=_nothing) is False
    )
