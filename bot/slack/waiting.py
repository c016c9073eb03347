"""A `/502` root whose diagnosis no worker has taken yet says so.

In queue mode the web process posts the root and enqueues the diagnosis; when no worker has
taken it after ``BADGATEWAY_WORKER_WAIT_S`` a web process's carrier (bot.queue.unclaimed:
the record is in Redis, so any web process, or one restarted since) calls
``WaitingRoots.show``, which adds one line to the root: "waiting for a worker since 12:03; is
`badgateway worker` running?". It is called again while the diagnosis waits (a thread may join
the run meanwhile); each root is claimed in Redis (``bgw:waiting:shown:{id}:{channel}:{ts}``)
before it is edited, so it is edited once however many web processes see it. The edit is a
chat.update like any other: it waits its turn in the workspace's one budget for them
(bot.slack_client.update_budget), before the thread's lock is taken, so that the sink is not
held up while it waits. Nothing else
changes: once a worker comes, its first result redraws the root as usual (bot.slack.sink), the
line goes, and the diagnosis completes in the same thread. An alert's root is the alerting
side's (bot.alerts.incidents).
"""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import storage
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.render import chat_text
from badgateway.bot.render import slack_blocks as blocks
from badgateway.bot.slack.sink import root_view
from badgateway.bot.slack_client import slack_error, update, update_budget
from badgateway.bot.state import DIAGNOSIS_TTL_S, BotState

log = logging.getLogger(__name__)


class WaitingRoots:
    def __init__(self, client: AsyncWebClient, state: BotState) -> None:
        self.client = client
        self.state = state

    async def show(self, request: DiagnosisRequest, since: float) -> None:
        """Say on every root showing the request that it waits for a worker (`/502` threads
        only: the thread that asked for a re-run, or every thread sharing the site's run)."""
        origin = request.origin
        if origin.get("kind") != "slack" or origin.get("root_owner") == "incident":
            return
        if origin.get("root_ts"):
            threads = [(str(origin["channel"]), str(origin["root_ts"]))]
        else:
            threads = await self.state.sharers(request.id)
        for channel, root_ts in threads:
            await self._show_on(request, since, channel, root_ts)

    async def _show_on(
        self, request: DiagnosisRequest, since: float, channel: str, root_ts: str
    ) -> None:
        shown = storage.key("waiting", "shown", request.id, channel, root_ts)
        if not await self.state.store.claim(shown, DIAGNOSIS_TTL_S):
            return  # this or another web process has said it on this root
        await update_budget(self.client).take()
        # Under the thread's lock, as the sink redraws it: a result shown meanwhile wins.
        async with self.state.thread_lock(channel, root_ts):
            thread = await self.state.thread(channel, root_ts)
            if thread is None or thread.current != request.id:
                return  # re-run since: the root shows the newer diagnosis
            if await self.state.results(request.id):
                return  # a worker got to it after all
            view = await root_view(self.state, thread)
            waiting = blocks.context(chat_text.waiting_for_worker_text(since))
            message = {
                "text": chat_text.waiting_root_fallback(thread.target),
                "blocks": [*view["blocks"], waiting],
            }
            try:
                await update(
                    self.client,
                    channel=channel,
                    ts=root_ts,
                    message=blocks.fit(message),
                    paced=True,
                )
            except (SlackApiError, aiohttp.ClientError) as exc:
                log.warning(
                    "could not say %s waits for a worker: %s", thread.key, slack_error(exc) or exc
                )
