"""Root-message updates as a budget: the latest state wins, and the final state always lands.

Slack allows ``chat.update`` about 50 times a minute for the whole workspace (Tier 3), while a
diagnosis shown in fifty threads changes fifty roots after every step. So an update is never
sent as it is asked for: ``RootUpdates.want(channel, ts, render)`` marks the root as stale and
one task per stale root renders its view when it may send (``render`` reads the state then, so
whatever happened meanwhile is in it) — at most once per ``per_root_s`` per root (longer
when many roots wait for mere progress: the budget is kept for final states and people's
buttons), no faster than the workspace's budget (the client's one ``chat.update`` budget,
which every other update takes its turns from too, shared through Redis by every process
when its posting pace is — bot.slack_client.update_budget), and never to show what it
already shows. A root asked for again
while it waits is still one update: nothing queues beyond one entry per root.

A 429 is honoured by the client (bot.slack_client: Retry-After, then retry); an update that
still fails — Slack refusing it, or Redis, which a render reads, out of reach — is tried again
later, a few times, and then given up with a log line (the thread's replies, which are posts,
carry everything the root shows). ``settle`` waits until every
root asked for so far has been sent: a process flushes its roots before it stops.

In queue mode the web process and every worker keep the same roots up to date, each with a
``RootUpdates`` of its own. Given the shared ``state``, one process at a time updates a root
(``BotState.root_turn``), and what the root shows is recorded there: a process that would
send the view another one just sent sends nothing (no second call for the Tier 3 budget, and
none repeating a call Slack refused before its Retry-After), and a process whose update Slack
refused keeps the root's turn until the Retry-After has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.slack_client import (
    rate_scale,
    retry_after,
    update,
    update_budget,
    workspace_budget,
)
from badgateway.bot.state import BotState

log = logging.getLogger(__name__)

Render = Callable[[], Awaitable[dict[str, Any] | None]]  # the view now; None: nothing to show

# At Slack's documented limits; follows the client's rate scale (bot.slack_client), as does
# the budget (PostPace.UPDATES_PER_MINUTE).
PER_ROOT_S = 2.0  # one root is updated at most this often
UPDATE_TRIES = 4
RETRY_DELAY_S = 2.0
IDLE_KEPT = 200  # roots remembered (for their spacing) before idle ones are dropped
ROOT_TURN_WAIT_S = 60.0  # another process's update of the root (its 429s waited out included)


@dataclass
class _Root:
    render: Render | None = None
    last_view: str = ""  # what the root shows now, as JSON: the same view is not sent again
    progress_only: bool = True  # every ask since the last update was mere progress
    wanted: int = 0  # how many times this root was asked for
    sent: int = 0  # ``wanted`` as it was when the last update began
    last_sent: float = 0.0
    task: asyncio.Task[None] | None = None
    asked: asyncio.Event = field(default_factory=asyncio.Event)  # wakes a waiting task


class RootUpdates:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        per_root_s: float | None = None,
        per_minute: float | None = None,
        burst: int = 5,
        state: BotState | None = None,
    ) -> None:
        """Unset, the spacing is Slack's (times the client's rate scale) and the budget the
        workspace's one for every chat.update; ``per_minute`` (``burst``) gives this one a
        budget of its own (a chat without Slack's limits). ``state``: shared with the other
        processes updating the same roots."""
        self.client = client
        self.state = state
        scale = rate_scale(client)
        self.per_root_s = PER_ROOT_S / scale if per_root_s is None else per_root_s
        if per_minute is None:
            self.budget = update_budget(client)
        else:
            self.budget = workspace_budget(client, "updates", per_minute, burst)
        self._roots: dict[tuple[str, str], _Root] = {}
        self.sent = 0  # chat.update calls made (for the benchmark)

    @classmethod
    def unpaced(cls, client: AsyncWebClient) -> RootUpdates:
        """For a chat without Slack's limits (the terminal shell): still latest-wins."""
        return cls(client, per_root_s=0.0, per_minute=60_000.0, burst=1000)

    def posted(self, channel: str, ts: str, view: dict[str, Any]) -> None:
        """A root was just posted showing ``view``: its first update waits its spacing."""
        root = self._root(channel, ts)
        root.last_sent, root.last_view = time.monotonic(), _fingerprint(view)

    def want(self, channel: str, ts: str, render: Render, *, progress: bool = False) -> None:
        """Show ``render``'s view on the root soon (coalesced with every other ask).

        ``progress``: a step of a running diagnosis, which waits its turn among the other
        roots; anything else (the verdict, a person's button) goes out after ``per_root_s``.
        """
        root = self._root(channel, ts)
        root.render = render
        root.progress_only = root.progress_only and progress
        root.asked.set()  # a waiting root may now be due sooner (no longer mere progress)
        root.wanted += 1
        if root.task is None or root.task.done():
            root.task = asyncio.create_task(self._keep_up(channel, ts, root))

    async def settle(self, timeout_s: float | None = None) -> None:
        """Wait until every root asked for so far is shown (or ``timeout_s`` has passed)."""
        tasks = [r.task for r in self._roots.values() if r.task is not None and not r.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def close(self) -> None:
        for root in self._roots.values():
            if root.task is not None:
                root.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await root.task

    def _spacing(self) -> float:
        """How long a root waits between progress updates: ``per_root_s``, or longer when
        many roots are waiting, so that the budget goes to final states rather than to some
        roots' every step."""
        # Every root seen lately counts (one just posted will want its final state soon).
        return max(self.per_root_s, len(self._roots) / self.budget.rate)

    def _root(self, channel: str, ts: str) -> _Root:
        root = self._roots.get((channel, ts))
        if root is None:
            self._forget_idle()
            root = self._roots[(channel, ts)] = _Root()
        return root

    def _forget_idle(self) -> None:
        """Drop roots that are up to date and past their spacing: one entry per live root."""
        if len(self._roots) < IDLE_KEPT:
            return  # few: kept (they count towards the spacing of progress for a while)
        now = time.monotonic()
        for where, root in list(self._roots.items()):
            idle = root.task is None or root.task.done()
            if idle and now - root.last_sent > self.per_root_s:
                del self._roots[where]

    async def _keep_up(self, channel: str, ts: str, root: _Root) -> None:
        tries = 0
        while root.sent < root.wanted:
            spacing = self._spacing() if root.progress_only else self.per_root_s
            wait = root.last_sent + spacing - time.monotonic()
            if wait > 0:
                root.asked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(root.asked.wait(), wait)
                continue  # due now, or asked again: the spacing is judged again
            asked = root.wanted
            root.progress_only = True  # what is asked from now on is judged again
            try:
                await self._send(channel, ts, root)
            # A RedisError too: else the root's task ends with it, the root is not shown
            # until asked again, and close() raises it.
            except (TimeoutError, SlackApiError, aiohttp.ClientError, RedisError) as exc:
                tries += 1
                root.last_sent = time.monotonic()
                if tries < UPDATE_TRIES:
                    log.warning("updating root %s/%s failed (%s); later", channel, ts, exc)
                    await asyncio.sleep(RETRY_DELAY_S * tries)
                    continue
                log.warning("updating root %s/%s failed %d times; gave up", channel, ts, tries)
            tries = 0
            root.sent = asked

    async def _send(self, channel: str, ts: str, root: _Root) -> None:
        """Update the root if its view changed, when the budget allows (rendered again then:
        whatever happened while it waited is shown too)."""
        if root.render is None or (view := await root.render()) is None:
            return
        if _fingerprint(view) == root.last_view:
            return
        if self.state is None:
            await self._update(channel, ts, root, view)
            return
        async with self.state.root_turn(channel, ts, ROOT_TURN_WAIT_S):
            view = await root.render() or view  # another process may have changed it meanwhile
            if _fingerprint(view) == await self.state.root_shows(channel, ts):
                root.last_view = _fingerprint(view)  # shown by another process already
                return
            shown = await self._update(channel, ts, root, view)
            await self.state.record_root_shows(channel, ts, shown)

    async def _update(self, channel: str, ts: str, root: _Root, view: dict[str, Any]) -> str:
        """Send the update (rendered again once the budget allows); what it shows, as a
        fingerprint. A refused update waits out its Retry-After before it fails, so that no
        process repeats the call sooner (the root's turn is held meanwhile)."""
        await self.budget.take()
        view = (await root.render() if root.render is not None else None) or view
        self.sent += 1
        root.last_sent = time.monotonic()
        try:
            await update(self.client, channel=channel, ts=ts, message=view, paced=True)
        except SlackApiError as exc:
            wait_s = retry_after(exc)
            if wait_s is not None:
                await asyncio.sleep(wait_s)
            raise
        root.last_view = _fingerprint(view)
        return root.last_view


def _fingerprint(view: dict[str, Any]) -> str:
    text = json.dumps(view, sort_keys=True, default=str)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
