"""Slack's documented Web API rate limits, enforced by the stand-in when a test asks for them.

Slack answers a call over its limit with HTTP 429, ``Retry-After: <seconds>`` and
``{"ok": false, "error": "ratelimited"}``. The limits (../shared/notes/slack-platform.md):
``chat.postMessage`` about one message a second per channel with short bursts, plus a
workspace-wide limit of several hundred a minute; ``chat.update`` Web API Tier 3 (about 50 a
minute per workspace); ``chat.postEphemeral`` Tier 4 (100+ a minute); the reads the bot makes
(``conversations.*``) Tier 3, ``usergroups.users.list`` Tier 2.

Each limit is a token bucket: ``per_minute`` refill, ``burst`` tokens at most. A call that finds
no token is refused with the whole seconds until one is back. The stand-in also counts refused
calls repeated (the same method and parameters) before their ``Retry-After`` had passed: "no 429
left unhonoured". Other calls meanwhile are not counted: they may have been sent before the 429
reached the client.

``SlackLimits(scale=k)`` is a workspace whose limits are ``k`` times the documented rates
(bursts unchanged) — what a bot configured with ``BADGATEWAY_SLACK_RATE_SCALE=k`` paces to. A
test that scales both runs the same race as at Slack's own pace, ``k`` times faster.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum

from badgateway.bot.config import MAX_RATE_SCALE

# The environment of a bot subprocess (serve, worker) whose stand-in enforces no limits: its
# posts and root updates need not keep Slack's pace (as tests/conftest.py does in-process).
UNLIMITED_ENV = {"BADGATEWAY_SLACK_RATE_SCALE": f"{MAX_RATE_SCALE:g}"}


class Scope(StrEnum):
    """What one bucket is kept for."""

    CHANNEL = "channel"  # one bucket per channel (chat.postMessage's special limit)
    WORKSPACE = "workspace"  # one bucket for the whole workspace, per method


@dataclass(frozen=True)
class Limit:
    method: str
    scope: Scope
    per_minute: float
    burst: int


# Slack's documented figures. Bursts are "allowed but not guaranteed": small ones here.
DOCUMENTED = (
    Limit("chat.postMessage", Scope.CHANNEL, per_minute=60, burst=3),
    Limit("chat.postMessage", Scope.WORKSPACE, per_minute=300, burst=30),
    Limit("chat.update", Scope.WORKSPACE, per_minute=50, burst=5),
    Limit("chat.postEphemeral", Scope.WORKSPACE, per_minute=100, burst=10),
    Limit("conversations.history", Scope.WORKSPACE, per_minute=50, burst=5),
    Limit("conversations.replies", Scope.WORKSPACE, per_minute=50, burst=5),
    Limit("conversations.info", Scope.WORKSPACE, per_minute=50, burst=5),
    Limit("usergroups.users.list", Scope.WORKSPACE, per_minute=20, burst=2),
)


@dataclass
class _Bucket:
    limit: Limit
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        rate = self.limit.per_minute / 60.0
        self.tokens = min(float(self.limit.burst), self.tokens + (now - self.updated) * rate)
        self.updated = now

    def wait_s(self) -> float:
        """Seconds until one token is back (0 when one is there)."""
        return max(0.0, (1.0 - self.tokens) / (self.limit.per_minute / 60.0))


@dataclass
class SlackLimits:
    """The buckets of one stand-in, and what they refused."""

    limits: tuple[Limit, ...] = DOCUMENTED
    scale: float = 1.0  # the rates' multiple of the documented ones (the bot's rate scale)
    refused: int = 0  # calls answered 429 because of a limit
    unhonoured: int = 0  # refused calls repeated before their Retry-After had passed
    unhonoured_calls: list[str] = field(default_factory=list)  # which (``call``s)
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _refused_until: dict[str, float] = field(default_factory=dict)  # call -> when it may come

    def admit(self, method: str, channel: str, now: float, call: str = "") -> int | None:
        """Take a token from every bucket the call uses; or the Retry-After seconds if refused.

        ``call`` identifies the request (its method and parameters) so that a retry is known.
        A refused call takes nothing: Slack does not count a 429 against the limit."""
        buckets = [
            self._bucket(limit, channel, now) for limit in self.limits if limit.method == method
        ]
        key = call or f"{method} {channel}"
        if now < self._refused_until.pop(key, 0.0):
            self.unhonoured += 1
            self.unhonoured_calls.append(key)
        for bucket in buckets:
            bucket.refill(now)
        wait_s = max((b.wait_s() for b in buckets), default=0.0)
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            self._refused_until[key] = now + retry_after
            self.refused += 1
            return retry_after
        for bucket in buckets:
            bucket.tokens -= 1.0
        return None

    def _bucket(self, limit: Limit, channel: str, now: float) -> _Bucket:
        key = (f"{limit.method}/{limit.scope}", channel if limit.scope is Scope.CHANNEL else "")
        if key not in self._buckets:
            scaled = dataclasses.replace(limit, per_minute=limit.per_minute * self.scale)
            self._buckets[key] = _Bucket(scaled, tokens=float(limit.burst), updated=now)
        return self._buckets[key]
