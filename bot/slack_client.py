"""The Slack Web API client the bot posts with, and posting that never shows a message twice.

Retries: slack_sdk's handlers for 429 (honouring Retry-After, up to ``RATE_LIMIT_RETRIES``
times: bursts of several 429s in a row happen), for 5xx and for dropped connections — the
SDK's default of one connection retry is not enough.

A 5xx or a dropped connection on ``chat.postMessage`` is ambiguous: Slack may have posted the
message anyway, and a blind retry would post it twice. So the SDK does not retry that method;
``post_once`` tags every message with metadata naming what it is, and after an ambiguous
failure looks for the tagged message in the channel or thread before posting again.

Posts are paced to Slack's posting limits (``PostPace``: about one a second per channel with a
short burst, and the workspace's per-minute limit), so a storm of posts to many threads mostly
waits its turn here instead of collecting 429s. Given Redis (queue mode: the web process and
the workers post for one workspace) the limits are kept there, one budget for every process
(bot.shared_pace); a process that cannot reach Redis paces on its own meanwhile — a post is
never held up or lost for want of its pace (each call paced on its own so is counted:
``badgateway_slack_pace_fallbacks_total``). Every ``chat.update`` (Tier 3: about 50 a minute for
the whole workspace) takes its turn from one budget the same way, whoever makes it
(``update``, ``update_budget``), and so does each Tier 3 read ``find_posted`` makes (a budget
per method: Slack limits each method on its own). A 429 to one of those methods holds its
budget until the Retry-After ends, for every process (also for the calls already waiting for
a turn), and the refused call is retried with the budget's first turn after it
(``OwnPostsRateLimitRetryHandler``); a turn further off than ``FAR_TURN_S`` is said in the
log, once a minute per budget. A post still
refused with 429 after the SDK's retries (a storm: many threads share the workspace's posting
limit) is not dropped: ``post_once`` waits the Retry-After Slack gave and
tries again, for up to ``RATE_LIMITED_FOR_S`` — a refused post was not posted, so this is safe.

Every call is counted (bot.metrics): ``CountingWebClient`` counts each method's outcome after
the retries, the retry handlers count each retry and each 429, and ``post_once`` its own.
(Bolt makes a client of its own per request, with these retry handlers, for its token check:
that auth.test's retries and 429s are counted, its outcome is not.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot import metrics, storage
from badgateway.bot.config import BotConfig
from badgateway.bot.shared_pace import Limit, Rate, SharedLimits, Turn

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 8
SERVER_ERROR_RETRIES = 3
CONNECTION_RETRIES = 3
POST_ATTEMPTS = 4
RATE_LIMITED_FOR_S = 600.0  # how long a post keeps waiting out 429s before it gives up
METADATA_EVENT = "badgateway_post"
NOT_RETRIED_BY_SDK = ("chat.postMessage",)  # not idempotent: post_once handles it
SHARED_CALL_S = 2.0  # one call to the pace shared through Redis waits this long at most
SHARED_RETRY_S = 5.0  # after Redis failed the pace, this process paces on its own this long


def _method(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1]


def _not_idempotent(request: HttpRequest) -> bool:
    return request.url.rstrip("/").endswith(NOT_RETRIED_BY_SDK)


class _SkipsNonIdempotent:
    """Mixin for a retry handler: never retry a method where a retry could act twice."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if _not_idempotent(request):
            return False
        return await super()._can_retry_async(  # type: ignore[misc,no-any-return]
            state=state, request=request, response=response, error=error
        )


class _CountsRetries:
    """Mixin for a retry handler: each retry it makes is counted, with its reason."""

    reason = "other"

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        metrics.slack_retry(_method(request), self.reason)
        await super().prepare_for_next_attempt_async(  # type: ignore[misc]
            state=state, request=request, response=response, error=error
        )


