"""The kinds of Slack thread the bot keeps, and one lookup for whose a thread is.

Two kinds today: a `/502` thread (bot.slack.diagnosis_threads, recorded as
bot.state.DiagnosisThread) and an alert's thread (bot.alerts.chat, recorded as
bot.alerts.store.Incident). Each is a ``ThreadKind``; ``Threads`` holds them all, and
``Threads.owner(channel, ts)`` is the one lookup the verdict's buttons and mentions go
through: the ``ThreadOwner`` it returns does ``take``, ``resolve``, ``rerun`` and ``escalate``
for its kind. ``/502 status`` is every kind's ``status_text``, in order. A feature may add
command words to `/502` (``CommandHandler``).

A `/502` is always answered where it was typed. When its site already has a thread of another
kind (an open alert), that thread is found through ``ThreadLinks.open_thread``: the `/502`
root links to it, and it gets a short note — never a copy of the diagnosis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from badgateway.checks.context import ProbeContext

Reply = Callable[[str], Awaitable[None]]  # a private (ephemeral) message to the user
# A `/502 WORD …` command a feature adds (`/502 mute`): (the words, the user) -> private answer,
# a text or a Block Kit message ({"text": fallback, "blocks": [...]}).
Answer = str | dict[str, Any]
CommandHandler = Callable[[list[str], str], Awaitable[Answer]]


class ThreadOwner(Protocol):
    """What the buttons of one thread do; private answers go through ``reply``."""

    async def take(self, user: str, reply: Reply) -> None: ...

    async def resolve(self, user: str, reply: Reply) -> None: ...

    async def rerun(
        self, user: str, reply: Reply, step: str | None = None, trigger: str = "rerun"
    ) -> None: ...

    async def escalate(self, user: str, reply: Reply) -> None: ...


class ThreadKind(Protocol):
    async def owner(self, channel: str, ts: str) -> ThreadOwner | None:
        """The owner of the thread rooted at ``ts`` when it is of this kind, else None."""
        ...

    async def status_text(self) -> str:
        """This kind's open threads, for `/502 status`."""
        ...


@dataclass(frozen=True)
class ThreadLink:
    """A thread already open for a site (an alert's), that a `/502` root links to."""

    channel: str
    ts: str


class ThreadLinks(Protocol):
    async def open_thread(self, ctx: ProbeContext) -> ThreadLink | None:
        """The thread of this kind open for the target's site, if there is one."""
        ...


class Threads:
    """Every kind of thread, asked in the order given."""

    def __init__(self, kinds: Sequence[ThreadKind]) -> None:
        self.kinds = tuple(kinds)

    async def owner(self, channel: str, ts: str) -> ThreadOwner | None:
        for kind in self.kinds:
            found = await kind.owner(channel, ts)
            if found is not None:
                return found
        return None

    async def status_text(self) -> str:
        return "\n\n".join([await kind.status_text() for kind in self.kinds])


async def open_thread(links: Sequence[ThreadLinks], ctx: ProbeContext) -> ThreadLink | None:
    """The first open thread any of ``links`` knows for the target's site."""
    for source in links:
        found = await source.open_thread(ctx)
        if found is not None:
            return found
    return None
