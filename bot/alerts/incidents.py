"""Incidents: one per site, opened by failing probes or alerts, kept in Redis, one thread each.

The state machine, per site:

- K failed probes in a row (``failures_to_open``, default 2) or a firing alert open an
  incident. It is not posted at once: it waits ``storm_hold_s`` so that sites failing
  together are posted together, as one grouped alert when there are many (``storm``).
- K passing probes in a row (``successes_to_recover``) mark it **recovered**; "recovered
  after 12 min" goes into its thread. If the site fails again within ``flap_window_s``, the
  same incident reopens (flapping stays one incident).
- A resolved alert, or a person pressing *Resolved*, closes it.
- Alerts for a site with an incident go into that incident's thread, never a new root.

Nothing lives in the process: a new ``Incidents`` over the same Redis carries on.
The Slack app calls ``list_open``, ``mute``, ``take`` and ``resolve`` for `/502 status`,
`/502 mute SITE 1h` and the buttons.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.alerts.notifier import SlackNotifier, duration, escape, root_text, slack_time, storm_text
from bot.alerts.store import OPEN, RECOVERED, RESOLVED, Incident, IncidentStore, Mute, Storm
from bot.alerts.storm import is_storm, shared_facts
from bot.pipeline import Carrier, DiagnosisRequest
from bot.render.mentions import user_mention
from checks.context import ProbeContext
from checks.guard import TargetRefused
from checks.runner import prepare
from checks.settings import Settings, Site, default_port
from checks.target import BadTarget

log = logging.getLogger(__name__)

STATUS_LINES = 20  # open incidents listed by `/502 status` before "…and N more"

# What a Slack call raises once the client's own retries are spent.
SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class AlertPolicy:
    """How eagerly the bot alerts. From BADGATEWAY_ALERT_* variables (docs/alerts.md)."""

    failures_to_open: int = 2
    successes_to_recover: int = 2
    flap_window_s: float = 900.0
    storm_threshold: int = 5  # sites posted in one batch that make a grouped alert
    storm_hold_s: float = 5.0  # how long a new incident waits for others to group with
    storm_window_s: float = 300.0  # later incidents join an active storm's thread
    body_limit_bytes: int = 256 * 1024  # webhook bodies above this get 413

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertPolicy:
        env = os.environ if env is None else env
        default = cls()

        def number(name: str, value: float) -> float:
            text = env.get(f"BADGATEWAY_ALERT_{name}", "").strip()
            if not text:
                return value
            try:
                parsed = float(text)
            except ValueError:
                raise ValueError(
                    f"BADGATEWAY_ALERT_{name} must be a number, got {text!r}"
                ) from None
            if parsed < 0:
                raise ValueError(f"BADGATEWAY_ALERT_{name} must not be negative")
            return parsed

        return cls(
            failures_to_open=max(1, int(number("FAILURES", default.failures_to_open))),
            successes_to_recover=max(1, int(number("SUCCESSES", default.successes_to_recover))),
            flap_window_s=number("FLAP_WINDOW_S", default.flap_window_s),
            storm_threshold=int(number("STORM_THRESHOLD", default.storm_threshold)),
            storm_hold_s=number("STORM_HOLD_S", default.storm_hold_s),
            storm_window_s=number("STORM_WINDOW_S", default.storm_window_s),
            body_limit_bytes=int(number("BODY_LIMIT_BYTES", default.body_limit_bytes)),
        )


@dataclass(frozen=True)
class ProbeOutcome:
    """One scheduled probe of a site: did it work, and what it saw (for storms, diagnoses)."""

    ok: bool
    what: str  # "HTTP 502 from http://…", "connection refused to 127.0.0.1:8080"
    facts: dict[str, list[str]] = field(default_factory=dict)
    context: dict[str, Any] | None = None  # ProbeContext.to_dict() when the target resolved


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '2d' → seconds (a bare number is minutes). Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 30m, 1h, 2d)")
    seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "m").lower()]
    if not 0 < seconds <= 30 * 86400:
        raise ValueError("a mute lasts from a second to 30 days")
    return seconds


def thread_link(channel: str, ts: str) -> str:
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def site_for_url(url: str, settings: Settings) -> Site:
    """The configured site serving ``url``, or an ad-hoc one posted to the default channel."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for site in settings.sites:
        if site.url.rstrip("/") == url.rstrip("/"):
            return site
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    if host and scheme in ("http", "https"):
        configured = settings.site_for(host, scheme, port or default_port(scheme))
    else:
        configured = None
    if configured is not None:
        return configured
    return Site(name=host or url, url=url, channel=settings.default_channel)