class OwnPostsRateLimitRetryHandler(
    _CountsRetries, _SkipsNonIdempotent, AsyncRateLimitErrorRetryHandler
):
    """Waits out 429s, except chat.postMessage's: post_once waits those out itself, so that
    it holds the channel's pace meanwhile and can give up at a caller's deadline. Counts every
    429 (the first handler asked about each failed answer, so it sees all of them).

    Given the client's ``pace``, a 429 to a method with a workspace budget (chat.update, the
    Tier 3 reads: ``PostPace.method_budget``) holds that budget until its Retry-After ends —
    for every process sharing it, the calls already waiting for their turn included — and the
    refused call is retried with the budget's next turn after that, in line with the others
    (never sooner: nothing else in the workspace spends Slack's empty budget meanwhile)."""

    reason = "rate_limited"

    def __init__(self, max_retry_count: int, pace: PostPace | None = None) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.pace = pace

    def _budget(self, request: HttpRequest) -> WorkspaceBudget | None:
        return None if self.pace is None else self.pace.method_budget(_method(request))

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            metrics.slack_rate_limited(_method(request))
            budget = self._budget(request)
            if budget is not None:
                # Held whether or not this call is retried: the budget is Slack's, empty.
                await budget.hold(_retry_after_s(response.headers))
        return await super().can_retry_async(
            state=state, request=request, response=response, error=error
        )

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        budget = self._budget(request)
        if budget is None or response is None:
            await super().prepare_for_next_attempt_async(
                state=state, request=request, response=response, error=error
            )
            return
        metrics.slack_retry(_method(request), self.reason)
        state.next_attempt_requested = True
        await budget.take()  # the first turn after the hold, so after the Retry-After
        state.increment_current_attempt()


class IdempotentServerErrorRetryHandler(
    _CountsRetries, _SkipsNonIdempotent, AsyncServerErrorRetryHandler
):
    """Retries 500/503, except for methods where a retry could act twice."""

    reason = "server_error"


class IdempotentConnectionErrorRetryHandler(
    _CountsRetries, _SkipsNonIdempotent, AsyncConnectionErrorRetryHandler
):
    """Retries dropped connections, except for methods where a retry could act twice."""

    reason = "connection_error"


class CountingWebClient(AsyncWebClient):
    """slack_sdk's client, counting each call's outcome after its retries (bot.metrics)."""

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:
        try:
            response = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            metrics.slack_call(api_method, _outcome(exc))
            raise
        except (aiohttp.ClientError, TimeoutError):
            metrics.slack_call(api_method, "connection_error")
            raise
        metrics.slack_call(api_method, "ok")
        return response


def _outcome(exc: SlackApiError) -> str:
    status = int(getattr(exc.response, "status_code", 200) or 200)
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return f"http_{status}"
    return slack_error(exc) or "error"


def retry_handlers(pace: PostPace | None = None) -> list[AsyncRetryHandler]:
    """The retries of a client; given its ``pace``, a 429 holds the method's budget."""
    return [
        OwnPostsRateLimitRetryHandler(max_retry_count=RATE_LIMIT_RETRIES, pace=pace),
        IdempotentServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        IdempotentConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
    ]


def make_web_client(config: BotConfig, redis: Redis | None = None) -> AsyncWebClient:
    """A client whose posts (and root updates) keep the workspace's pace: Slack's documented
    limits times ``BADGATEWAY_SLACK_RATE_SCALE``. With ``redis`` (the process's connection
    to the install's Redis) the pace is one for every process sharing it."""
    shared = SharedLimits(redis) if redis is not None else None
    pace = PostPace(config.slack_rate_scale, shared)
    client = CountingWebClient(
        token=config.slack_bot_token,
        base_url=config.slack_api_url,
        timeout=15,
        retry_handlers=retry_handlers(pace),
    )
    _PACES[client] = pace
    return client


