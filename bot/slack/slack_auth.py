"""Is the bot's token still good? `auth.test` at start and about once a minute after, for
`/readyz` (issue 12): a web process whose token Slack rejects cannot post anything, so it
says so instead of answering ready.

Never asked per probe hit: a load balancer or kubelet probing every few seconds, times
replicas, would spend the workspace's Tier 4 budget on nothing. ``SlackAuthWatch`` keeps the
last answer and refreshes it in the background (``every_s``); ``problem()`` only reads it.

Only Slack's own word about the token makes the process unready (``TOKEN_REJECTED``:
``invalid_auth``, ``token_revoked``…): no restart or other replica can fix that, and an
operator must. Slack out of reach (connection error, timeout, 5xx, 429) keeps the last answer
and is logged: it hits every replica alike, taking them all out of service would make
Slack's retries of `/502` find no one at all, and a post that cannot go out yet is retried
by the client (bot.slack_client) once Slack answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.slack_client import slack_error

log = logging.getLogger(__name__)

CHECK_EVERY_S = 60.0
CHECK_TIMEOUT_S = 20.0  # the SDK retries 5xx and dropped connections within this
# Slack's answers that mean the token itself is no good (not a passing failure).
TOKEN_REJECTED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "no_permission",
        "ekm_access_denied",
        "team_access_not_granted",
    }
)


class SlackAuthWatch:
    """The token's standing with Slack, as of the last `auth.test` (see the module doc)."""

    def __init__(self, client: AsyncWebClient, every_s: float = CHECK_EVERY_S) -> None:
        self.client = client
        self.every_s = every_s
        self.rejected: str | None = None  # Slack's error code while it rejects the token
        self.checked_at: float | None = None  # time.monotonic() of the last answer Slack gave
        self._task: asyncio.Task[None] | None = None

    def problem(self) -> str | None:
        """None while Slack accepts the token (or was last known to); else the one line."""
        if self.rejected is None:
            return None
        return f"Slack rejects SLACK_BOT_TOKEN ({self.rejected}); the bot cannot post"

    def accepted_at_start(self) -> None:
        """The process checked the token itself as it started (bot.slack.server.check_token)."""
        self.rejected, self.checked_at = None, time.monotonic()

    async def check(self) -> None:
        """Ask Slack once and keep its answer; an answer that is not about the token (Slack
        out of reach, 5xx, 429) changes nothing."""
        try:
            await asyncio.wait_for(self.client.auth_test(), CHECK_TIMEOUT_S)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error in TOKEN_REJECTED:
                if self.rejected != error:
                    log.error("Slack rejects SLACK_BOT_TOKEN (%s): /readyz fails", error)
                self.rejected, self.checked_at = error, time.monotonic()
                return
            log.warning("auth.test failed (%s); the token's standing is kept", error or exc)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("auth.test: Slack out of reach (%s); the token's standing is kept", exc)
            return
        if self.rejected is not None:
            log.warning("Slack accepts SLACK_BOT_TOKEN again")
        self.rejected, self.checked_at = None, time.monotonic()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._keep_checking())

    async def _keep_checking(self) -> None:
        """The first check an interval after the start (`serve` checked the token as it
        started), then one an interval after each."""
        while True:
            await asyncio.sleep(self.every_s)
            await self.check()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