class Incidents:
    def __init__(
        self,
        store: IncidentStore,
        notifier: SlackNotifier | None,
        settings: Settings,
        policy: AlertPolicy | None = None,
        carrier: Carrier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.settings = settings
        self.policy = policy or AlertPolicy()
        self.carrier = carrier
        self.clock = clock

    # -- what opens, moves and closes incidents ------------------------------------------
    async def observe(self, site: Site, outcome: ProbeOutcome) -> Incident | None:
        """Feed one scheduled probe's result; returns the site's incident if it has one.
        Call ``settle`` afterwards (the monitor does) so a new incident gets posted."""
        now = self.clock()
        async with self.store.site_lock(site.name):
            streak = await self.store.record_probe(site.name, outcome.ok, now)
            incident = await self.store.current(site.name)
            if outcome.ok:
                if (
                    incident is not None
                    and incident.state == OPEN
                    and streak.successes >= self.policy.successes_to_recover
                ):
                    await self._recover(incident, now)
                return incident
            if streak.failures < self.policy.failures_to_open:
                return incident
            if incident is not None and incident.state == OPEN:
                if outcome.context and not incident.context:
                    incident.context = outcome.context
                    await self.store.save(incident)
                return incident
            if incident is not None and incident.state == RECOVERED:
                await self._reopen(incident, outcome.what, now)
                return incident
            if await self.store.muted(site.name):
                return None
            since = streak.first_failure_at or now
            return await self._open(site, outcome.what, "monitor", since, outcome, now)

    async def alert_firing(
        self, site: Site, what: str, source: str, outcome: ProbeOutcome | None = None
    ) -> Incident | None:
        """An alert from Alertmanager or the generic webhook: open, or add to the thread."""
        now = self.clock()
        async with self.store.site_lock(site.name):
            incident = await self.store.current(site.name)
            muted = await self.store.muted(site.name)
            if incident is not None and incident.state == OPEN:
                incident.alerts += 1
                await self.store.save(incident)
                if not muted:
                    await self._note(
                        incident, f":rotating_light: Another alert ({source}): {escape(what)}"
                    )
                await self._refresh_root(incident)
                return incident
            if incident is not None and incident.state == RECOVERED:
                await self._reopen(incident, what, now)
                return incident
            if muted:
                return None
            return await self._open(site, what, source, now, outcome, now)

    async def alert_resolved(self, site: Site, source: str) -> Incident | None:
        async with self.store.site_lock(site.name):
            incident = await self.store.current(site.name)
            if incident is None or incident.state == RESOLVED:
                return None
            await self._close(incident, None, f"the {source} alert resolved")
            return incident

    async def _open(
        self,
        site: Site,
        what: str,
        source: str,
        since: float,
        outcome: ProbeOutcome | None,
        now: float,
    ) -> Incident:
        incident = Incident.new(
            site.name,
            site.url,
            site.channel or self.settings.default_channel,
            since=since,
            opened_at=now,
            what_failed=what,
            source=source,
            facts=dict(outcome.facts) if outcome else {},
            context=outcome.context if outcome else None,
        )
        await self.store.save(incident)
        await self.store.set_current(incident)
        await self.store.add_pending(incident.id, now)
        log.info("incident %s opened for %s: %s", incident.id, site.name, what)
        return incident

    async def _reopen(self, incident: Incident, what: str, now: float) -> None:
        incident.state = OPEN
        incident.flaps += 1
        incident.recovered_at = None
        incident.what_failed = what
        await self.store.save(incident)
        await self.store.set_current(incident)  # no expiry while open
        if not await self.store.muted(incident.site):
            await self._note(
                incident, f":red_circle: *{escape(incident.site)}* is failing again: {escape(what)}"
            )
        await self._refresh_root(incident)

    async def _recover(self, incident: Incident, now: float) -> None:
        incident.state = RECOVERED
        incident.recovered_at = now
        await self.store.save(incident)
        await self.store.set_current(incident, ttl_s=self.policy.flap_window_s)
        took = duration(now - incident.since)
        await self._note(
            incident, f":large_green_circle: *{escape(incident.site)}* recovered after {took}"
        )
        await self._refresh_root(incident)

    async def _close(self, incident: Incident, user: str | None, why: str) -> None:
        now = self.clock()
        incident.state = RESOLVED
        incident.resolved_at = now
        incident.resolved_by = user
        await self.store.save(incident)
        await self.store.clear_current(incident)
        await self.store.drop_pending(incident.id)
        who = f" by {user_mention(user)}" if user else f" ({why})"
        took = duration(now - incident.since)
        await self._note(
            incident, f":white_check_mark: *{escape(incident.site)}* resolved{who} after {took}"
        )
        await self._refresh_root(incident)

    # -- posting: the storm hold, single alerts, grouped alerts -------------------------------
    async def settle(self) -> int:
        """Wait the storm hold, then post what is pending. Returns how many were posted."""
        if await self.store.pending_count() == 0:
            return 0
        await asyncio.sleep(self.policy.storm_hold_s)
        return await self.flush()

    async def flush(self, *, force: bool = False) -> int:
        """Post every pending incident once the oldest has waited the storm hold: alone,
        or all in one grouped alert when there are many (or a storm is under way)."""
        now = self.clock()
        ids = await self.store.take_pending(
            float("inf") if force else now - self.policy.storm_hold_s
        )
        batch = [
            i
            for i in [await self.store.get(x) for x in ids]
            if i and i.state == OPEN and not i.root_ts
        ]
        if not batch:
            return 0
        async with self.store.storm_lock():
            storm = await self.store.active_storm()
            if storm is None and is_storm(len(batch), self.policy.storm_threshold):
                try:
                    storm = await self._start_storm(batch, now)
                except SLACK_ERRORS as exc:
                    log.error("posting the grouped alert failed: %s", exc)
                    for incident in batch:  # the next flush tries again
                        await self.store.add_pending(incident.id, now)
                    return 0
            if storm is not None:
                await self._join_storm(storm, batch, now)
            else:
                for incident in batch:
                    await self._post_alone(incident, now)
        for incident in batch:
            await self._diagnose(incident.id)
        return len(batch)

    async def _post_alone(self, incident: Incident, now: float) -> None:
        if self.notifier is None or not incident.channel:
            log.warning("incident %s (%s) has no channel to post to", incident.id, incident.site)
            return
        mute = await self.store.muted(incident.site)
        try:
            ts = await self.notifier.post(
                incident.channel, root_text(incident, mute, now), key=f"incident:{incident.id}:root"
            )
        except SLACK_ERRORS as exc:
            log.error("posting the alert for %s failed: %s", incident.site, exc)
            await self.store.add_pending(incident.id, now)  # the next flush tries again
            return
        async with self.store.site_lock(incident.site):
            fresh = await self.store.get(incident.id) or incident
            fresh.root_ts, fresh.own_root = ts, True
            await self.store.save(fresh)

    async def _start_storm(self, batch: list[Incident], now: float) -> Storm | None:
        channels = Counter(i.channel for i in batch if i.channel)
        channel = self.settings.default_channel or (
            channels.most_common(1)[0][0] if channels else None
        )
        if self.notifier is None or channel is None:
            return None
        storm = Storm(id=f"storm-{batch[0].id}", channel=channel, root_ts="", opened_at=now)
        storm.sites = [i.site for i in batch]
        storm.shared = shared_facts([i.facts for i in batch])
        storm.root_ts = await self.notifier.post(
            channel, storm_text(storm, now), key=f"{storm.id}:root"
        )
        storm.sites = []  # _join_storm adds them (and saves)
        await self.store.index_storm_thread(storm)
        log.warning("storm %s: %d sites failing at once", storm.id, len(batch))
        return storm

    async def _join_storm(self, storm: Storm, batch: list[Incident], now: float) -> None:
        newcomers = [i for i in batch if i.site not in storm.sites]
        storm.sites += [i.site for i in batch if i.site not in storm.sites]
        storm.incidents += [i.id for i in batch]
        all_facts = [i.facts for i in [await self.store.get(x) for x in storm.incidents] if i]
        storm.shared = shared_facts(all_facts)
        await self.store.save_storm(storm, self.policy.storm_window_s)
        for incident in batch:
            async with self.store.site_lock(incident.site):
                fresh = await self.store.get(incident.id) or incident
                fresh.channel, fresh.root_ts = storm.channel, storm.root_ts
                fresh.own_root, fresh.storm_id = False, storm.id
                await self.store.save(fresh)
        if self.notifier is None:
            return
        await self._safe(self.notifier.update(storm.channel, storm.root_ts, storm_text(storm, now)))
        if newcomers and len(storm.incidents) > len(batch):  # joined a storm already posted
            names = ", ".join(escape(i.site) for i in newcomers)
            text = f":heavy_plus_sign: Also failing: {names}"
            await self._safe(self.notifier.post(storm.channel, text, storm.root_ts))

    async def _diagnose(self, incident_id: str) -> None:
        """Run the full diagnosis into the incident's thread through the carrier."""
        incident = await self.store.get(incident_id)
        if incident is None or not incident.root_ts or self.carrier is None:
            return
        try:
            if incident.context:
                ctx = ProbeContext.from_dict(incident.context, self.settings)
            else:
                ctx = await prepare(incident.url, self.settings)
        except (TargetRefused, BadTarget) as exc:
            incident.diagnosis = f"not diagnosed: {exc}"
            await self.store.save(incident)
            await self._refresh_root(incident, storm=False)
            return
        request = DiagnosisRequest.new(ctx, origin=self.origin(incident))
        incident.diagnosis, incident.diagnosis_id = "diagnosing", request.id
        incident.diagnosis_requested_at = request.created_at
        incident.cause = incident.cause_summary = None
        await self.store.save(incident)
        await self.carrier.submit(request)
        await self._refresh_root(incident, storm=False)

    async def rediagnose(self, incident_id: str, user: str | None = None) -> Incident | None:
        """*Re-run* in an alert's thread: a new diagnosis into the same thread."""
        incident = await self.store.get(incident_id)
        if incident is None:
            return None
        if user:
            await self._note(incident, f":repeat: {user_mention(user)} re-runs the diagnosis")
        await self._diagnose(incident_id)
        return await self.store.get(incident_id)

    @staticmethod
    def origin(incident: Incident) -> dict[str, Any]:
        """Where the Slack sink posts the diagnosis: the alert's (or the storm's) thread."""
        return {
            "kind": "slack",
            "channel": incident.channel,
            "root_ts": incident.root_ts,
            "thread_ts": incident.root_ts,
            "incident": incident.id,
            "site": incident.site,
            "storm": incident.storm_id,
            "root_owner": "incident",  # the alert owns the root message; the sink only replies
        }

    async def diagnosed(
        self,
        incident_id: str,
        cause: str,
        summary: str | None,
        *,
        diagnosis_id: str | None = None,
        requested_at: float | None = None,
    ) -> None:
        """The verdict arrived (called by ``bot.alerts.sink``): show it on the root.

        With ``diagnosis_id`` that diagnosis becomes the incident's latest (what *Escalate*
        posts), also when it was not started here: `/502 SITE` and the Slack app's re-runs
        submit into an alert's thread too. A run older than the latest, finishing late,
        changes nothing."""
        incident = await self.store.get(incident_id)
        if incident is None:
            return
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            if diagnosis_id is not None and diagnosis_id != incident.diagnosis_id:
                latest = incident.diagnosis_requested_at
                if requested_at is not None and latest is not None and requested_at < latest:
                    return
                incident.diagnosis_id, incident.diagnosis_requested_at = diagnosis_id, requested_at
            incident.diagnosis, incident.cause, incident.cause_summary = "diagnosed", cause, summary
            await self.store.save(incident)
        await self._refresh_root(incident, storm=False)

    # -- what people do (the Slack app calls these) -------------------------------------------
    async def list_open(self) -> list[Incident]:
        return [i for i in await self.store.active() if i.state == OPEN]

    async def incident_for_site(self, site: str) -> Incident | None:
        return await self.store.current(site)

    async def incident_for_thread(self, channel: str, ts: str) -> Incident | None:
        return await self.store.by_thread(channel, ts)

    async def incidents_for_thread(self, channel: str, ts: str) -> list[Incident]:
        """The incident whose alert thread this is, or every site of a grouped alert."""
        incident = await self.store.by_thread(channel, ts)
        if incident is not None:
            return [incident]
        storm = await self.store.storm_by_thread(channel, ts)
        if storm is None:
            return []
        return [i for i in [await self.store.get(x) for x in storm.incidents] if i]

    async def incident_for_url(self, url: str) -> Incident | None:
        """The open incident of the site serving ``url``: `/502 URL` then posts into its
        thread instead of opening a second one."""
        incident = await self.store.current(site_for_url(url, self.settings).name)
        return incident if incident is not None and incident.state == OPEN else None

    async def take(self, incident_id: str, user: str) -> Incident | None:
        incident = await self.store.get(incident_id)
        if incident is None:
            return None
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            incident.taken_by = user
            await self.store.save(incident)
        await self._note(incident, f":raising_hand: {user_mention(user)} is on it")
        await self._refresh_root(incident)
        return incident

    async def resolve(self, incident_id: str, user: str | None) -> Incident | None:
        incident = await self.store.get(incident_id)
        if incident is None:
            return None
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            if incident.state != RESOLVED:
                await self._close(incident, user, "resolved")
        return incident

    async def mute(self, site: str, seconds: float, by: str | None) -> Mute:
        mute = await self.store.mute(site, seconds, by, self.clock())
        incident = await self.store.current(site)
        if incident is not None:
            await self._refresh_root(incident)
        return mute

    async def unmute(self, site: str) -> bool:
        done = await self.store.unmute(site)
        incident = await self.store.current(site)
        if incident is not None:
            await self._refresh_root(incident)
        return done

    async def status_text(self) -> str:
        """`/502 status`: open incidents with links to their threads, and the mutes."""
        now = self.clock()
        lines: list[str] = []
        for incident in await self.list_open():
            link = ""
            if incident.channel and incident.root_ts:
                link = f" <{thread_link(incident.channel, incident.root_ts)}|thread>"
            taken = f", taken by {user_mention(incident.taken_by)}" if incident.taken_by else ""
            cause = f", `{escape(incident.cause)}`" if incident.cause else ""
            lines.append(
                f":red_circle: *{escape(incident.site)}* failing for "
                f"{duration(now - incident.since)}{cause}{taken}{link}"
            )
        if len(lines) > STATUS_LINES:
            lines = [*lines[:STATUS_LINES], f"…and {len(lines) - STATUS_LINES} more"]
        if not lines:
            lines.append(":large_green_circle: No open incidents.")
        for mute in await self.store.mutes():
            by = f" by {user_mention(mute.by)}" if mute.by else ""
            lines.append(f":mute: {escape(mute.site)} muted{by} until {slack_time(mute.until)}")
        return "\n".join(lines)

    # -- Slack helpers ------------------------------------------------------------------------
    async def _note(self, incident: Incident, text: str) -> None:
        if self.notifier is not None and incident.channel and incident.root_ts:
            await self._safe(self.notifier.post(incident.channel, text, incident.root_ts))

    async def _refresh_root(self, incident: Incident, *, storm: bool = True) -> None:
        """Rewrite the alert's root; a storm member's change of state (not its diagnosis:
        fifty of those would flood chat.update) rewrites the grouped root instead."""
        if storm and not incident.own_root and incident.storm_id:
            await self._refresh_storm(incident.storm_id)
            return
        if (
            self.notifier is None
            or not incident.own_root
            or not incident.channel
            or not incident.root_ts
        ):
            return
        mute = await self.store.muted(incident.site)
        text = root_text(incident, mute, self.clock())
        await self._safe(self.notifier.update(incident.channel, incident.root_ts, text))

    @staticmethod
    async def _safe(call: Any) -> None:
        """A Slack failure (after the client's retries) must not undo a state change."""
        try:
            await call
        except SLACK_ERRORS as exc:
            log.error("Slack call failed: %s", exc)

    async def _refresh_storm(self, storm_id: str) -> None:
        """The grouped root shows how many of its sites still fail."""
        storm = await self.store.get_storm(storm_id)
        if storm is None or self.notifier is None:
            return
        members = [i for i in [await self.store.get(x) for x in storm.incidents] if i]
        states = Counter(i.state for i in members)
        text = storm_text(storm, self.clock())
        text += (
            f"\n*Now:* {states[OPEN]} failing, {states[RECOVERED]} recovered, "
            f"{states[RESOLVED]} resolved"
        )
        await self._safe(self.notifier.update(storm.channel, storm.root_ts, text))
