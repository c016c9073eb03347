"""SlackSink: a diagnosis' results in every thread that shows it — a reply per step in runbook
order, the root message kept up to date, the verdict with its buttons last.

One diagnosis may be shared by many threads (bot.state: its sharers; everyone who asked about
the site while it ran). Each thread gets every step reply and the verdict; posts to different
threads go out side by side, since each channel has its own posting limit.

Steps finish in any order (they run concurrently, maybe on several workers); a finished step
waits until every earlier one is posted. Every posted message's ts is kept per (diagnosis,
thread, step) in the state store, so a result delivered again updates its message instead of
posting a second one. The thread's lock serialises all of this across processes. A thread that
joins late is brought up to date by ``show`` (what is in so far); the sink records each
result before it reads the sharers, and a joiner records itself before it reads the results,
so between the two every result reaches every thread. Root messages are updated through
``RootUpdates`` (coalesced: a budget, not one update per step).

A result shared by many threads cannot reach them all within one queue job's timeout (posts
are paced to Slack's limits: about 280 a minute for the workspace, one a second per channel).
Given ``hand_out`` (the worker's, bot.queue.delivery), a delivery begins posts for
``hand_out_after_s`` only (a post begun may wait out Slack's 429 for as long again, else it is
given up, not posted); the threads not yet up to date are handed to a job of their own, which
does the same. Every job is bounded, and each thread resumes where it stopped: what was posted
is recorded per part, so each part is posted once, in runbook order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import LockError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.slack.root_updates import RootUpdates
from badgateway.bot.slack_client import (
    PostRefused,
    find_posted,
    post_once,
    post_pace,
    update,
    update_budget,
)
from badgateway.bot.state import VERDICT_FIELD, BotState, DiagnosisThread
from badgateway.checks.model import Diagnosis, StepResult

log = logging.getLogger(__name__)

# Marks a part whose post was begun; see SlackSink._post_part.
INTENT_SUFFIX = ":posting"
# An intent whose post Slack refused (429): nothing to look up. "refused:<time.time()>" names
# when its Retry-After ends: the job that takes the thread over (maybe in another process,
# whose pace knows nothing of that 429) does not post it again sooner.
NOT_POSTED = "refused"
THREADS_AT_ONCE = 16  # threads posted to side by side (each channel has its own 1/s limit)
SETTLE_S = 120.0  # how long a closing sink waits for its roots' last updates

LOCK_WAIT_S = 120.0  # how long an unbounded delivery waits for a thread another one posts to


class DeliveryCut(Exception):
    """A bounded delivery's time ran out before this thread was up to date (nothing begun is
    left half-done); the thread goes to the job the rest is handed to."""


# Hands the rest of a delivery (see ``SlackSink.deliver``'s payload) to a job of its own.
HandOut = Callable[[dict[str, Any]], Awaitable[None]]


def _with_origin(
    request: DiagnosisRequest, sharers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Every thread showing the request's run: the one named in its origin, if any (a
    flight's threads are sharers), and its sharers."""
    channel, root_ts = request.origin.get("channel"), request.origin.get("root_ts")
    origin = [(str(channel), str(root_ts))] if channel and root_ts else []
    return list(dict.fromkeys([*origin, *sharers]))


async def root_view(state: BotState, thread: DiagnosisThread) -> dict[str, Any]:
    """The root message of a `/502` thread as it stands: its current diagnosis' checklist."""
    request_doc = await state.request_doc(thread.current)
    steps: list[str] = list(request_doc.get("steps") or [])
    results: dict[str, StepResult] = {}
    for kept in request_doc.get("previous") or []:
        results[kept["name"]] = StepResult.from_dict(kept)
        steps.append(kept["name"])
    results.update(await state.results(thread.current))
    doc = await state.diagnosis_doc(thread.current)
    verdict = Diagnosis.from_dict(doc).verdict if doc else None
    return blocks.root_message(
        link=thread.link,
        target=thread.target,
        url=thread.url,
        requester=thread.requester,
        steps=steps,
        results=results,
        verdict=verdict,
        taken_by=thread.taken_by,
        resolved_by=thread.resolved_by,
        resolved_at=thread.resolved_at,
        rerun_count=max(0, thread.runs - 1),
    )


