"""The kinds of Slack thread the bot keeps, and one lookup for whose a thread is.

Two kinds today: a `/502` thread (bot.slack.diagnosis_threads, recorded as
bot.state.DiagnosisThread) and an alert's thread (bot.alerts.chat, recorded as
bot.alerts.store.Incident). Each is a ``ThreadKind``; ``Threads`` holds them all, and
``Threads.owner(channel, ts)`` is the one lookup the verdict's buttons and mentions go
through: the ``ThreadOwner`` it returns does ``take``, ``resolve``, ``rerun`` and ``escalate``
for its kind. ``/502 status`` is every kind's ``status_text``, in order; a `/502` for a site
that already has a thread of some kind goes there (``divert``). A feature may add command
words to `/502` (``CommandHandler``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from checks.context import ProbeContext

Reply = Callable[[str], Awaitable[None]]  # a private (ephemeral) message to the user
# A `/502 WORD …` command a feature adds (`/502 mute`): (the words, the user) -> private answer.
CommandHandler = Callable[[list[str], str], Awaitable[str]]


class ThreadOwner(Protocol):
    """What the buttons of one thread do; private answers go through ``reply``."""

    async def take(self, user: str, reply: Reply) -> None: ...

    async def resolve(self, user: str, reply: Reply) -> None: ...

    async def rerun(self, user: str, reply: Reply, step: str | None = None) -> None: ...

    async def escalate(self, user: str, reply: Reply) -> None: ...


class ThreadKind(Protocol):
    async def owner(self, channel: str, ts: str) -> ThreadOwner | None:
        """The owner of the thread rooted at ``ts`` when it is of this kind, else None."""
        ...

    async def status_text(self) -> str:
        """This kind's open threads, for `/502 status`."""
        ...

    async def divert(self, ctx: ProbeContext, *, user: str, reply: Reply) -> bool:
        """Take a `/502` into a thread of this kind already open for its site; True if taken."""
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

    async def divert(self, ctx: ProbeContext, *, user: str, reply: Reply) -> bool:
        for kind in self.kinds:
            if await kind.divert(ctx, user=user, reply=reply):
                return True
        return False