class TokenBucket:
    """``per_minute`` calls at most, ``burst`` at once; waiters are served in turn."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self.turn = asyncio.Lock()

    async def take(self) -> None:
        async with self.turn:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)

    def hold(self, until: float) -> None:
        """No call before ``until`` (monotonic), then the steady pace (no burst)."""
        if until > self.updated:
            self.tokens, self.updated = 1.0, until

    def wait_s(self, ahead: int) -> float:
        """About how long a call waits behind ``ahead`` others waiting already."""
        now = time.monotonic()
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        return max(0.0, (ahead + 1.0 - tokens) / self.rate)

    def idle(self, now: float) -> bool:
        return not self.turn.locked() and now - self.updated > 60.0 / self.rate * self.burst


class PostPace:
    """chat.postMessage's limits as the bot keeps them (a little under Slack's: the 429s that
    remain are honoured). Shared through Redis (``shared``) by every process of the install,
    else this process's own.

    ``scale`` multiplies the rates (not the bursts) for a workspace whose limits are not the
    documented ones — a proxy in front of the Web API, a grid with its own — and is where
    everything paced to Slack's limits reads it (``rate_scale``): root updates too."""

    # 57, not Slack's 60: a post paced exactly one second after the last can reach Slack a
    # little sooner than that after it (the network's jitter), and draw a 429.
    CHANNEL_PER_MINUTE, CHANNEL_BURST = 57.0, 3
    WORKSPACE_PER_MINUTE, WORKSPACE_BURST = 280.0, 20
    # Tier 3 methods: about 50 a minute each for the whole workspace (a burst of a few). 45
    # leaves the margin the network's jitter needs.
    UPDATES_PER_MINUTE, UPDATES_BURST = 45.0, 5  # chat.update, every caller's
    READS_PER_MINUTE, READS_BURST = 45.0, 5  # conversations.replies; .history: one each

    def __init__(self, scale: float = 1.0, shared: SharedLimits | None = None) -> None:
        self.scale = scale
        self.channel_rate = Rate(self.CHANNEL_PER_MINUTE * scale, self.CHANNEL_BURST)
        self.workspace_rate = Rate(self.WORKSPACE_PER_MINUTE * scale, self.WORKSPACE_BURST)
        self.workspace = TokenBucket(self.workspace_rate.per_minute, self.WORKSPACE_BURST)
        self.channels: dict[str, TokenBucket] = {}
        self.held: dict[str, float] = {}  # channel -> when a 429's Retry-After ends
        self.shared = shared
        self._on_own_until = 0.0  # Redis failed: this process paces on its own until then
        self._on_own_said = False  # ... and has said so in the log
        self._background: set[asyncio.Task[None]] = set()
        self._budgets: dict[str, WorkspaceBudget] = {}

    def budget(self, name: str, per_minute: float, burst: int) -> WorkspaceBudget:
        """The one budget called ``name`` of this pace (made at the rate first asked for)."""
        made = self._budgets.get(name)
        if made is None:
            made = self._budgets[name] = WorkspaceBudget(self, name, per_minute, burst)
        return made

    def method_budget(self, method: str) -> WorkspaceBudget | None:
        """The workspace budget every call of ``method`` takes its turn from, if it has one:
        chat.update's (``update_budget``), a Tier 3 read's (``read_budget``)."""
        if method == "chat.update":
            return self.budget("updates", self.UPDATES_PER_MINUTE * self.scale, self.UPDATES_BURST)
        if method in READ_BUDGETS:
            per_minute = self.READS_PER_MINUTE * self.scale
            return self.budget(READ_BUDGETS[method], per_minute, self.READS_BURST)
        return None

    def hold(self, channel: str, until: float) -> None:
        """Slack answered 429 for ``channel``: no post there before ``until`` (monotonic),
        also not one that another task begins meanwhile — nor another process (shared)."""
        self.held[channel] = max(until, self.held.get(channel, 0.0))
        if self.shared is not None and not self._on_own():
            hold = self.shared.hold(self._channel(channel), until - time.monotonic())
            self._in_background(hold)

    async def take(self, channel: str) -> None:
        until = self.held.get(channel)
        if until is not None:
            if until > time.monotonic():
                await asyncio.sleep(until - time.monotonic())
            self.held.pop(channel, None)
        if await self.take_shared("posts", self._workspace(), self._channel(channel)):
            return
        bucket = self.channels.get(channel)
        if bucket is None:
            if len(self.channels) > 500:  # forget channels that have been quiet a while
                now = time.monotonic()
                self.channels = {c: b for c, b in self.channels.items() if not b.idle(now)}
            bucket = self.channels[channel] = TokenBucket(
                self.channel_rate.per_minute, self.CHANNEL_BURST
            )
        await bucket.take()
        await self.workspace.take()

    async def hold_shared(self, limit: Limit, for_s: float) -> None:
        """Hold ``limit`` for ``for_s`` seconds for every process (marked: also the turns
        handed out already, see ``take_shared``), awaited: the caller's next turn comes after
        it. Nothing without the shared limits."""
        if self.shared is None or self._on_own():
            return
        try:
            await asyncio.wait_for(self.shared.hold(limit, for_s, marked=True), SHARED_CALL_S)
        except (RedisError, OSError, TimeoutError) as exc:
            self._shared_failed(exc)

    async def take_shared(
        self,
        kind: str,
        queue: Limit,
        gate: Limit | None = None,
        *,
        holdable: bool = False,
        turn_in: Callable[[float], None] | None = None,
    ) -> bool:
        """Wait for a turn from the limits every process shares (``gate`` free at its time).
        False without them — none, or Redis out of reach: the caller paces on its own (counted
        under ``kind``, the budget's name, when Redis is why). ``holdable``: a turn that comes
        while ``queue`` is held (a 429 since it was handed out) is not used: another is asked
        for, after the hold. ``turn_in`` is told how far off each turn given is."""
        if self.shared is None:
            return False
        while True:
            if self._on_own():
                metrics.slack_pace_fallback(kind)
                return False
            try:
                turn = await self._reserve(queue, gate)
                if turn_in is not None:
                    turn_in(turn.wait_s)
                await self._sleep_to(turn, queue, gate)
                if not holdable or turn.wait_s <= 0:
                    return True  # asked for now: a hold placed before is in its time already
                held_until = await asyncio.wait_for(self.shared.held_until(queue), SHARED_CALL_S)
                if held_until <= turn.at:
                    return True
            except (RedisError, OSError, TimeoutError) as exc:
                self._shared_failed(exc)
                metrics.slack_pace_fallback(kind)
                return False

    async def _reserve(self, queue: Limit, gate: Limit | None) -> Turn:
        assert self.shared is not None
        while True:
            turn = await asyncio.wait_for(self.shared.reserve(queue, gate), SHARED_CALL_S)
            if turn.reserved:
                break
            await asyncio.sleep(turn.wait_s)  # the gate (channel) is busy: ask again then
        if self._on_own_said:
            log.info("the posting pace is shared through Redis again")
            self._on_own_said = False
        return turn

    async def _sleep_to(self, turn: Turn, queue: Limit, gate: Limit | None) -> None:
        assert self.shared is not None
        limits = (queue,) if gate is None else (queue, gate)
        try:
            await asyncio.sleep(turn.wait_s)
        except asyncio.CancelledError:
            # The caller gave up waiting (a deadline): the turn goes back for others to use.
            self._in_background(self.shared.refund(*limits))
            raise

    def _workspace(self) -> Limit:
        return Limit(storage.key("pace", "posts"), self.workspace_rate)

    def _channel(self, channel: str) -> Limit:
        return Limit(storage.key("pace", "posts", channel), self.channel_rate)

    def _on_own(self) -> bool:
        return time.monotonic() < self._on_own_until

    def _shared_failed(self, exc: BaseException) -> None:
        self._on_own_until = time.monotonic() + SHARED_RETRY_S
        if not self._on_own_said:
            log.warning(
                "the posting pace shared through Redis is out of reach (%s): this process "
                "paces its posts on its own until it is back",
                str(exc) or type(exc).__name__,
            )
            self._on_own_said = True

    def _in_background(self, call: Coroutine[Any, Any, None]) -> None:
        """Run ``call`` (a change to the shared limits nobody waits for), keeping it alive."""
        try:
            task = asyncio.get_running_loop().create_task(self._quietly(call))
        except RuntimeError:  # no event loop: nothing will post in this one either
            call.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quietly(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await asyncio.wait_for(call, SHARED_CALL_S)
        except (RedisError, OSError, TimeoutError) as exc:
            self._shared_failed(exc)


class WorkspaceBudget:
    """``per_minute`` calls of one method for the whole workspace (``chat.update``, Tier 3):
    shared through Redis when the client's pace is, else this process's own.

    Turns are handed out in the order asked (the shared limit is a queue: bot.shared_pace;
    the local bucket serves its waiters in turn), so no caller starves another: each waits
    behind the calls asked for before it, and that line is short — every caller keeps at most
    one call in it per message it keeps up to date (RootUpdates one per root, a storm's
    refresh one per storm, a one-off update its own), and the line moves at the budget's
    rate."""

    def __init__(self, pace: PostPace, name: str, per_minute: float, burst: int) -> None:
        self.pace = pace
        self.local = TokenBucket(per_minute, burst)
        self.rate = self.local.rate  # per second
        self.limit_rate = Rate(per_minute, burst)
        self.name = name
        self._waiting_locally = 0  # callers in line for the local bucket

    async def take(self) -> None:
        """Wait for this call's turn (after any hold, ``hold``)."""
        if await self.pace.take_shared(
            self.name, self._limit(), holdable=True, turn_in=self._turn_in
        ):
            return
        self._turn_in(self.local.wait_s(self._waiting_locally))
        self._waiting_locally += 1
        try:
            await self.local.take()
        finally:
            self._waiting_locally -= 1

    async def hold(self, for_s: float) -> None:
        """Slack refused a call (429) for ``for_s`` seconds: no turn before then — in any
        process sharing the budget, nor for the calls whose turns were handed out already."""
        log.info("%s: Slack answered 429; the budget is held for %.1f s", self.name, for_s)
        self.local.hold(time.monotonic() + for_s)  # also when the shared one is out of reach
        await self.pace.hold_shared(self._limit(), for_s)

    def _limit(self) -> Limit:
        return Limit(storage.key("pace", self.name), self.limit_rate)

    def _turn_in(self, wait_s: float) -> None:
        """A turn ``wait_s`` away: said in the log when it is far (once a minute a budget)."""
        if wait_s <= FAR_TURN_S:
            return
        now = time.monotonic()
        if now < _far_said.get(self.name, -FAR_SAID_EVERY_S) + FAR_SAID_EVERY_S:
            return
        _far_said[self.name] = now
        log.warning(
            "the %s budget (%.0f a minute for the workspace) is %.0f s deep: a call waits "
            "that long for its turn",
            self.name,
            self.limit_rate.per_minute,
            wait_s,
        )


FAR_TURN_S = 30.0  # a turn further off than this is said in the log ...
FAR_SAID_EVERY_S = 60.0  # ... once a minute at most, per budget, in a process
_far_said: dict[str, float] = {}  # budget name -> when its far turn was last said


def workspace_budget(
    client: AsyncWebClient, name: str, per_minute: float, burst: int
) -> WorkspaceBudget:
    """A budget of ``per_minute`` calls (named ``name``) for ``client``'s workspace, apart
    from the client's own (a chat without Slack's limits: the terminal)."""
    return WorkspaceBudget(post_pace(client), name, per_minute, burst)


def update_budget(client: AsyncWebClient) -> WorkspaceBudget:
    """The workspace's one ``chat.update`` budget: every update ``client`` makes takes its
    turn here, so that the root updates, the alerts' and storms' rewrites, the "waiting for a
    worker" lines and a redelivered step together stay under Tier 3 (in every process alike,
    given Redis).

    One budget rather than a share for each kind of caller: a fixed split would leave most of
    it unused most of the time (a storm and fifty askers seldom come together), and each
    caller already spends little — RootUpdates coalesces (latest state wins) and spaces
    progress by the budget's rate, a storm's table is rewritten at most every couple of
    seconds. When they do come together, the turns go in the order asked: a storm's refresh
    waits behind the roots in line (its table, rendered when its slot came, is rewritten
    again at the next slot if it changed meanwhile), and every one-off update waits its turn."""
    budget = post_pace(client).method_budget("chat.update")
    assert budget is not None
    return budget


READ_BUDGETS = {"conversations.replies": "replies", "conversations.history": "history"}


def read_budget(client: AsyncWebClient, method: str) -> WorkspaceBudget:
    """The budget of a Tier 3 read (``READ_BUDGETS``: Slack limits each method apart)."""
    budget = post_pace(client).method_budget(method)
    if budget is None:
        raise KeyError(method)
    return budget


_PACES: weakref.WeakKeyDictionary[AsyncWebClient, PostPace] = weakref.WeakKeyDictionary()


def post_pace(client: AsyncWebClient) -> PostPace:
    """The pace of posts made with ``client`` (one per client, so one per workspace token)."""
    pace = _PACES.get(client)
    if pace is None:
        pace = _PACES[client] = PostPace()
    return pace


def rate_scale(client: AsyncWebClient) -> float:
    """Slack's limits for ``client``'s workspace as a multiple of the documented ones."""
    return post_pace(client).scale


def retry_after(exc: BaseException) -> float | None:
    """The Retry-After seconds of a 429, else None."""
    if not isinstance(exc, SlackApiError) or exc.response is None:
        return None
    if int(getattr(exc.response, "status_code", 200) or 200) != 429:
        return None
    return _retry_after_s(getattr(exc.response, "headers", None) or {})


def _retry_after_s(headers: Mapping[str, Any]) -> float:
    """A 429's Retry-After seconds from its headers (a value may be a list of them)."""
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), "1")
    value = raw[0] if isinstance(raw, list) else raw
    try:
        return max(1.0, float(value))
    except ValueError:
        return 1.0


