"""SlackSink: a diagnosis' results as one thread — a reply per step in runbook order, the root
message kept up to date, the verdict with its buttons last.

Steps finish in any order (they run concurrently, maybe on several workers); a finished step
waits until every earlier one is posted. Every posted message's ts is kept per (diagnosis,
step) in the state store, so a result delivered again updates its message instead of posting
a second one. The thread's lock serialises all of this across processes.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline import DiagnosisRequest
from bot.render import slack_blocks as blocks
from bot.slack_client import find_posted, post_once, update
from bot.state import VERDICT_FIELD, BotState, DiagnosisThread
from checks.model import Diagnosis, StepResult

log = logging.getLogger(__name__)

# Marks a part whose post was begun; see SlackSink._post_part.
INTENT_SUFFIX = ":posting"


def _where(request: DiagnosisRequest) -> tuple[str, str]:
    return str(request.origin["channel"]), str(request.origin["root_ts"])


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


async def remember_request(state: BotState, request: DiagnosisRequest) -> None:
    """What the root message needs to show a diagnosis before any result arrives."""
    await state.record_request(request.id, {"steps": request.steps, "previous": request.previous})


async def refresh_root(client: AsyncWebClient, state: BotState, thread: DiagnosisThread) -> None:
    await update(
        client,
        channel=thread.channel,
        ts=thread.root_ts,
        message=await root_view(state, thread),
    )


class SlackSink:
    """A ResultSink that posts into the request's Slack thread (origin: channel, root_ts)."""

    def __init__(self, client: AsyncWebClient, state: BotState) -> None:
        self.client = client
        self.state = state

    async def aclose(self) -> None:
        await self.state.store.close()

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        channel, root_ts = _where(request)
        async with self.state.thread_lock(channel, root_ts):
            await self.state.record_result(request.id, result)
            await self._post_ready(request, redelivered=result.name)
            await self._refresh_root(request)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        channel, root_ts = _where(request)
        async with self.state.thread_lock(channel, root_ts):
            known = await self.state.results(request.id)
            for result in diagnosis.steps:
                # A result never reported step by step (lost on the way) still gets its reply.
                if result.name in request.steps and result.name not in known:
                    await self.state.record_result(request.id, result)
            await self._post_ready(request, redelivered=None, final=True)
            thread = await self.state.thread(channel, root_ts)
            resolved = bool(thread and thread.resolved_at)
            message = blocks.verdict_message(diagnosis, root_ts, resolved=resolved)
            posted = await self.state.posted(request.id)
            if VERDICT_FIELD in posted:
                await update(
                    self.client, channel=channel, ts=posted[VERDICT_FIELD], message=message
                )
            else:
                await self._post_part(request, VERDICT_FIELD, message, posted)
            await self.state.record_diagnosis(request.id, diagnosis.to_dict())
            if thread is not None and thread.current == request.id:
                thread.cause = diagnosis.verdict.cause.value
                await self.state.save_thread(thread)
            await self._refresh_root(request)

    async def _post_ready(
        self, request: DiagnosisRequest, *, redelivered: str | None, final: bool = False
    ) -> None:
        """Post every result whose earlier steps are all posted; update a redelivered one."""
        channel, _ = _where(request)
        results = await self.state.results(request.id)
        posted = await self.state.posted(request.id)
        for name in blocks.ordered_names(request.steps):
            result = results.get(name)
            if result is None:
                if final:
                    continue  # the diagnosis is over: nothing more will come for this step
                break  # hold later steps until this one is in
            message = blocks.step_message(result)
            if name in posted:
                if name == redelivered:
                    await update(self.client, channel=channel, ts=posted[name], message=message)
                continue
            await self._post_part(request, name, message, posted)

    async def _post_part(
        self, request: DiagnosisRequest, part: str, message: dict[str, Any], posted: dict[str, str]
    ) -> None:
        """Post one part of the thread (a step or the verdict) and record its ts.

        The intent is recorded first: a worker killed between Slack's answer and recording
        the ts leaves the intent behind, and the next try looks the message up (by the key in
        its metadata) instead of posting it again.
        """
        channel, root_ts = _where(request)
        key = f"{request.id}:{'verdict' if part == VERDICT_FIELD else part}"
        ts = None
        if part + INTENT_SUFFIX in posted:
            ts = await find_posted(self.client, channel, root_ts, key)
        if ts is None:
            await self.state.record_posted(request.id, part + INTENT_SUFFIX, "")
            ts = await post_once(
                self.client, channel=channel, thread_ts=root_ts, key=key, message=message
            )
        await self.state.record_posted(request.id, part, ts)

    async def _refresh_root(self, request: DiagnosisRequest) -> None:
        channel, root_ts = _where(request)
        thread = await self.state.thread(channel, root_ts)
        if thread is None or thread.current != request.id:
            return  # an older run finishing late: the root shows the newest one
        await refresh_root(self.client, self.state, thread)