class SlackSink:
    """A ResultSink that posts into every thread showing the request's diagnosis: the one in
    its origin (channel, root_ts) and its sharers."""

    def __init__(
        self,
        client: AsyncWebClient,
        state: BotState,
        roots: RootUpdates | None = None,
        *,
        hand_out: HandOut | None = None,
        hand_out_after_s: float = 0.0,
    ) -> None:
        self.client = client
        self.state = state
        self.roots = roots or RootUpdates(client, state=state)
        self.hand_out = hand_out
        self.hand_out_after_s = hand_out_after_s
        self._at_once = asyncio.Semaphore(THREADS_AT_ONCE)

    async def aclose(self) -> None:
        await self.roots.settle(SETTLE_S)  # the final state of every root lands first
        await self.roots.close()
        await self.state.store.close()

    def refresh_root(self, thread: DiagnosisThread, *, progress: bool = False) -> None:
        """Show the thread's state on its root soon (coalesced; see RootUpdates).
        ``progress``: only a step of a running diagnosis changed."""
        channel, root_ts = thread.channel, thread.root_ts

        async def render() -> dict[str, Any] | None:
            current = await self.state.thread(channel, root_ts)
            return None if current is None else await root_view(self.state, current)

        self.roots.want(channel, root_ts, render, progress=progress)

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        # One round trip: a storm's site is watched by no thread, and takes 1,000 of these.
        before, sharers = await self.state.record_result_then_sharers(request.id, result)
        # Delivered again with different content (a re-run job): its replies are updated.
        changed = before is not None and before.to_dict() != result.to_dict()
        await self._each_thread(
            request,
            result.name,
            _with_origin(request, sharers),
            redelivered=result.name if changed else None,
            diagnosis=None,
        )

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        known = await self.state.results(request.id)
        for result in diagnosis.steps:
            # A result never reported step by step (lost on the way) still gets its reply.
            if result.name in request.steps and result.name not in known:
                await self.state.record_result(request.id, result)
        # Recorded before the sharers are read: a thread joining now catches up by itself.
        await self.state.record_diagnosis(request.id, diagnosis.to_dict())
        # The roots show the verdict as soon as it is known: under Tier 3 their updates take
        # about as long as the threads' posts, so they start now rather than after them.
        threads = _with_origin(request, await self.state.sharers(request.id))
        for channel, root_ts in threads:
            thread = await self.state.thread(channel, root_ts)
            if thread is not None and thread.current == request.id:
                self.refresh_root(thread)
        await self._each_thread(
            request, VERDICT_FIELD, threads, redelivered=None, diagnosis=diagnosis
        )
        flight = request.origin.get("flight")
        if flight:
            await self.state.land_flight(str(flight), request.id)

    async def _each_thread(
        self,
        request: DiagnosisRequest,
        part: str,
        threads: list[tuple[str, str]],
        *,
        redelivered: str | None,
        diagnosis: Diagnosis | None,
    ) -> None:
        """Show ``part`` (a step's name, or VERDICT_FIELD) in each of the request's threads,
        read after the part was recorded."""
        if not threads:
            return  # a storm's site that no `/502` shares: its results go to the table only
        delivery = {
            "diagnosis_id": request.id,
            "steps": request.steps,
            "part": part,
            "redelivered": redelivered,
            "threads": [list(thread) for thread in threads],
            "round": 0,
        }
        await self._deliver(delivery, diagnosis)

    async def deliver(self, delivery: dict[str, Any]) -> None:
        """A delivery handed out by another job (see the module's docstring): bring each of
        its ``threads`` up to date with its diagnosis, for ``hand_out_after_s`` at most."""
        await self._deliver(delivery, None)

    async def _deliver(self, delivery: dict[str, Any], diagnosis: Diagnosis | None) -> None:
        threads = [(str(channel), str(root_ts)) for channel, root_ts in delivery["threads"]]
        diagnosis_id, steps = str(delivery["diagnosis_id"]), list(delivery["steps"])
        redelivered = delivery.get("redelivered")
        bounded = self.hand_out is not None and self.hand_out_after_s > 0
        deadline = time.monotonic() + self.hand_out_after_s if bounded else None

        async def one(channel: str, root_ts: str) -> bool:
            """True once the thread is up to date; False: its time ran out first."""
            # The slots are shared by every delivery in this process: waiting for one counts.
            slot = self._at_once.acquire()
            try:
                await asyncio.wait_for(
                    slot, None if deadline is None else deadline - time.monotonic()
                )
            except TimeoutError:
                return False
            try:
                await self.show(
                    diagnosis_id,
                    steps,
                    channel,
                    root_ts,
                    redelivered=redelivered,
                    diagnosis=diagnosis,
                    deadline=deadline,
                )
            except DeliveryCut:
                return False
            finally:
                self._at_once.release()
            return True

        outcomes = await asyncio.gather(
            *(one(channel, root_ts) for channel, root_ts in threads), return_exceptions=True
        )
        rest = [thread for thread, done in zip(threads, outcomes, strict=True) if done is False]
        if rest and self.hand_out is not None:
            log.info("%s: %d threads to go, handed to a job of their own", diagnosis_id, len(rest))
            await self.hand_out(
                {**delivery, "threads": [list(t) for t in rest], "round": delivery["round"] + 1}
            )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise failed[0]  # the carrier tries again; what was posted is not posted twice

    async def show(
        self,
        diagnosis_id: str,
        steps: list[str],
        channel: str,
        root_ts: str,
        *,
        redelivered: str | None = None,
        diagnosis: Diagnosis | None = None,
        deadline: float | None = None,
    ) -> None:
        """Bring one thread up to date with a diagnosis: every step reply that can go out in
        order, the verdict once it is over, and (coalesced) the root. Past ``deadline``
        (time.monotonic()) no post is begun: DeliveryCut, with what was posted recorded."""
        update_paced = redelivered is not None and await self._update_turn(
            diagnosis_id, channel, root_ts, redelivered, deadline
        )
        async with self._thread_turn(channel, root_ts, deadline):
            if diagnosis is None:
                doc = await self.state.diagnosis_doc(diagnosis_id)
                diagnosis = Diagnosis.from_dict(doc) if doc else None
            final = diagnosis is not None
            await self._post_ready(
                diagnosis_id,
                steps,
                channel,
                root_ts,
                redelivered=redelivered,
                update_paced=update_paced,
                final=final,
                deadline=deadline,
            )
            thread = await self.state.thread(channel, root_ts)
            if diagnosis is not None:
                resolved = bool(thread and thread.resolved_at)
                message = blocks.verdict_message(diagnosis, root_ts, resolved=resolved)
                posted = await self.state.posted(diagnosis_id, channel, root_ts)
                if VERDICT_FIELD not in posted:
                    await self._post_part(
                        diagnosis_id, channel, root_ts, VERDICT_FIELD, message, posted, deadline
                    )
                cause = diagnosis.verdict.cause.value
                if thread is not None and thread.current == diagnosis_id and thread.cause != cause:
                    thread.cause = cause
                    await self.state.save_thread(thread)
        if thread is not None and thread.current == diagnosis_id:
            # An older run finishing late leaves the root alone.
            self.refresh_root(thread, progress=diagnosis is None)

    @contextlib.asynccontextmanager
    async def _thread_turn(
        self, channel: str, root_ts: str, deadline: float | None
    ) -> AsyncIterator[None]:
        """The thread's lock, waited for until ``deadline`` at most (then DeliveryCut)."""
        wait_s = LOCK_WAIT_S if deadline is None else deadline - time.monotonic()
        if wait_s <= 0:
            raise DeliveryCut
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(
                    self.state.thread_lock(channel, root_ts, wait_s=wait_s)
                )
            except LockError:
                if deadline is None:
                    raise
                raise DeliveryCut from None  # another job is posting there; the next goes on
            yield

    async def _update_turn(
        self,
        diagnosis_id: str,
        channel: str,
        root_ts: str,
        redelivered: str,
        deadline: float | None,
    ) -> bool:
        """The turn of a redelivered step's update (chat.update, the workspace's one Tier 3
        budget), taken before the thread's lock as bot.slack.waiting takes its own: waiting
        for it under the lock would hold up every other post to the thread meanwhile. False
        when the step's reply is not posted yet (it is posted, not updated, under the lock;
        one posted meanwhile by another job is updated there, taking its turn then). Past
        ``deadline``: DeliveryCut (the turn is given back; the next job takes it again)."""
        if redelivered not in await self.state.posted(diagnosis_id, channel, root_ts):
            return False
        turn = update_budget(self.client).take()
        try:
            await asyncio.wait_for(
                turn, None if deadline is None else max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise DeliveryCut from None
        return True

    async def _post_ready(
        self,
        diagnosis_id: str,
        steps: list[str],
        channel: str,
        root_ts: str,
        *,
        redelivered: str | None,
        update_paced: bool = False,
        final: bool,
        deadline: float | None,
    ) -> None:
        """Post every result whose earlier steps are all posted; update a redelivered one
        (``update_paced``: its turn is taken)."""
        results = await self.state.results(diagnosis_id)
        posted = await self.state.posted(diagnosis_id, channel, root_ts)
        for name in blocks.ordered_names(steps):
            result = results.get(name)
            if result is None:
                if final:
                    continue  # the diagnosis is over: nothing more will come for this step
                break  # hold later steps until this one is in
            message = blocks.step_message(result)
            if name in posted:
                if name == redelivered:
                    await update(
                        self.client,
                        channel=channel,
                        ts=posted[name],
                        message=message,
                        paced=update_paced,
                    )
                continue
            await self._post_part(diagnosis_id, channel, root_ts, name, message, posted, deadline)

    async def _post_part(
        self,
        diagnosis_id: str,
        channel: str,
        root_ts: str,
        part: str,
        message: dict[str, Any],
        posted: dict[str, str],
        deadline: float | None = None,
    ) -> None:
        """Post one part of the thread (a step or the verdict) and record its ts.

        The intent is recorded first: a worker killed between Slack's answer and recording
        the ts leaves the intent behind, and the next try looks the message up (by the key in
        its metadata) instead of posting it again. With a ``deadline``, the post's turn in
        the pace is awaited before anything is recorded, and given up (DeliveryCut) at the
        deadline: a post is begun only with its token in hand, and then finished.
        """
        key = f"{diagnosis_id}:{'verdict' if part == VERDICT_FIELD else part}"
        ts = None
        intent_was = posted.get(part + INTENT_SUFFIX, NOT_POSTED)
        if not intent_was.startswith(NOT_POSTED):
            ts = await find_posted(self.client, channel, root_ts, key)
        if ts is None:
            _honour_refusal(self.client, channel, intent_was)
            paced = deadline is not None
            if deadline is not None:
                try:
                    pace = post_pace(self.client).take(channel)
                    await asyncio.wait_for(pace, max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise DeliveryCut from None
            intent = part + INTENT_SUFFIX
            await self.state.record_posted(diagnosis_id, channel, root_ts, intent, "")
            try:
                ts = await post_once(
                    self.client,
                    channel=channel,
                    thread_ts=root_ts,
                    key=key,
                    message=message,
                    paced=paced,
                    # A post begun by the deadline may wait out 429s for as long again.
                    give_up_at=None if deadline is None else deadline + self.hand_out_after_s,
                )
            except PostRefused as refused:
                # Refused, so not posted: the next try posts it without looking it up, and
                # not before Slack's Retry-After.
                refusal = f"{NOT_POSTED}:{refused.retry_at:.3f}"
                await self.state.record_posted(diagnosis_id, channel, root_ts, intent, refusal)
                raise DeliveryCut from None
        await self.state.record_posted(diagnosis_id, channel, root_ts, part, ts)


def _honour_refusal(client: AsyncWebClient, channel: str, intent: str) -> None:
    """An earlier try of this post was refused until a time ("refused:<time.time()>"): no
    post to the channel before then, from this process either (its pace holds it)."""
    _, _, retry_at = intent.partition(":")
    try:
        wait_s = float(retry_at) - time.time()
    except ValueError:
        return
    if wait_s > 0:
        post_pace(client).hold(channel, time.monotonic() + wait_s)