def _ambiguous(exc: BaseException) -> bool:
    """True when a failed post may still have been posted."""
    if isinstance(exc, SlackApiError):
        return int(getattr(exc.response, "status_code", 200) or 200) >= 500
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError)


class PostRefused(Exception):
    """Slack refused the post (429) for longer than the caller can wait: it was not posted.

    ``retry_at`` (time.time(), so that another process can read it): when Slack's Retry-After
    for the refused call ends; the same post sent sooner, by any process, ignores it."""

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


def _wall(monotonic_at: float) -> float:
    return time.time() + (monotonic_at - time.monotonic())


async def find_posted(
    client: AsyncWebClient, channel: str, thread_ts: str | None, key: str
) -> str | None:
    """The ts of the message tagged ``key`` in the thread (or channel), if Slack has it.
    Each look takes its turn from the method's budget (``read_budget``)."""
    method = "conversations.replies" if thread_ts else "conversations.history"
    await read_budget(client, method).take()
    try:
        if thread_ts:
            response = await client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
            )
        else:
            response = await client.conversations_history(
                channel=channel, include_all_metadata=True, limit=50
            )
    except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
        log.warning("could not look for an earlier post of %s: %s", key, exc)
        return None
    for message in response.get("messages") or []:
        metadata = message.get("metadata") or {}
        if metadata.get("event_payload", {}).get("key") == key:
            return str(message["ts"])
    return None


