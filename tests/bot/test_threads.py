"""bot.threads: one owner lookup over every kind of thread, status in order, and the first
open thread any source links a `/502` to."""

from __future__ import annotations

from dataclasses import dataclass, field

from badgateway.bot.threads import Reply, ThreadLink, ThreadOwner, Threads, open_thread
from badgateway.checks.context import ProbeContext
from badgateway.checks.settings import Settings
from badgateway.checks.target import parse_target


@dataclass
class _Owner:
    kind: str
    ts: str
    pressed: list[str] = field(default_factory=list)

    async def take(self, user: str, reply: Reply) -> None:
        self.pressed.append(f"take {user}")

    async def resolve(self, user: str, reply: Reply) -> None:
        self.pressed.append(f"resolve {user}")

    async def rerun(
        self, user: str, reply: Reply, step: str | None = None, trigger: str = "rerun"
    ) -> None:
        self.pressed.append(f"rerun {user} {step}")

    async def escalate(self, user: str, reply: Reply) -> None:
        self.pressed.append(f"escalate {user}")


class _Kind:
    def __init__(self, name: str, roots: set[str], open_root: str = "") -> None:
        self.name, self.roots, self.open_root = name, roots, open_root

    async def owner(self, channel: str, ts: str) -> ThreadOwner | None:
        return _Owner(self.name, ts) if ts in self.roots else None

    async def status_text(self) -> str:
        return f"{self.name}: fine"

    async def open_thread(self, ctx: ProbeContext) -> ThreadLink | None:
        return ThreadLink("C9", self.open_root) if self.open_root else None


def _kind_of(owner: ThreadOwner | None) -> tuple[str, str] | None:
    return (owner.kind, owner.ts) if isinstance(owner, _Owner) else None


async def test_owner_asks_each_kind_in_turn() -> None:
    threads = Threads([_Kind("diagnoses", {"1.1"}), _Kind("alerts", {"2.2"})])
    assert _kind_of(await threads.owner("C1", "1.1")) == ("diagnoses", "1.1")
    assert _kind_of(await threads.owner("C1", "2.2")) == ("alerts", "2.2")
    assert await threads.owner("C1", "3.3") is None


async def test_status_joins_every_kind_and_the_first_open_thread_is_linked() -> None:
    settings = Settings()
    ctx = ProbeContext(parse_target("shop.example", settings), settings)
    alerts, storms = _Kind("alerts", set(), open_root="5.5"), _Kind("storms", set(), "6.6")
    threads = Threads([_Kind("diagnoses", set()), alerts])
    assert await threads.status_text() == "diagnoses: fine\n\nalerts: fine"
    assert await open_thread([_Kind("diagnoses", set()), alerts, storms], ctx) == ThreadLink(
        "C9", "5.5"
    )
    assert await open_thread([_Kind("diagnoses", set())], ctx) is None