async def post_once(
    client: AsyncWebClient,
    *,
    channel: str,
    key: str,
    message: dict[str, Any],
    thread_ts: str | None = None,
    paced: bool = False,
    give_up_at: float | None = None,
) -> str:
    """Post ``message`` (text + blocks) once; returns its ts.

    ``key`` names the message (e.g. "<diagnosis id>:dns"); it rides along as message metadata
    so that, after an ambiguous failure, the message can be found instead of posted again.
    ``paced``: the caller has taken this post's turn in the pace already. ``give_up_at``
    (time.monotonic()): a 429 whose Retry-After runs past it raises PostRefused instead of
    being waited out (nothing was posted).
    """
    metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": key}}
    delay = 0.5
    attempt = 0
    limited_until = time.monotonic() + RATE_LIMITED_FOR_S
    refused_only = True  # every try so far was refused (429): none of them was posted
    while attempt < POST_ATTEMPTS:
        attempt += 1
        if paced:
            paced = False  # the caller's turn serves the first try only
        elif give_up_at is not None and refused_only:
            try:
                turn = post_pace(client).take(channel)
                await asyncio.wait_for(turn, max(0.0, give_up_at - time.monotonic()))
            except TimeoutError:
                held = post_pace(client).held.get(channel, time.monotonic())
                raise PostRefused(f"{key}: no turn to post again in time", _wall(held)) from None
        else:
            await post_pace(client).take(channel)
        try:
            response = await client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=message.get("text") or "",
                blocks=message.get("blocks"),
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
            )
            return str(response["ts"])
        except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
            wait_s = retry_after(exc)
            if wait_s is not None:
                wait_s += random.random()
                post_pace(client).hold(channel, time.monotonic() + wait_s)
            if wait_s is not None and give_up_at is not None and refused_only:
                if time.monotonic() + wait_s > give_up_at:
                    raise PostRefused(
                        f"{key}: rate limited for {wait_s:.1f} s", time.time() + wait_s
                    ) from exc
            if wait_s is not None and time.monotonic() + wait_s < limited_until:
                attempt -= 1  # refused, so not posted: not an attempt
                metrics.slack_retry("chat.postMessage", "rate_limited")
                await asyncio.sleep(wait_s)
                continue
            refused_only = False
            if not _ambiguous(exc) or attempt == POST_ATTEMPTS:
                raise
            log.warning("posting %s failed (%s); checking whether Slack has it", key, exc)
            metrics.slack_retry("chat.postMessage", "ambiguous_post")
        found = await find_posted(client, channel, thread_ts, key)
        if found:
            return found
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


async def update(
    client: AsyncWebClient,
    *,
    channel: str,
    ts: str,
    message: dict[str, Any],
    paced: bool = False,
) -> None:
    """Rewrite the message ``ts`` once its turn in the workspace's ``update_budget`` comes.
    ``paced``: the caller has taken the turn already (RootUpdates renders once it has). A 429
    holds the budget and the same update is sent again at its next turn after the Retry-After
    (the client's retry handler: chat.update is idempotent)."""
    if not paced:
        await update_budget(client).take()
    await client.chat_update(
        channel=channel, ts=ts, text=message.get("text") or "", blocks=message.get("blocks")
    )


def slack_error(exc: BaseException) -> str | None:
    """The Web API's error code ("channel_not_found"…) of a failed call, if it has one."""
    if isinstance(exc, SlackApiError):
        error = exc.response.get("error") if exc.response is not None else None
        return str(error) if error else None
    return None
